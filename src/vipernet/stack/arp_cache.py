"""The neighbour cache: IPv4 -> MAC with expiry, plus packets waiting for resolution.

Pure bookkeeping, no packets built here (that is :mod:`vipernet.stack.arp_layer`):

* an entry lives ``arp_cache_ttl`` seconds after its last confirmation; when it is used
  in its last ``arp_refresh_before`` seconds the caller is told to re-ask once, so a busy
  flow never stalls on a cache miss;
* a destination being resolved holds at most ``arp_queue_limit`` packets (the oldest is
  dropped and counted on overflow, as Linux's ``unres_qlen``); at most
  ``arp_pending_limit`` destinations are resolved at once;
* a request is retried every ``arp_retry_interval`` until ``arp_retries`` went unanswered;
  then the queue is handed back as failed so the sender can be told EHOSTUNREACH.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from vipernet.link.frame import Offload
from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters

# An IP packet (header included) waiting for its next hop's MAC, with its offload.
QueuedPacket = tuple[bytes, Offload | None]


@dataclass(slots=True)
class _Entry:
    mac: bytes
    expires: float
    refresh_asked: bool = False


@dataclass(slots=True)
class _Pending:
    next_try: float
    sent: int = 1
    queue: deque[QueuedPacket] = field(default_factory=deque)


class ArpCache:
    """Entries and pending resolutions, driven by the caller's clock."""

    __slots__ = ("_config", "_counters", "_entries", "_pending")

    def __init__(self, config: StackConfig, counters: Counters) -> None:
        self._config = config
        self._counters = counters
        self._entries: dict[IPv4Address, _Entry] = {}
        self._pending: dict[IPv4Address, _Pending] = {}

    def lookup(self, ip: IPv4Address, now: float) -> bytes | None:
        entry = self._entries.get(ip)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[ip]
            self._counters.inc("arp.cache.expired")
            return None
        return entry.mac

    def wants_refresh(self, ip: IPv4Address, now: float) -> bool:
        """True once per entry life when it is used close to its expiry."""
        entry = self._entries.get(ip)
        if entry is None or entry.refresh_asked:
            return False
        if now < entry.expires - self._config.arp_refresh_before:
            return False
        entry.refresh_asked = True
        return True

    def known(self, ip: IPv4Address) -> bool:
        return ip in self._entries or ip in self._pending

    def update(self, ip: IPv4Address, mac: bytes, now: float, *, create: bool
               ) -> list[QueuedPacket]:
        """Record ``ip is-at mac``; returns the packets that were waiting for it.

        ``create=False`` only refreshes an entry we already have or are resolving (RFC 826's
        merge rule for ARP traffic not aimed at us).
        """
        pending = self._pending.pop(ip, None)
        if not create and pending is None and ip not in self._entries:
            return []
        entries = self._entries
        if ip not in entries and len(entries) >= self._config.arp_cache_limit:
            # Evict the entry closest to expiry: it is the least recently confirmed.
            victim = min(entries, key=lambda k: entries[k].expires)
            del entries[victim]
            self._counters.inc("arp.cache.evicted")
        entries[ip] = _Entry(mac=mac, expires=now + self._config.arp_cache_ttl)
        if pending is None:
            return []
        self._counters.inc("arp.resolve.ok")
        return list(pending.queue)

    def enqueue(self, ip: IPv4Address, packet: QueuedPacket, now: float) -> bool | None:
        """Hold ``packet`` until ``ip`` resolves.

        Returns True when a request must be sent now (a new resolution), False when one is
        already under way, None when the packet was dropped (too many destinations).
        """
        pending = self._pending.get(ip)
        new = pending is None
        if pending is None:
            if len(self._pending) >= self._config.arp_pending_limit:
                self._counters.inc("arp.queue.too_many_destinations")
                return None
            pending = _Pending(next_try=now + self._config.arp_retry_interval)
            self._pending[ip] = pending
        if len(pending.queue) >= self._config.arp_queue_limit:
            pending.queue.popleft()
            self._counters.inc("arp.queue.overflow")
        pending.queue.append(packet)
        return new

    def poll(self, now: float) -> tuple[list[IPv4Address], list[tuple[IPv4Address,
                                                                        list[QueuedPacket]]]]:
        """Returns (destinations to ask again, (destination, dropped packets) that failed)."""
        retry: list[IPv4Address] = []
        failed: list[tuple[IPv4Address, list[QueuedPacket]]] = []
        for ip, pending in list(self._pending.items()):
            if now < pending.next_try:
                continue
            if pending.sent >= self._config.arp_retries:
                del self._pending[ip]
                self._counters.inc("arp.resolve.failed")
                failed.append((ip, list(pending.queue)))
                continue
            pending.sent += 1
            pending.next_try = now + self._config.arp_retry_interval
            retry.append(ip)
        return retry, failed

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(p.next_try for p in self._pending.values())

    def entries(self, now: float) -> dict[IPv4Address, bytes]:
        """The live entries (for ``vipernet info`` and tests)."""
        return {ip: e.mac for ip, e in self._entries.items() if now < e.expires}

    def pending_count(self, ip: IPv4Address) -> int:
        pending = self._pending.get(ip)
        return 0 if pending is None else len(pending.queue)
