"""The IPv6 neighbour cache and Neighbor Unreachability Detection (RFC 4861 section 7.3).

IPv6 → MAC plus an IsRouter flag, in one of five states, driven by the caller's clock:

* **INCOMPLETE** — resolution under way: multicast NS to the solicited-node group every
  RetransTimer, MAX_MULTICAST_SOLICIT times; packets wait in a bounded queue (the oldest is
  dropped and counted, as Linux's ``unres_qlen``) and at most ``nd_pending_limit``
  destinations are resolved at once.  No answer: the entry goes and its packets come back
  in :class:`ResolutionFailed` (7.2.2: ICMPv6 address unreachable / EHOSTUNREACH).
* **REACHABLE** — confirmed within ReachableTime (a solicited NA, or the upper layer's
  :meth:`NeighborCache.confirm`, 7.3.1).  ReachableTime is drawn uniformly from
  [0.5, 1.5] times BaseReachableTime with the injected ``random.Random`` (6.3.2), drawn again
  when an RA changes the base and every few hours, so hosts on a link do not probe in step.
* **STALE** — not known to be reachable; nothing is done until a packet is sent.
* **DELAY** — a packet was sent while STALE: wait DELAY_FIRST_PROBE_TIME for the upper
  layer to confirm before probing (7.3.3: most traffic is TCP, which confirms for free).
* **PROBE** — unicast NS to the cached MAC every RetransTimer, MAX_UNICAST_SOLICIT times;
  then the entry is deleted.  Packets keep going to the cached MAC meanwhile.

Timers that only move an entry from REACHABLE to STALE need no wake-up: the state is aged
lazily whenever the entry is looked at, so :meth:`NeighborCache.next_deadline` only reports
timers that send something.

The cache is bounded (``nd_cache_limit``, Linux's gc_thresh3): a new entry evicts the
least recently used STALE non-router entry first, then other settled entries; INCOMPLETE
ones are never evicted (their cap is ``nd_pending_limit``).  Above ``nd_gc_threshold``
(gc_thresh1) STALE entries idle for ``nd_gc_stale_time`` are collected by :meth:`poll`.
So a flood of solicitations from made-up sources costs a bounded table, not memory.

Transitions are RFC 4861 appendix C's table; the rule for a received NA is 7.2.5's, for
NS/RA/Redirect carrying a link-layer option 7.2.3, 6.3.4 and 8.3.  Only unicast neighbours
are kept: multicast destinations map to 33:33:xx MACs and need no cache.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from vipernet.errors import UsageError
from vipernet.stack.arp_cache import QueuedPacket
from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.ipv6_iid import solicited_node
from vipernet.stack.nd_actions import (
    NeighborAction,
    ResolutionFailed,
    RouterFlagCleared,
    SendNeighborSolicitation,
    SendQueued,
)

MIN_RANDOM_FACTOR = 0.5  # RFC 4861 section 10
MAX_RANDOM_FACTOR = 1.5
REACHABLE_REDRAW_INTERVAL = 2 * 3600.0  # 6.3.4: "at least every few hours"
# Bounds on what an RA may set (Linux's floors; 6.2.1's MAX_REACHABLE_TIME ceiling).
MIN_BASE_REACHABLE_TIME = 0.1
MAX_BASE_REACHABLE_TIME = 3600.0
MIN_RETRANS_TIMER = 0.01
MAX_RETRANS_TIMER = 3600.0


class NudState(enum.StrEnum):
    """RFC 4861 7.3.2's reachability states (their names are what ``entries`` shows)."""

    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighborInfo:
    """One entry as :meth:`NeighborCache.entries` shows it."""

    state: NudState
    link_address: bytes | None
    is_router: bool
    queued: int


@dataclass(slots=True)
class _Entry:
    state: NudState
    lla: bytes | None
    is_router: bool
    # INCOMPLETE/PROBE: next retransmission; DELAY: when to probe; REACHABLE: when it ages
    # to STALE; STALE: unused.
    deadline: float
    used: float  # last send or confirmation, for eviction and garbage collection
    probes: int = 0  # solicitations sent in the current INCOMPLETE or PROBE phase
    queue: deque[QueuedPacket] = field(default_factory=deque)


def valid_lla(lla: bytes) -> bool:
    """A 6-byte unicast MAC: a group address never owns an IPv6 address."""
    return len(lla) == 6 and not lla[0] & 1


class NeighborCache:
    """Entries, their NUD timers and the packets waiting for resolution."""

    __slots__ = ("_base_reachable", "_config", "_counters", "_entries", "_pending",
                 "_reachable_drawn", "_reachable_time", "_retrans", "_rng", "changed")

    def __init__(self, config: StackConfig, counters: Counters, rng: random.Random) -> None:
        if min(config.nd_cache_limit, config.nd_pending_limit, config.nd_queue_limit,
               config.nd_max_multicast_solicit, config.nd_max_unicast_solicit) < 1:
            raise UsageError("the neighbour cache's limits and solicitation counts must be >= 1")
        self._config = config
        self._counters = counters
        self._rng = rng
        self._entries: dict[IPv6Address, _Entry] = {}
        # Set by anything that may move a timer (a state change, an entry made or gone);
        # the stack clears it when it re-reads next_deadline(), so it can keep the IPv6
        # control plane's deadline between changes instead of asking every loop.
        self.changed = True
        self._pending = 0  # entries in INCOMPLETE
        self._base_reachable = config.nd_base_reachable_time
        self._retrans = config.nd_retrans_timer
        self._reachable_time = 0.0
        self._reachable_drawn: float | None = None  # the first poll starts the redraw clock
        self._draw_reachable_time()

    # -- timers ------------------------------------------------------------------------------

    @property
    def reachable_time(self) -> float:
        """The current randomised ReachableTime, in seconds."""
        return self._reachable_time

    @property
    def retrans_timer(self) -> float:
        return self._retrans

    def set_timers(self, base_reachable: float | None, retrans: float | None) -> None:
        """Apply an RA's Reachable Time / Retrans Timer (in seconds; None: unspecified).

        6.3.4: a new base redraws ReachableTime; values are clamped to sane bounds so a
        bogus RA cannot make us probe in a tight loop or never age entries.
        """
        if retrans is not None and retrans > 0:
            self._retrans = min(max(retrans, MIN_RETRANS_TIMER), MAX_RETRANS_TIMER)
        if base_reachable is not None and base_reachable > 0:
            base = min(max(base_reachable, MIN_BASE_REACHABLE_TIME), MAX_BASE_REACHABLE_TIME)
            if base != self._base_reachable:
                self._base_reachable = base
                self._draw_reachable_time()

    def _draw_reachable_time(self) -> None:
        factor = self._rng.uniform(MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR)
        self._reachable_time = self._base_reachable * factor

    # -- the state machine's one choke point ----------------------------------------------------

    def _set_state(self, addr: IPv6Address, entry: _Entry, state: NudState,
                   now: float) -> None:
        """Every transition goes through here, so the timers and the pending count agree
        with the state."""
        if entry.state is NudState.INCOMPLETE and state is not NudState.INCOMPLETE:
            self._pending -= 1
        self.changed = True
        entry.state = state
        entry.probes = 0
        if state is NudState.REACHABLE:
            entry.deadline = now + self._reachable_time
            entry.used = now
        elif state is NudState.DELAY:
            entry.deadline = now + self._config.nd_delay_first_probe_time
        elif state is NudState.PROBE:
            entry.deadline = now + self._retrans
            entry.probes = 1
        else:
            entry.deadline = now
        self._counters.inc(f"nd.state.{state.lower()}")

    def _age(self, addr: IPv6Address, entry: _Entry, now: float) -> None:
        """REACHABLE → STALE once ReachableTime passed without confirmation (7.3.3)."""
        if entry.state is NudState.REACHABLE and now >= entry.deadline:
            self._set_state(addr, entry, NudState.STALE, now)

    def _get(self, addr: IPv6Address, now: float) -> _Entry | None:
        entry = self._entries.get(addr)
        if entry is not None:
            self._age(addr, entry, now)
        return entry

    def _delete(self, addr: IPv6Address) -> _Entry:
        entry = self._entries.pop(addr)
        self.changed = True
        if entry.state is NudState.INCOMPLETE:
            self._pending -= 1
        return entry

    def _flush(self, addr: IPv6Address, entry: _Entry, now: float) -> list[NeighborAction]:
        """Hand the INCOMPLETE queue over; a STALE entry we just sent on goes to DELAY."""
        if not entry.queue or entry.lla is None:
            entry.queue.clear()
            return []
        packets = tuple(entry.queue)
        entry.queue.clear()
        self._counters.inc("nd.resolve.ok")
        entry.used = now
        if entry.state is NudState.STALE:
            self._set_state(addr, entry, NudState.DELAY, now)
        return [SendQueued(address=addr, link_address=entry.lla, packets=packets)]

    # -- sending -------------------------------------------------------------------------------

    def lookup_for_send(self, addr: IPv6Address, now: float) -> bytes | None:
        """The MAC to send to ``addr`` now, or None when it must be resolved (then
        :meth:`enqueue` the packet).

        Sending while STALE starts the DELAY timer (7.3.3); in DELAY and PROBE the cached
        MAC keeps being used while NUD decides.
        """
        entry = self._get(addr, now)
        if entry is None or entry.lla is None:
            return None
        entry.used = now
        if entry.state is NudState.STALE:
            self._set_state(addr, entry, NudState.DELAY, now)
        return entry.lla

    def enqueue(self, addr: IPv6Address, packet: QueuedPacket, now: float
                ) -> list[NeighborAction]:
        """Hold ``packet`` until ``addr`` resolves (appendix C: "packet to send").

        A new resolution creates an INCOMPLETE entry and returns the first multicast NS.
        Too many destinations already resolving, or a table full of unresolved ones, drops
        the packet (counted).  If the entry already has a MAC (the caller did not ask
        :meth:`lookup_for_send` first) the packet comes straight back in a
        :class:`SendQueued`, never lost.
        """
        if addr.is_multicast or addr.is_unspecified:
            raise UsageError(f"{addr} is not a unicast neighbour")
        entry = self._get(addr, now)
        actions: list[NeighborAction] = []
        if entry is None:
            if self._pending >= self._config.nd_pending_limit:
                self._counters.inc("nd.queue.too_many_destinations")
                return []
            if not self._make_room(now):
                self._counters.inc("nd.queue.table_full")
                return []
            entry = _Entry(state=NudState.INCOMPLETE, lla=None, is_router=False,
                           deadline=now + self._retrans, used=now, probes=1)
            self._entries[addr] = entry
            self.changed = True
            self._pending += 1
            self._counters.inc("nd.state.incomplete")
            self._counters.inc("nd.tx.multicast_solicit")
            actions.append(self._multicast_ns(addr))
        elif entry.lla is not None:
            lla = entry.lla
            self.lookup_for_send(addr, now)  # the send that moves STALE to DELAY
            return [SendQueued(address=addr, link_address=lla, packets=(packet,))]
        if len(entry.queue) >= self._config.nd_queue_limit:
            entry.queue.popleft()
            self._counters.inc("nd.queue.overflow")
        entry.queue.append(packet)
        return actions

    @staticmethod
    def _multicast_ns(addr: IPv6Address) -> SendNeighborSolicitation:
        return SendNeighborSolicitation(target=addr, destination=solicited_node(addr),
                                        include_source_lla=True)

    # -- what the network tells us ------------------------------------------------------------

    def na_received(self, target: IPv6Address, tlla: bytes | None, *, solicited: bool,
                    override: bool, router: bool, now: float) -> list[NeighborAction]:
        """A valid NA for ``target`` (RFC 4861 7.2.5), ``tlla`` from its Target Link-Layer
        Address option if it had one."""
        count = self._counters.inc
        entry = self._get(target, now)
        if entry is None:
            count("nd.na.no_entry")  # 7.2.5: we never asked, so nothing to learn
            return []
        if tlla is not None and not valid_lla(tlla):
            count("nd.na.bad_lla")
            return []
        if entry.state is NudState.INCOMPLETE:
            if tlla is None:
                count("nd.na.incomplete_without_tlla")  # on Ethernet it must say the MAC
                return []
            entry.lla = tlla
            entry.is_router = router
            self._set_state(target, entry,
                            NudState.REACHABLE if solicited else NudState.STALE, now)
            return self._flush(target, entry, now)
        different = tlla is not None and tlla != entry.lla
        if not override and different:
            # 7.2.5 I: no override, another MAC — only a REACHABLE entry loses its standing.
            if entry.state is NudState.REACHABLE:
                self._set_state(target, entry, NudState.STALE, now)
            count("nd.na.ignored_no_override")
            return []
        # 7.2.5 II: override, or the same MAC, or no MAC at all.
        if different:
            entry.lla = tlla
        if solicited:
            self._set_state(target, entry, NudState.REACHABLE, now)
        elif different:
            self._set_state(target, entry, NudState.STALE, now)
        was_router = entry.is_router
        entry.is_router = router
        if was_router and not router:
            count("nd.na.router_became_host")
            return [RouterFlagCleared(address=target)]
        return []

    def ns_received(self, source: IPv6Address, slla: bytes | None, now: float
                    ) -> list[NeighborAction]:
        """An NS from ``source`` (not ``::``) with a Source Link-Layer Address (7.2.3):
        create a STALE entry (IsRouter false) or update one; IsRouter is left alone."""
        return self._learn(source, slla, None, now)

    def rs_received(self, source: IPv6Address, slla: bytes | None, now: float
                    ) -> list[NeighborAction]:
        """An RS's source link-layer option (appendix C; hosts otherwise ignore RS, 6.2.6)."""
        return self._learn(source, slla, None, now)

    def ra_received(self, router: IPv6Address, slla: bytes | None, now: float
                    ) -> list[NeighborAction]:
        """An RA (6.3.4): record the MAC (creating a STALE entry) and set IsRouter — also
        when no option came but the entry exists."""
        return self._learn(router, slla, True, now)

    def redirect_received(self, target: IPv6Address, tlla: bytes | None, *,
                          target_is_router: bool, now: float) -> list[NeighborAction]:
        """A Redirect's Target Link-Layer Address (8.3).  ``target_is_router`` is true when
        the Target differs from the Destination (the target is a better first hop)."""
        return self._learn(target, tlla, True if target_is_router else None, now)

    def _learn(self, addr: IPv6Address, lla: bytes | None, is_router: bool | None,
               now: float) -> list[NeighborAction]:
        count = self._counters.inc
        if addr.is_multicast or addr.is_unspecified:
            count("nd.learn.bad_source")
            return []
        if lla is not None and not valid_lla(lla):
            count("nd.learn.bad_lla")
            return []
        entry = self._get(addr, now)
        if lla is None:
            if entry is not None and is_router is not None:
                entry.is_router = is_router
            return []  # appendix C: no option, nothing else changes
        if entry is None:
            if not self._make_room(now):
                count("nd.learn.table_full")
                return []
            entry = _Entry(state=NudState.STALE, lla=lla, is_router=bool(is_router),
                           deadline=now, used=now)
            self._entries[addr] = entry
            self.changed = True
            count("nd.state.stale")
            return []
        if is_router is not None:
            entry.is_router = is_router
        if entry.state is NudState.INCOMPLETE:
            entry.lla = lla
            self._set_state(addr, entry, NudState.STALE, now)
            return self._flush(addr, entry, now)
        if lla != entry.lla:
            entry.lla = lla
            self._set_state(addr, entry, NudState.STALE, now)
        return []

    def confirm(self, addr: IPv6Address, now: float) -> None:
        """Upper-layer reachability confirmation (7.3.1: e.g. TCP saw new data acknowledged).

        Only an entry with a MAC becomes REACHABLE: confirmation says the path works, not
        which MAC it works through.
        """
        entry = self._get(addr, now)
        if entry is None or entry.state is NudState.INCOMPLETE:
            return
        self._set_state(addr, entry, NudState.REACHABLE, now)
        self._counters.inc("nd.confirm.upper_layer")

    def is_probably_reachable(self, addr: IPv6Address, now: float) -> bool:
        """6.3.6's test for default router selection: an entry that is not INCOMPLETE."""
        entry = self._get(addr, now)
        return entry is not None and entry.state is not NudState.INCOMPLETE

    def is_router(self, addr: IPv6Address) -> bool:
        entry = self._entries.get(addr)
        return entry is not None and entry.is_router

    # -- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> list[NeighborAction]:
        """Retransmissions, DELAY → PROBE, give-ups and garbage collection, due at ``now``."""
        if self._reachable_drawn is None:
            self._reachable_drawn = now
        elif now - self._reachable_drawn >= REACHABLE_REDRAW_INTERVAL:
            self._draw_reachable_time()
            self._reachable_drawn = now
        actions: list[NeighborAction] = []
        for addr, entry in list(self._entries.items()):
            self._age(addr, entry, now)
            state = entry.state
            if state in (NudState.REACHABLE, NudState.STALE) or now < entry.deadline:
                continue
            if state is NudState.DELAY:
                self._set_state(addr, entry, NudState.PROBE, now)
                actions.append(self._unicast_ns(addr, entry))
            elif state is NudState.INCOMPLETE:
                if entry.probes < self._config.nd_max_multicast_solicit:
                    entry.probes += 1
                    entry.deadline = now + self._retrans
                    self._counters.inc("nd.tx.multicast_solicit")
                    actions.append(self._multicast_ns(addr))
                else:
                    self._delete(addr)
                    self._counters.inc("nd.resolve.failed")
                    actions.append(ResolutionFailed(address=addr, packets=tuple(entry.queue),
                                                    is_router=entry.is_router))
            elif entry.probes < self._config.nd_max_unicast_solicit:  # PROBE
                entry.probes += 1
                entry.deadline = now + self._retrans
                actions.append(self._unicast_ns(addr, entry))
            else:
                self._delete(addr)
                self._counters.inc("nd.probe.failed")
                actions.append(ResolutionFailed(address=addr, packets=(),
                                                is_router=entry.is_router))
        self._collect_stale(now)
        return actions

    def _unicast_ns(self, addr: IPv6Address, entry: _Entry) -> SendNeighborSolicitation:
        self._counters.inc("nd.tx.unicast_solicit")
        return SendNeighborSolicitation(target=addr, destination=addr, include_source_lla=True,
                                        link_destination=entry.lla)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to send or give up on (None: nothing)."""
        deadlines = [e.deadline for e in self._entries.values()
                     if e.state in (NudState.INCOMPLETE, NudState.DELAY, NudState.PROBE)]
        return min(deadlines) if deadlines else None

    # -- bounds ----------------------------------------------------------------------------------

    def _make_room(self, now: float) -> bool:
        """Make space for one new entry; False when only unresolved entries are left."""
        entries = self._entries
        if len(entries) < self._config.nd_cache_limit:
            return True
        victims = [a for a, e in entries.items() if e.state is not NudState.INCOMPLETE]
        if not victims:
            return False
        for addr in victims:
            self._age(addr, entries[addr], now)

        def rank(a: IPv6Address) -> tuple[bool, bool, float]:
            e = entries[a]
            return (e.state is not NudState.STALE, e.is_router, e.used)

        del entries[min(victims, key=rank)]
        self._counters.inc("nd.cache.evicted")
        return True

    def _collect_stale(self, now: float) -> None:
        """Linux's periodic GC: above gc_thresh1, STALE entries idle too long go."""
        entries = self._entries
        excess = len(entries) - self._config.nd_gc_threshold
        if excess <= 0:
            return
        idle = sorted((e.used, a) for a, e in entries.items()
                      if e.state is NudState.STALE and not e.is_router
                      and now - e.used >= self._config.nd_gc_stale_time)
        for _, addr in idle[:excess]:
            del entries[addr]
            self._counters.inc("nd.cache.collected")

    # -- display ---------------------------------------------------------------------------------

    def entries(self, now: float) -> dict[IPv6Address, NeighborInfo]:
        """Every entry with its (aged) state, for ``vipernet info`` and tests."""
        result: dict[IPv6Address, NeighborInfo] = {}
        for addr, entry in self._entries.items():
            self._age(addr, entry, now)
            result[addr] = NeighborInfo(state=entry.state, link_address=entry.lla,
                                        is_router=entry.is_router, queued=len(entry.queue))
        return result

    def state_of(self, addr: IPv6Address, now: float) -> NudState | None:
        entry = self._get(addr, now)
        return None if entry is None else entry.state

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def pending(self) -> int:
        """Destinations being resolved (INCOMPLETE) right now."""
        return self._pending

    def flush(self) -> list[NeighborAction]:
        """Forget everything (the link went down or the address changed); queued packets
        come back as failed so their senders hear about it."""
        actions: list[NeighborAction] = [
            ResolutionFailed(address=addr, packets=tuple(e.queue), is_router=e.is_router)
            for addr, e in self._entries.items() if e.queue]
        self._entries.clear()
        self._pending = 0
        return actions
