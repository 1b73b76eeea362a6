"""IPv4 (RFC 791, RFC 1122): validation, local delivery, routing, fragmentation.

Receive: the header is checked by :func:`vipernet.wire.parse_ipv4` (the header checksum
always: it is cheap and no device offloads it to us); only packets for our address, a
broadcast address, or a group the IGMP layer says we listen to (from that source: its
filter) are accepted — IGMP messages to a group we are in pass whatever the filter, as
queries for it must; fragments go through :class:`Reassembler`; the payload is
dispatched by protocol number to the registered handler, and an unknown protocol earns an
ICMP protocol unreachable.  Every branch is counted under ``ipv4.rx.*``.  An entirely
ordinary TCP packet takes a fast path to the handler's ``receive_segment`` (addresses as
ints, no header object); anything unusual falls through to the general path above.

Send (:meth:`Ipv4Layer.send`): on-link destinations go straight to ARP, others to the
gateway (no gateway: ENETUNREACH); TTL 64; datagrams larger than the MTU are fragmented,
except when the L4 layer asked for an offload (a TCP segment is sized by MSS or handed to
the device's TSO whole, never fragmented).  The offload's offsets arrive relative to the
L4 header and are shifted here by the Ethernet and IP header lengths.  TCP packets carry
DF (path MTU discovery).  Multicast goes straight to the group's Ethernet address (no
gateway, no ARP), broadcast to ff:ff:ff:ff:ff:ff; a copy of a broadcast, and of a
multicast when the sender asked (``multicast_loop``) and we listen to the group, loops back
as on Linux (``ip_mc_output``); a multicast with TTL 0 only loops.  Packets to our own
address loop back through the receive path on
the next ``transmit()``/``poll()``.  The send path is on every TCP segment's way out, so it
builds the 20-byte header with one ``struct.pack`` and copies the payload exactly once
(into the Ethernet frame): ~7 µs for a 64 KiB TSO segment.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections import deque
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from vipernet.link.frame import GsoType, Offload
from vipernet.stack.reassembly import Reassembler
from vipernet.stack.sockets_common import LIMITED_BROADCAST, os_error
from vipernet.wire.checksum import internet_checksum
from vipernet.wire.errors import WireError
from vipernet.wire.ethernet import BROADCAST_MAC
from vipernet.wire.icmp import UnreachableCode
from vipernet.wire.igmp import multicast_mac
from vipernet.wire.ipv4 import MAX_PACKET_LENGTH, IpProto, IPv4Header, parse_ipv4
from vipernet.wire.ipv4_options import SOURCE_ROUTES, BadOption, check_options

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import random

    from vipernet.link.frame import DeviceCapabilities
    from vipernet.stack.arp_layer import ArpLayer
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.icmp_layer import IcmpLayer
    from vipernet.stack.igmp_layer import IgmpLayer

ETH_HEADER = 14
_L4_SHIFT = ETH_HEADER + 20  # we never send IP options
_HEADER = struct.Struct("!BBHHHBBH4s4s")
_DF = 0x4000
_MF = 0x2000
_LOCAL_OFFLOAD = Offload(data_valid=True)
_PROTO_IGMP = 2
_ALL_SYSTEMS = IPv4Address("224.0.0.1")


class ProtocolHandler(Protocol):
    """What the IP layer hands transport payloads to (ICMP, UDP, TCP)."""

    def receive(self, ip_header: IPv4Header, payload: memoryview, offload: Offload | None,
                now: float) -> None: ...


class Ipv4Host(Protocol):
    """What the IPv4 layer needs from its stack (ARP and ICMP, below it, are reached through
    the stack too)."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    mtu: int
    capabilities: DeviceCapabilities
    arp: ArpLayer
    icmp: IcmpLayer
    igmp: IgmpLayer
    _our_ip: bytes
    _our_ip_int: int
    _our_bcast: bytes

    def _emit_ipv4(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None: ...


class Ipv4Layer:
    """IPv4 in both directions; owns the protocol handlers and the reassembler."""

    __slots__ = ("_ident", "_loopback", "_stack", "handlers", "reassembler")

    def __init__(self, stack: Ipv4Host) -> None:
        self._stack = stack
        self.handlers: dict[int, ProtocolHandler] = {}
        self.reassembler = Reassembler(stack.config, stack.counters)
        self._ident = stack.rng.randrange(0x10000)
        self._loopback: deque[bytes] = deque()

    # -- receive ----------------------------------------------------------------------------

    def receive(self, data: memoryview, offload: Offload | None, now: float) -> None:
        stack = self._stack
        # The TCP fast path: a packet that is entirely ordinary (no options, not a fragment,
        # to our unicast address, a good header checksum, a plausible unicast source) goes
        # to the TCP layer by integer addresses, without the header dataclass and its two
        # IPv4Address objects.  Anything else takes the general path below, which does all
        # the counting of drops, so the two paths cannot disagree on what is accepted.
        if (len(data) >= 40 and data[0] == 0x45 and data[9] == 6 and not data[6] & 0xBF
                and not data[7] and data[12] < 224 and data[16:20] == stack._our_ip):
            total = (data[2] << 8) | data[3]
            raw_src = bytes(data[12:16])
            if (40 <= total <= len(data) and raw_src != stack._our_ip
                    and raw_src != stack._our_bcast and raw_src != b"\0\0\0\0"
                    and internet_checksum(data[:20]) == 0):
                fast = getattr(self.handlers.get(6), "receive_segment", None)
                if fast is not None:
                    stack.counters.inc("ipv4.rx.delivered")
                    fast(int.from_bytes(raw_src, "big"), stack._our_ip_int, data[20:total],
                         offload, now)
                    return
        count = stack.counters.inc
        try:
            header, payload = parse_ipv4(data)
        except WireError as exc:
            count(f"ipv4.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        our = stack.config.ip
        dst = header.dst
        if dst != our.ip and dst != LIMITED_BROADCAST and dst != our.network.broadcast_address:
            if not dst.is_multicast:
                count("ipv4.rx.not_for_us")
                return
            igmp = stack.igmp
            if header.proto == _PROTO_IGMP:
                if dst != _ALL_SYSTEMS and not igmp.listening(dst):
                    count("ipv4.rx.multicast_not_joined")
                    return
            elif not igmp.accepts(dst, header.src):
                count("ipv4.rx.multicast_filtered")
                return
        src = header.src
        # Martians (RFC 1812 5.3.7): a group or broadcast source, our own address coming
        # back from the wire, or "this host" (0.0.0.0) talking to our unicast address.
        if (src.is_multicast or src == LIMITED_BROADCAST or src == our.ip
                or src == our.network.broadcast_address
                or (src.is_unspecified and dst == our.ip)):
            count("ipv4.rx.martian_source")
            return
        if header.options and not self._options_acceptable(header, payload, now):
            return
        self._deliver(header, payload, offload, now)

    def _options_acceptable(self, header: IPv4Header, payload: memoryview, now: float
                            ) -> bool:
        """Whether a packet's options let it in; every refusal is counted."""
        stack = self._stack
        try:
            kinds = check_options(header.options)
        except BadOption as exc:
            # Linux drops it too, and says where (ip_options_compile, RFC 1122 3.2.1.8)
            stack.counters.inc("ipv4.rx.bad_options")
            log.debug("drop: %s", exc)
            stack.icmp.send_parameter_problem(header, payload, exc.pointer, now)
            return False
        if not kinds.isdisjoint(SOURCE_ROUTES):
            # Silently, as Linux with its default accept_source_route=0 (and RFC 7126
            # 4.3/4.4): a source route lets a spoofer have the answers routed back to
            # him, and we could not honour it anyway (RFC 1122 3.2.2.6 would have an
            # echo reply, and 4.2.3.8 a TCP connection, reverse it).
            stack.counters.inc("ipv4.rx.source_route")
            return False
        return True

    def _deliver(self, header: IPv4Header, payload: memoryview, offload: Offload | None,
                 now: float) -> None:
        stack = self._stack
        if header.more_fragments or header.fragment_offset:
            whole = self.reassembler.add(header, payload, now)
            if whole is None:
                return
            header, data = whole
            payload = memoryview(data)
            offload = None  # the device's verdict covered one fragment, not the datagram
        handler = self.handlers.get(header.proto)
        if handler is None:
            stack.counters.inc("ipv4.rx.unknown_protocol")
            stack.icmp.send_unreachable(header, payload, UnreachableCode.PROTOCOL, now)
            return
        stack.counters.inc("ipv4.rx.delivered")
        handler.receive(header, payload, offload, now)

    # -- send -------------------------------------------------------------------------------

    def route(self, dst: IPv4Address) -> IPv4Address:
        """The next hop for ``dst``; ENETUNREACH when it is off-link and there is no gateway."""
        config = self._stack.config
        if dst in config.ip.network or dst == LIMITED_BROADCAST or dst.is_multicast:
            return dst
        if config.gateway is None:
            raise os_error(errno.ENETUNREACH, f"no route to {dst} (no gateway)")
        return config.gateway

    def next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def _header(self, dst: bytes, proto: int, total: int, ttl: int, tos: int,
                flags_offset: int) -> bytes:
        """A 20-byte header straight from struct: the send path builds no dataclass."""
        raw = _HEADER.pack(0x45, tos, total, self.next_ident(), flags_offset, ttl, proto, 0,
                           self._stack._our_ip, dst)
        return b"".join((raw[:10], internet_checksum(raw).to_bytes(2, "big"), raw[12:]))

    def send(self, dst: IPv4Address, proto: IpProto | int, payload: bytes,
             offload_l4: Offload | None, now: float, *, ttl: int | None = None,
             tos: int = 0, options: bytes = b"", multicast_loop: bool = False) -> None:
        stack = self._stack
        config = stack.config
        ttl = config.ttl if ttl is None else ttl
        proto = int(proto)
        if (int(dst) >> 28 == 14 or dst == LIMITED_BROADCAST
                or dst == config.ip.network.broadcast_address) and not self._loop_group_copy(
                    dst, proto, payload, ttl, tos, multicast_loop):
            return
        if options:
            self._send_with_options(dst, proto, payload, ttl, tos, options, now)
            return
        size = 20 + len(payload)
        if size > MAX_PACKET_LENGTH:
            raise os_error(errno.EMSGSIZE, f"{size}-byte IP packet > {MAX_PACKET_LENGTH}")
        flags = _DF if proto == IpProto.TCP else 0  # TCP does path MTU discovery
        if dst == config.ip.ip:
            header = self._header(dst.packed, proto, size, ttl, tos, flags)
            self._loopback.append(header + payload)
            stack.counters.inc("ipv4.tx.loopback")
            return
        next_hop = self.route(dst)
        if offload_l4 is not None:
            limit = (stack.capabilities.max_frame - ETH_HEADER
                     if offload_l4.gso_type != GsoType.NONE else stack.mtu)
            if size > limit:
                stack.counters.inc("ipv4.tx.too_big")
                raise os_error(errno.EMSGSIZE, f"{size}-byte packet > {limit} with offload")
            o = offload_l4
            offload: Offload | None = Offload(
                needs_csum=o.needs_csum, data_valid=o.data_valid,
                csum_start=o.csum_start + _L4_SHIFT, csum_offset=o.csum_offset,
                gso_type=o.gso_type, gso_size=o.gso_size, hdr_len=o.hdr_len + _L4_SHIFT)
            header = self._header(dst.packed, proto, size, ttl, tos, flags)
            self._output(next_hop, header, payload, offload, now)
        elif size <= stack.mtu:
            header = self._header(dst.packed, proto, size, ttl, tos, flags)
            self._output(next_hop, header, payload, None, now)
        else:
            self._fragment(next_hop, dst.packed, proto, ttl, tos, payload, now)
        stack.counters.inc("ipv4.tx.packets")

    def _loop_group_copy(self, dst: IPv4Address, proto: int, payload: bytes, ttl: int,
                         tos: int, multicast_loop: bool) -> bool:
        """Loop back our copy of a broadcast or multicast; False: it goes no further."""
        stack = self._stack
        multicast = dst.is_multicast
        if not multicast or (multicast_loop and stack.igmp.listening(dst)):
            size = 20 + len(payload)
            if size <= MAX_PACKET_LENGTH:
                self._loopback.append(self._header(dst.packed, proto, size, max(ttl, 1), tos, 0)
                                      + payload)
                stack.counters.inc("ipv4.tx.loopback")
        return not multicast or ttl > 0

    def _send_with_options(self, dst: IPv4Address, proto: int, payload: bytes, ttl: int,
                           tos: int, options: bytes, now: float) -> None:
        """The rare packet with options (an echo reply carrying Record Route/Timestamp):
        built whole, never offloaded; one that would need fragmenting goes without them
        (RFC 791: Record Route and Timestamp are not copied into fragments anyway)."""
        stack = self._stack
        hlen = 20 + len(options)
        size = hlen + len(payload)
        if size > stack.mtu or dst == stack.config.ip.ip:
            stack.counters.inc("ipv4.tx.options_left_out")
            self.send(dst, proto, payload, None, now, ttl=ttl, tos=tos)
            return
        next_hop = self.route(dst)
        raw = _HEADER.pack(0x40 | hlen // 4, tos, size, self.next_ident(), 0, ttl, proto, 0,
                           stack._our_ip, dst.packed) + options
        header = b"".join((raw[:10], internet_checksum(raw).to_bytes(2, "big"), raw[12:]))
        self._output(next_hop, header, payload, None, now)
        stack.counters.inc("ipv4.tx.packets")

    def _fragment(self, next_hop: IPv4Address, dst: bytes, proto: int, ttl: int, tos: int,
                  payload: bytes, now: float) -> None:
        stack = self._stack
        chunk = (stack.mtu - 20) // 8 * 8
        view = memoryview(payload)
        total = len(payload)
        ident = self.next_ident()  # every fragment of one datagram shares it
        for offset in range(0, total, chunk):
            part = view[offset:offset + chunk]
            flags = offset // 8 | (_MF if offset + chunk < total else 0)
            raw = _HEADER.pack(0x45, tos, 20 + len(part), ident, flags, ttl, proto, 0,
                               stack._our_ip, dst)
            header = b"".join((raw[:10], internet_checksum(raw).to_bytes(2, "big"), raw[12:]))
            self._output(next_hop, header, part, None, now)
            stack.counters.inc("ipv4.tx.fragments")

    def _output(self, next_hop: IPv4Address, header: bytes, payload: bytes | memoryview,
                offload: Offload | None, now: float) -> None:
        stack = self._stack
        if next_hop == LIMITED_BROADCAST or next_hop == stack.config.ip.network.broadcast_address:
            stack._emit_ipv4(BROADCAST_MAC, header, payload, offload)
            return
        if int(next_hop) >> 28 == 14:  # 224.0.0.0/4: the group's own MAC, no ARP
            stack._emit_ipv4(multicast_mac(next_hop), header, payload, offload)
            return
        arp = stack.arp
        mac = arp.resolve(next_hop, now)
        if mac is not None:
            stack._emit_ipv4(mac, header, payload, offload)
        else:
            arp.hold(next_hop, (header + payload, offload), now)

    # -- loopback ------------------------------------------------------------------------------

    @property
    def has_loopback(self) -> bool:
        return bool(self._loopback)

    def run_loopback(self, now: float) -> None:
        """Deliver the packets we sent ourselves (only those queued so far: no livelock)."""
        for _ in range(len(self._loopback)):
            packet = self._loopback.popleft()
            header, payload = parse_ipv4(packet)
            self._deliver(header, payload, _LOCAL_OFFLOAD, now)
