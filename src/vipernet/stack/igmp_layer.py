"""IGMP, the host part (RFC 3376 IGMPv3, with RFC 2236 IGMPv2 and RFC 1112 IGMPv1 when an
older querier is heard): which IPv4 groups this interface listens to, and from whom.

A switch that snoops IGMP (the Linux bridge does) forwards a group only to ports that
reported it, and a router forwards it onto the link only while someone reports it, so a
host must announce its groups and answer the querier.

* Sockets set their filters with :meth:`IgmpLayer.set_filter` (owner, group, mode,
  sources): INCLUDE {} means "not a member".  The interface state is RFC 3376 3.2's merge
  of the sockets': EXCLUDE if any socket excludes (the intersection of the exclude lists
  minus every included source), else INCLUDE of the union.  It decides what the IP layer
  lets in (:meth:`accepts`) and which Ethernet multicast addresses the stack accepts
  (:attr:`macs`: 01:00:5e + the low 23 bits, RFC 1112 6.4).
* A change of the interface state is reported at once (RFC 3376 5.1: TO_EX/TO_IN for a
  mode change, ALLOW/BLOCK for a source change) and Robustness Variable - 1 more times at
  random intervals of up to the Unsolicited Report Interval (1 s).  A source change while an
  earlier one is still being repeated is merged into it; a mode change replaces it.
* Queries are answered after a random delay up to their Max Resp Time (RFC 3376 5.2): a
  general query with one current-state report of every group (IS_IN/IS_EX), a group query
  with that group's, a group-and-source query with the sources asked about that we still
  want (IS_IN).  224.0.0.1 is always joined and never reported (RFC 3376 6).
* Compatibility (RFC 3376 7.2): a v1 or v2 query puts the interface in that mode for the
  Older Version Querier Present Timeout (260 s).  Then reports are v1/v2 reports to the
  group (10 s Unsolicited Report Interval, RFC 2236 8.10), a leave is a v2 Leave to
  224.0.0.2 (none in v1 mode), source filters cannot be said and are left out, and
  another host's report for a group cancels our pending answer (RFC 2236 3).
* Every report goes with TTL 1, the Router Alert option (RFC 2236 2, RFC 3376 4) and TOS
  0xc0 (as Linux's), from our address; v3 reports to 224.0.0.22.

Timers are deadlines for the stack's ``poll`` (:meth:`next_deadline`); the random delays
come from the stack's ``rng``.  Bad messages are counted ``igmp.rx.bad_<field>``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from vipernet.wire.errors import WireError
from vipernet.wire.igmp import (
    ALL_ROUTERS,
    ALL_SYSTEMS,
    IGMPV3_ROUTERS,
    PROTO_IGMP,
    GroupRecord,
    IgmpGroupMessage,
    IgmpQuery,
    IgmpType,
    RecordType,
    build_igmp_group_message,
    build_igmp_v3_report,
    multicast_mac,
    parse_igmp,
)

if TYPE_CHECKING:
    import random

    from vipernet.link.frame import Offload
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.wire.ipv4 import IPv4Header

log = logging.getLogger(__name__)

ROBUSTNESS = 2  # RFC 3376 8.1's default Robustness Variable
UNSOLICITED_REPORT_INTERVAL = 1.0  # RFC 3376 8.11
V2_UNSOLICITED_REPORT_INTERVAL = 10.0  # RFC 2236 8.10
QUERY_INTERVAL = 125.0  # RFC 3376 8.2
QUERY_RESPONSE_INTERVAL = 10.0  # RFC 3376 8.3
# RFC 3376 8.12: Robustness * Query Interval + Query Response Interval.
OLDER_QUERIER_TIMEOUT = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL
ROUTER_ALERT = b"\x94\x04\x00\x00"  # RFC 2113
TOS_INTERNETWORK_CONTROL = 0xC0
_IP_OVERHEAD = 24  # IPv4 header with the Router Alert option
_REPORT_HEADER = 8
_RECORD_HEADER = 8


class FilterMode(enum.IntEnum):
    INCLUDE = 1
    EXCLUDE = 2


@dataclass(frozen=True, slots=True)
class GroupFilter:
    """One socket's, or the interface's, filter for a group (RFC 3376 3.1)."""

    mode: FilterMode
    sources: frozenset[IPv4Address] = frozenset()

    def allows(self, source: IPv4Address) -> bool:
        return (source in self.sources) == (self.mode == FilterMode.INCLUDE)


_NOT_MEMBER = GroupFilter(FilterMode.INCLUDE)
_ANY_SOURCE = GroupFilter(FilterMode.EXCLUDE)


def merge_filters(filters: list[GroupFilter]) -> GroupFilter:
    """The interface state from the sockets' (RFC 3376 3.2)."""
    excludes = [f.sources for f in filters if f.mode == FilterMode.EXCLUDE]
    included = frozenset().union(*(f.sources for f in filters if f.mode == FilterMode.INCLUDE))
    if excludes:
        return GroupFilter(FilterMode.EXCLUDE, frozenset.intersection(*excludes) - included)
    return GroupFilter(FilterMode.INCLUDE, included)


class IgmpHost(Protocol):
    """What IGMP needs from its stack."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    mtu: int

    def send_ip(self, dst: IPv4Address, proto: int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"") -> None: ...


@dataclass(slots=True)
class _Repeat:
    """A state change still being repeated: v3 records, or (v1/v2) a report of ``group``."""

    due: float
    left: int
    records: list[GroupRecord] = field(default_factory=list)
    mode_change: bool = True


@dataclass(slots=True)
class _GroupAnswer:
    """A pending answer to a group (and maybe source) query; ``sources`` None: the group."""

    due: float
    sources: frozenset[IPv4Address] | None = None


class IgmpLayer:
    """Group membership of one interface, driven by the caller's clock."""

    __slots__ = ("_answers", "_general_due", "_members", "_repeats", "_stack", "_state",
                 "_v1_until", "_v2_until", "macs")

    def __init__(self, stack: IgmpHost) -> None:
        self._stack = stack
        self._members: dict[IPv4Address, dict[object, GroupFilter]] = {}
        self._state: dict[IPv4Address, GroupFilter] = {ALL_SYSTEMS: _ANY_SOURCE}
        self._repeats: dict[IPv4Address, _Repeat] = {}
        self._general_due: float | None = None
        self._answers: dict[IPv4Address, _GroupAnswer] = {}
        self._v1_until = float("-inf")
        self._v2_until = float("-inf")
        self.macs: frozenset[bytes] = frozenset()
        self._update_macs()

    # -- what the IP layer and the sockets ask ------------------------------------------------

    def listening(self, group: IPv4Address) -> bool:
        return group in self._state

    def accepts(self, group: IPv4Address, source: IPv4Address) -> bool:
        """Whether the interface wants ``group``'s datagrams from ``source``."""
        state = self._state.get(group)
        return state is not None and state.allows(source)

    @property
    def groups(self) -> dict[IPv4Address, GroupFilter]:
        """The interface state: group -> filter (224.0.0.1 included)."""
        return dict(sorted(self._state.items()))

    def version(self, now: float) -> int:
        """The compatibility mode (RFC 3376 7.2.1): 1, 2 or 3."""
        if now < self._v1_until:
            return 1
        return 2 if now < self._v2_until else 3

    def _update_macs(self) -> None:
        self.macs = frozenset(multicast_mac(g) for g in self._state)

    # -- socket filters -------------------------------------------------------------------------

    def set_filter(self, owner: object, group: IPv4Address, mode: FilterMode,
                   sources: frozenset[IPv4Address], now: float) -> None:
        """``owner``'s (a socket's) filter for ``group``; INCLUDE {} drops its membership."""
        members = self._members.setdefault(group, {})
        if mode == FilterMode.INCLUDE and not sources:
            members.pop(owner, None)
        else:
            members[owner] = GroupFilter(mode, frozenset(sources))
        if not members:
            del self._members[group]
        if group == ALL_SYSTEMS:
            return  # always joined, never reported: the sockets filter for themselves
        old = self._state.get(group, _NOT_MEMBER)
        new = merge_filters(list(members.values())) if members else _NOT_MEMBER
        if new == old:
            return
        if new == _NOT_MEMBER:
            del self._state[group]
            self._answers.pop(group, None)
        else:
            self._state[group] = new
        self._update_macs()
        self._state_change(group, old, new, now)

    def _state_change(self, group: IPv4Address, old: GroupFilter, new: GroupFilter,
                      now: float) -> None:
        version = self.version(now)
        if version < 3:
            joined, left = old == _NOT_MEMBER, new == _NOT_MEMBER
            self._repeats.pop(group, None)
            if left:
                if version == 2:
                    self._send_group(IgmpType.V2_LEAVE_GROUP, group, ALL_ROUTERS, now)
            elif joined:
                self._send_report(group, version, now)
                self._repeats[group] = _Repeat(
                    due=now + self._stack.rng.uniform(0, V2_UNSOLICITED_REPORT_INTERVAL),
                    left=ROBUSTNESS - 1)
            return
        if old.mode != new.mode:
            kind = (RecordType.CHANGE_TO_EXCLUDE if new.mode == FilterMode.EXCLUDE
                    else RecordType.CHANGE_TO_INCLUDE)
            repeat = _Repeat(due=0.0, left=0, records=[_record(kind, group, new.sources)])
        else:
            gained, lost = new.sources - old.sources, old.sources - new.sources
            allow, block = (gained, lost) if new.mode == FilterMode.INCLUDE else (lost, gained)
            pending = self._repeats.get(group)
            if pending is not None and not pending.mode_change:
                # RFC 3376 5.1: merge with the source change still being repeated.
                allow, block = _merge_sources(pending.records, allow, block)
            records = [_record(RecordType.ALLOW_NEW_SOURCES, group, allow)] if allow else []
            if block:
                records.append(_record(RecordType.BLOCK_OLD_SOURCES, group, block))
            repeat = _Repeat(due=0.0, left=0, records=records, mode_change=False)
        self._send_records(repeat.records, now)
        repeat.left = ROBUSTNESS - 1
        repeat.due = now + self._stack.rng.uniform(0, UNSOLICITED_REPORT_INTERVAL)
        self._repeats[group] = repeat

    # -- messages in ----------------------------------------------------------------------------

    def receive(self, ip_header: IPv4Header, payload: memoryview, offload: Offload | None,
                now: float) -> None:
        """An IGMP message (the IP layer's protocol 2 handler)."""
        count = self._stack.counters.inc
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        try:
            message = parse_igmp(payload, verify_checksum=not trusted)
        except WireError as exc:
            count(f"igmp.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        if isinstance(message, IgmpQuery):
            count(f"igmp.rx.query_v{message.version}")
            self._query(message, now)
        elif isinstance(message, IgmpGroupMessage):
            count("igmp.rx.report" if message.type != IgmpType.V2_LEAVE_GROUP
                  else "igmp.rx.leave")
            # RFC 2236 3: another member answered; ours would say nothing new.
            if (message.type != IgmpType.V2_LEAVE_GROUP and self.version(now) < 3
                    and self._answers.pop(message.group, None) is not None):
                count("igmp.report_suppressed")
        else:
            count("igmp.rx.report")  # v3 hosts do not suppress (RFC 3376 5.2)

    def _query(self, query: IgmpQuery, now: float) -> None:
        if query.version == 1:
            self._older_querier(now, v1=True)
        elif query.version == 2:
            self._older_querier(now, v1=False)
        delay = now + self._stack.rng.uniform(0, max(query.max_response_time, 0.1))
        group = query.group
        if self.version(now) < 3:
            targets = ([g for g in self._state if g != ALL_SYSTEMS] if query.is_general
                       else [group] if group in self._state and group != ALL_SYSTEMS else [])
            for g in targets:
                current = self._answers.get(g)
                if current is None or delay < current.due:
                    self._answers[g] = _GroupAnswer(delay)
            return
        # RFC 3376 5.2's rules, in order.
        if self._general_due is not None and self._general_due < delay:
            return
        if query.is_general:
            self._general_due = delay
            return
        if group not in self._state or group == ALL_SYSTEMS:
            return
        asked = frozenset(query.sources) if query.sources else None
        current = self._answers.get(group)
        if current is None:
            self._answers[group] = _GroupAnswer(delay, asked)
            return
        current.due = min(current.due, delay)
        if asked is None or current.sources is None:
            current.sources = None
        else:
            current.sources = current.sources | asked

    def _older_querier(self, now: float, *, v1: bool) -> None:
        if self.version(now) == 3:
            # RFC 3376 7.2.1: pending v3 answers and repeats are for a querier that left.
            self._general_due = None
            self._answers.clear()
            self._repeats.clear()
        until = now + OLDER_QUERIER_TIMEOUT
        if v1:
            self._v1_until = until
        else:
            self._v2_until = until

    # -- timers ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if not self._repeats and not self._answers and self._general_due is None:
            return None  # the usual case, asked on every loop turn
        times = [r.due for r in self._repeats.values()]
        times.extend(a.due for a in self._answers.values())
        if self._general_due is not None:
            times.append(self._general_due)
        return min(times) if times else None

    def poll(self, now: float) -> None:
        version = self.version(now)
        for group, repeat in list(self._repeats.items()):
            if repeat.due > now:
                continue
            if version == 3:
                self._send_records(repeat.records, now)
            elif group in self._state:
                self._send_report(group, version, now)
            repeat.left -= 1
            if repeat.left <= 0:
                del self._repeats[group]
            else:
                interval = (UNSOLICITED_REPORT_INTERVAL if version == 3
                            else V2_UNSOLICITED_REPORT_INTERVAL)
                repeat.due = now + self._stack.rng.uniform(0, interval)
        if self._general_due is not None and self._general_due <= now:
            self._general_due = None
            self._send_records([_current(g, s) for g, s in self._state.items()
                                if g != ALL_SYSTEMS], now)
        for group, answer in list(self._answers.items()):
            if answer.due > now:
                continue
            del self._answers[group]
            state = self._state.get(group)
            if state is None:
                continue
            if version < 3:
                self._send_report(group, version, now)
            elif answer.sources is None:
                self._send_records([_current(group, state)], now)
            else:
                wanted = frozenset(s for s in answer.sources if state.allows(s))
                if wanted:
                    self._send_records([_record(RecordType.MODE_IS_INCLUDE, group, wanted)], now)

    # -- messages out ---------------------------------------------------------------------------

    def _send_report(self, group: IPv4Address, version: int, now: float) -> None:
        kind = IgmpType.V1_MEMBERSHIP_REPORT if version == 1 else IgmpType.V2_MEMBERSHIP_REPORT
        self._send_group(kind, group, group, now)

    def _send_group(self, kind: IgmpType, group: IPv4Address, dst: IPv4Address,
                    now: float) -> None:
        if self._transmit(dst, build_igmp_group_message(kind, group), now):
            name = {IgmpType.V2_LEAVE_GROUP: "leave", IgmpType.V1_MEMBERSHIP_REPORT: "report_v1"}
            self._stack.counters.inc(f"igmp.tx.{name.get(kind, 'report_v2')}")

    def _send_records(self, records: list[GroupRecord], now: float) -> None:
        """As few v3 reports as fit the MTU; a record too long for one alone is cut short."""
        limit = self._stack.mtu - _IP_OVERHEAD - _REPORT_HEADER
        max_sources = (limit - _RECORD_HEADER) // 4
        batch: list[GroupRecord] = []
        size = 0
        for record in records:
            if len(record.sources) > max_sources:
                record = GroupRecord(record_type=record.record_type, group=record.group,
                                     sources=record.sources[:max_sources])
            length = _RECORD_HEADER + 4 * len(record.sources)
            if batch and size + length > limit:
                self._send_v3(batch, now)
                batch, size = [], 0
            batch.append(record)
            size += length
        if batch:
            self._send_v3(batch, now)

    def _send_v3(self, records: list[GroupRecord], now: float) -> None:
        if self._transmit(IGMPV3_ROUTERS, build_igmp_v3_report(records), now):
            self._stack.counters.inc("igmp.tx.report_v3")

    def _transmit(self, dst: IPv4Address, message: bytes, now: float) -> bool:
        try:
            self._stack.send_ip(dst, PROTO_IGMP, message, now=now, ttl=1,
                                tos=TOS_INTERNETWORK_CONTROL, options=ROUTER_ALERT)
        except OSError as exc:
            self._stack.counters.inc("igmp.tx.error")
            log.debug("igmp report not sent: %s", exc)
            return False
        return True


def _record(kind: RecordType, group: IPv4Address,
            sources: frozenset[IPv4Address]) -> GroupRecord:
    return GroupRecord(record_type=kind, group=group, sources=tuple(sorted(sources)))


def _current(group: IPv4Address, state: GroupFilter) -> GroupRecord:
    kind = (RecordType.MODE_IS_EXCLUDE if state.mode == FilterMode.EXCLUDE
            else RecordType.MODE_IS_INCLUDE)
    return _record(kind, group, state.sources)


def _merge_sources(pending: list[GroupRecord], allow: frozenset[IPv4Address],
                   block: frozenset[IPv4Address]
                   ) -> tuple[frozenset[IPv4Address], frozenset[IPv4Address]]:
    """A new source change folded into the one still being repeated (RFC 3376 5.1)."""
    old_allow = frozenset(s for r in pending if r.record_type == RecordType.ALLOW_NEW_SOURCES
                          for s in r.sources)
    old_block = frozenset(s for r in pending if r.record_type == RecordType.BLOCK_OLD_SOURCES
                          for s in r.sources)
    return (old_allow | allow) - block, (old_block | block) - allow
