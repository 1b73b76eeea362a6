"""Multicast Listener Discovery v2 (RFC 3810), the host part: which groups we listen to.

A switch that snoops MLD (and the Linux bridge does) forwards a group's traffic only to
ports that reported it, so a host must announce the solicited-node groups of its addresses
before DAD (RFC 4862 5.4.2) and answer queries, or Neighbor Solicitations stop reaching it.

* :meth:`MldLayer.join` / :meth:`leave` count users per group; the first join sends a
  state-change report (CHANGE_TO_EXCLUDE {} = "listening"), the last leave one with
  CHANGE_TO_INCLUDE {}; each is sent Robustness Variable (2) times, the repeat after a
  random delay of up to the Unsolicited Report Interval (1 s) (RFC 3810 6.1).
* A general query is answered with one current-state report of every group
  (MODE_IS_EXCLUDE {}), a group-specific query with that group's, after a random delay
  within the query's Maximum Response Delay (RFC 3810 6.2).
* The all-nodes group ff02::1 is always listened to and never reported (RFC 3810 6).
* Reports go to ff02::16 with hop limit 1 and a Router Alert (RFC 3810 5), from our
  link-local address, or from ``::`` while it is still tentative (RFC 3810 5.2.13).
"""

from __future__ import annotations

import logging
from collections import Counter
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.wire.errors import WireError
from vipernet.wire.icmpv6 import PROTO_ICMPV6
from vipernet.wire.ipv6 import ALL_MLDV2_ROUTERS, ALL_NODES, multicast_mac
from vipernet.wire.ipv6_ext import build_router_alert_header
from vipernet.wire.mld import (
    MldQuery,
    MulticastAddressRecord,
    RecordType,
    build_mld_report,
    decode_max_response_code,
    parse_mld,
)

if TYPE_CHECKING:
    import random

    from vipernet.stack.counters import Counters

log = logging.getLogger(__name__)

ROBUSTNESS = 2
UNSOLICITED_REPORT_INTERVAL = 1.0
UNSPECIFIED = IPv6Address("::")
_MAX_PENDING = 64  # state-change repeats waiting at once (bounded whatever the churn)


class LinkLocalSource(Protocol):
    """The ND layer as MLD sees it (``ndp_layer`` sits above: it joins groups through MLD)."""

    def link_local_usable(self) -> IPv6Address | None: ...


class MldHost(Protocol):
    """What MLD needs from its stack."""

    counters: Counters
    rng: random.Random
    ipv6: Any  # the IPv6 layer

    @property
    def nd(self) -> LinkLocalSource: ...


class MldLayer:
    """Group membership of one interface, driven by the caller's clock."""

    __slots__ = ("_general_due", "_groups", "_repeats", "_specific_due", "_stack", "macs")

    def __init__(self, stack: MldHost) -> None:
        self._stack = stack
        self._groups: Counter[IPv6Address] = Counter({ALL_NODES: 1})
        self._repeats: list[tuple[float, IPv6Address, RecordType]] = []
        self._general_due: float | None = None
        self._specific_due: dict[IPv6Address, float] = {}
        # The Ethernet multicast addresses to accept (RFC 2464 7), kept current on change.
        self.macs: set[bytes] = set()
        self._update_macs()

    def _update_macs(self) -> None:
        self.macs = {multicast_mac(g) for g in self._groups}

    def listening(self, group: IPv6Address) -> bool:
        return group in self._groups

    @property
    def groups(self) -> list[IPv6Address]:
        return sorted(self._groups)

    def join(self, group: IPv6Address, now: float) -> None:
        self._groups[group] += 1
        if self._groups[group] == 1:
            self._update_macs()
            self._state_change(group, RecordType.CHANGE_TO_EXCLUDE, now)

    def leave(self, group: IPv6Address, now: float) -> None:
        if group == ALL_NODES or group not in self._groups:
            return
        self._groups[group] -= 1
        if self._groups[group] <= 0:
            del self._groups[group]
            self._update_macs()
            self._specific_due.pop(group, None)
            self._state_change(group, RecordType.CHANGE_TO_INCLUDE, now)

    def _state_change(self, group: IPv6Address, kind: RecordType, now: float) -> None:
        if group == ALL_NODES:
            return
        self._send([MulticastAddressRecord(record_type=kind, multicast_address=group)], now)
        self._repeats = [r for r in self._repeats if r[1] != group]
        for _ in range(ROBUSTNESS - 1):
            if len(self._repeats) < _MAX_PENDING:
                delay = self._stack.rng.uniform(0, UNSOLICITED_REPORT_INTERVAL)
                self._repeats.append((now + delay, group, kind))

    def receive(self, kind: int, payload: memoryview, now: float) -> None:
        """An MLD message (ICMPv6 130/131/132/143); only queries concern a host."""
        count = self._stack.counters.inc
        try:
            message = parse_mld(kind, payload)
        except WireError as exc:
            count(f"mld.rx.bad_{exc.field}")
            return
        if not isinstance(message, MldQuery):
            return  # other listeners' reports: MLDv2 hosts do not suppress (RFC 3810 6)
        count("mld.rx.query")
        delay_ms = (message.max_response_code if message.version == 1
                    else decode_max_response_code(message.max_response_code))
        due = now + self._stack.rng.uniform(0, max(delay_ms, 1) / 1000.0)
        group = message.multicast_address
        if group.is_unspecified:
            if self._general_due is None or due < self._general_due:
                self._general_due = due
        elif group in self._groups and group != ALL_NODES:
            current = self._specific_due.get(group)
            if current is None or due < current:
                self._specific_due[group] = due

    def poll(self, now: float) -> None:
        due = [r for r in self._repeats if r[0] <= now]
        if due:
            self._repeats = [r for r in self._repeats if r[0] > now]
            for _when, group, kind in due:
                self._send([MulticastAddressRecord(record_type=kind, multicast_address=group)],
                           now)
        if self._general_due is not None and self._general_due <= now:
            self._general_due = None
            self._specific_due.clear()
            records = [MulticastAddressRecord(record_type=RecordType.MODE_IS_EXCLUDE,
                                              multicast_address=g)
                       for g in sorted(self._groups) if g != ALL_NODES]
            if records:
                self._send(records, now)
        for group, when in list(self._specific_due.items()):
            if when <= now:
                del self._specific_due[group]
                self._send([MulticastAddressRecord(record_type=RecordType.MODE_IS_EXCLUDE,
                                                   multicast_address=group)], now)

    def next_deadline(self) -> float | None:
        times = [r[0] for r in self._repeats]
        if self._general_due is not None:
            times.append(self._general_due)
        times.extend(self._specific_due.values())
        return min(times) if times else None

    def _send(self, records: list[MulticastAddressRecord], now: float) -> None:
        stack = self._stack
        src = stack.nd.link_local_usable() or UNSPECIFIED
        for start in range(0, len(records), 64):  # 64 records of 20 bytes fit any MTU
            report = build_mld_report(records[start:start + 64], src, ALL_MLDV2_ROUTERS)
            try:
                stack.ipv6.send(ALL_MLDV2_ROUTERS, PROTO_ICMPV6, report, now, src=src,
                                hop_limit=1, hop_by_hop=build_router_alert_header(PROTO_ICMPV6))
            except OSError as exc:
                log.debug("mld report not sent: %s", exc)
                return
            stack.counters.inc("mld.tx.report")

