"""ARP (RFC 826) over Ethernet: answering, learning, asking, and gratuitous announcements.

* A request for our address is answered, and its sender is learnt (it is about to talk
  to us, so we will need its MAC).  Other ARP traffic only refreshes entries we already
  have or are resolving (RFC 826's merge rule), so a chatty LAN cannot fill the cache.
* A frame claiming *our* address from another MAC is a conflict: counted, never learnt.
* Gratuitous ARP (a request with sender = target = our address, RFC 5227's announcement)
  goes out at start-up and whenever the address changes.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from vipernet.link.frame import Frame
from vipernet.stack.arp_cache import ArpCache, QueuedPacket
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.errors import WireError
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters

ZERO_MAC = bytes(6)


class ArpHost(Protocol):
    """What the ARP layer needs from its stack: the configuration, the counters and the way
    out for frames (and for the packets that waited for the answer)."""

    config: StackConfig
    counters: Counters

    def _emit(self, frame: Frame) -> None: ...
    def _send_queued(self, mac: bytes, packets: list[QueuedPacket]) -> None: ...


class ArpLayer:
    """The ARP protocol engine around an :class:`ArpCache`."""

    __slots__ = ("_stack", "cache")

    def __init__(self, stack: ArpHost) -> None:
        self._stack = stack
        self.cache = ArpCache(stack.config, stack.counters)

    def receive(self, payload: memoryview, now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        try:
            packet = parse_arp(payload)
        except WireError as exc:
            count(f"arp.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        config = stack.config
        our_ip = config.ip.ip
        if packet.sender_mac[0] & 1:
            count("arp.rx.bad_sender_mac")  # a group address never owns an IP
            return
        if packet.sender_ip == our_ip:
            if packet.sender_mac != config.mac:
                count("arp.rx.address_conflict")
            return
        aimed = packet.target_ip == our_ip
        if not packet.sender_ip.is_unspecified:  # RFC 5227 probes carry 0.0.0.0
            flushed = self.cache.update(packet.sender_ip, packet.sender_mac, now, create=aimed)
            if flushed:
                stack._send_queued(packet.sender_mac, flushed)
        if packet.op == ArpOp.REQUEST:
            count("arp.rx.request")
            if aimed:
                self._send(ArpOp.REPLY, dst_mac=packet.sender_mac, target_mac=packet.sender_mac,
                           target_ip=packet.sender_ip)
                count("arp.tx.reply")
        else:
            count("arp.rx.reply")

    def request(self, target_ip: IPv4Address) -> None:
        self._send(ArpOp.REQUEST, dst_mac=BROADCAST_MAC, target_mac=ZERO_MAC,
                   target_ip=target_ip)
        self._stack.counters.inc("arp.tx.request")

    def gratuitous(self) -> None:
        """Announce our address (RFC 5227 announcement: a request for ourselves)."""
        self._send(ArpOp.REQUEST, dst_mac=BROADCAST_MAC, target_mac=ZERO_MAC,
                   target_ip=self._stack.config.ip.ip)
        self._stack.counters.inc("arp.tx.gratuitous")

    def _send(self, op: ArpOp, *, dst_mac: bytes, target_mac: bytes,
              target_ip: IPv4Address) -> None:
        config = self._stack.config
        body = build_arp(ArpPacket(op=op, sender_mac=config.mac, sender_ip=config.ip.ip,
                                   target_mac=target_mac, target_ip=target_ip))
        frame = build_ethernet(EthernetHeader(dst=dst_mac, src=config.mac,
                                              ethertype=EtherType.ARP), body)
        self._stack._emit(Frame(frame.ljust(60, b"\0")))

    def resolve(self, next_hop: IPv4Address, now: float) -> bytes | None:
        """The MAC for ``next_hop`` if cached (asking again, once, when it is about to expire)."""
        cache = self.cache
        mac = cache.lookup(next_hop, now)
        if mac is not None and cache.wants_refresh(next_hop, now):
            self.request(next_hop)
        return mac

    def hold(self, next_hop: IPv4Address, packet: QueuedPacket, now: float) -> None:
        """Queue ``packet`` until ``next_hop`` resolves; the first one starts a request."""
        if self.cache.enqueue(next_hop, packet, now):
            self.request(next_hop)

    def poll(self, now: float) -> list[tuple[IPv4Address, list[QueuedPacket]]]:
        retry, failed = self.cache.poll(now)
        for ip in retry:
            self.request(ip)
        return failed
