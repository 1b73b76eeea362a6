"""Address and port translation between the guest and the gateway stack (pure, no I/O).

The gateway is a second vipernet :class:`~vipernet.stack.Stack` at 10.0.2.2 that listens
on one TCP port and one UDP port (:data:`RELAY_PORT`).  A guest packet to *any*
destination ``D:dport`` is rewritten on its way in so that it reaches that port::

    guest G:gport -> D:dport      becomes      G:alias -> 10.0.2.2:RELAY_PORT

where ``alias`` is a port allocated per flow, so the gateway's socket for the flow
(``getpeername() == (G, alias)``) tells the relay which destination the guest meant.
Replies are rewritten back (``10.0.2.2:RELAY_PORT -> G:alias`` becomes ``D:dport ->
G:gport``).  Checksums are patched incrementally (RFC 1624) - the IPv4 header's, and the
TCP/UDP one whether it is complete or a partial (``needs_csum``) pseudo-header sum - so a
64 KiB offloaded segment is never summed again.

IPv6 is translated the same way, to the gateway's fec0::2 (the gateway stack listens on
the same port number in both families, and aliases come from one pool, so an alias names
one flow whatever its family).  IPv6 has no header checksum; the pseudo-header that the
TCP/UDP checksum covers holds the 16-byte addresses, patched like IPv4's.  Only TCP/UDP
right after the fixed header, or after a Fragment header, is translated: the guest stack
puts no other extension header in front of them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from vipernet.wire.ipv4 import IpProto

RELAY_PORT = 1  # the gateway stack's TCP listener and UDP socket
ETH = 14
TCP = int(IpProto.TCP)
UDP = int(IpProto.UDP)
ICMP = int(IpProto.ICMP)
IPV6_HEADER = 40
_FRAGMENT = 44  # IPv6 Fragment header (RFC 8200 4.5)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class Packet:
    """Where the interesting fields of a TCP/UDP frame are (offsets into the frame)."""

    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    l4: int  # offset of the transport header
    fragment: bool  # a non-first fragment: no transport header, ports read as 0
    tcp_flags: int  # 0 for UDP
    more: bool = False  # more fragments follow (a first fragment has this and ports)
    ident: int = 0
    ipv6: bool = False  # src/dst are 16 bytes, no header checksum


def inspect(data: bytes | bytearray | memoryview) -> Packet | None:
    """The addressing of an IPv4 or IPv6 TCP/UDP frame, or None for anything else /
    truncated."""
    if len(data) >= ETH + IPV6_HEADER and data[12] == 0x86 and data[13] == 0xDD:
        return _inspect6(data)
    if len(data) < ETH + 20 or data[12] != 0x08 or data[13] != 0x00:
        return None
    ihl = (data[ETH] & 0x0F) * 4
    proto = data[ETH + 9]
    if ihl < 20 or proto not in (TCP, UDP):
        return None
    l4 = ETH + ihl
    flags_frag = (data[ETH + 6] << 8) | data[ETH + 7]
    ident = (data[ETH + 4] << 8) | data[ETH + 5]
    more = bool(flags_frag & 0x2000)
    src, dst = bytes(data[ETH + 12:ETH + 16]), bytes(data[ETH + 16:ETH + 20])
    if flags_frag & 0x1FFF:
        return Packet(proto, src, dst, 0, 0, l4, True, 0, more, ident)
    if len(data) < l4 + (14 if proto == TCP else 8):
        return None
    sport = (data[l4] << 8) | data[l4 + 1]
    dport = (data[l4 + 2] << 8) | data[l4 + 3]
    flags = data[l4 + 13] if proto == TCP else 0
    return Packet(proto, src, dst, sport, dport, l4, False, flags, more, ident)


def _inspect6(data: bytes | bytearray | memoryview) -> Packet | None:
    proto = data[ETH + 6]
    l4 = ETH + IPV6_HEADER
    src, dst = bytes(data[ETH + 8:ETH + 24]), bytes(data[ETH + 24:ETH + 40])
    more, ident, offset = False, 0, 0
    if proto == _FRAGMENT:
        if len(data) < l4 + 8:
            return None
        proto = data[l4]
        word = (data[l4 + 2] << 8) | data[l4 + 3]
        offset, more = word >> 3, bool(word & 1)
        ident = _U32.unpack_from(data, l4 + 4)[0]
        l4 += 8
    if proto not in (TCP, UDP):
        return None
    if offset:
        return Packet(proto, src, dst, 0, 0, l4, True, 0, more, ident, True)
    if len(data) < l4 + (14 if proto == TCP else 8):
        return None
    sport = (data[l4] << 8) | data[l4 + 1]
    dport = (data[l4 + 2] << 8) | data[l4 + 3]
    flags = data[l4 + 13] if proto == TCP else 0
    return Packet(proto, src, dst, sport, dport, l4, False, flags, more, ident, True)


def adjust_checksum(value: int, old: bytes, new: bytes, *, complemented: bool) -> int:
    """RFC 1624: the checksum (or partial sum) after 16-bit words ``old`` became ``new``."""
    total = (~value & 0xFFFF) if complemented else value
    for i in range(0, len(old), 2):
        total += (~((old[i] << 8) | old[i + 1])) & 0xFFFF
        total += (new[i] << 8) | new[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) if complemented else total


def rewrite(data: bytearray, packet: Packet, *, src: bytes, dst: bytes, sport: int, dport: int,
            partial: bool) -> None:
    """Set addresses and ports in place, patching the IPv4 and L4 checksums."""
    old_addrs = packet.src + packet.dst
    new_addrs = src + dst
    if old_addrs != new_addrs:
        if packet.ipv6:
            data[ETH + 8:ETH + 40] = new_addrs  # no header checksum in IPv6
        else:
            csum = _U16.unpack_from(data, ETH + 10)[0]
            _U16.pack_into(data, ETH + 10, adjust_checksum(csum, old_addrs, new_addrs,
                                                            complemented=True))
            data[ETH + 12:ETH + 20] = new_addrs
    if packet.fragment:
        return  # a fragment's transport header is not ours to touch (callers never NAT them)
    l4 = packet.l4
    old = old_addrs + _U16.pack(packet.sport) + _U16.pack(packet.dport)
    new = new_addrs + _U16.pack(sport) + _U16.pack(dport)
    data[l4:l4 + 2] = _U16.pack(sport)
    data[l4 + 2:l4 + 4] = _U16.pack(dport)
    at = l4 + (16 if packet.proto == TCP else 6)
    csum = _U16.unpack_from(data, at)[0]
    if packet.proto == UDP and csum == 0 and not partial:
        return  # "no checksum" stays none
    fixed = adjust_checksum(csum, old, new, complemented=not partial)
    if packet.proto == UDP and fixed == 0 and not partial:
        fixed = 0xFFFF
    _U16.pack_into(data, at, fixed)


@dataclass(slots=True)
class Flow:
    """One translated conversation; ``relay`` is the I/O side's object for it."""

    proto: int
    guest_ip: bytes
    guest_port: int
    dest_ip: bytes
    dest_port: int
    alias: int
    last_used: float
    relay: Any = None

    @property
    def ipv6(self) -> bool:
        return len(self.dest_ip) == 16


FlowKey = tuple[int, bytes, int, bytes, int]


class FlowTable:
    """Flows by guest 5-tuple and by alias port; aliases handed out round robin."""

    def __init__(self, *, low: int = 20000, high: int = 65000) -> None:
        self.low = low
        self.high = high
        self._next = low
        self.by_key: dict[FlowKey, Flow] = {}
        self.by_alias: dict[tuple[int, int], Flow] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def find(self, packet: Packet) -> Flow | None:
        return self.by_key.get((packet.proto, packet.src, packet.sport, packet.dst,
                                packet.dport))

    def create(self, packet: Packet, now: float) -> Flow | None:
        """A new flow for ``packet`` (None if every alias is taken)."""
        span = self.high - self.low + 1
        for _ in range(span):
            alias = self._next
            self._next = self.low if alias >= self.high else alias + 1
            if (packet.proto, alias) not in self.by_alias:
                break
        else:
            return None
        flow = Flow(packet.proto, packet.src, packet.sport, packet.dst, packet.dport, alias, now)
        self.by_key[(packet.proto, packet.src, packet.sport, packet.dst, packet.dport)] = flow
        self.by_alias[(packet.proto, alias)] = flow
        return flow

    def remove(self, flow: Flow) -> None:
        self.by_key.pop((flow.proto, flow.guest_ip, flow.guest_port, flow.dest_ip,
                         flow.dest_port), None)
        if self.by_alias.get((flow.proto, flow.alias)) is flow:
            del self.by_alias[(flow.proto, flow.alias)]

    def flows(self) -> list[Flow]:
        return list(self.by_key.values())


def to_gateway(data: bytearray, packet: Packet, flow: Flow, gateway_ip: bytes, *,
               partial: bool) -> None:
    """Guest -> gateway: ``G:gport -> D:dport`` becomes ``G:alias -> gateway:RELAY_PORT``."""
    rewrite(data, packet, src=packet.src, dst=gateway_ip, sport=flow.alias, dport=RELAY_PORT,
            partial=partial)


def to_guest(data: bytearray, packet: Packet, flow: Flow, *, partial: bool) -> None:
    """Gateway -> guest: ``gateway:RELAY_PORT -> G:alias`` becomes ``D:dport -> G:gport``."""
    rewrite(data, packet, src=flow.dest_ip, dst=packet.dst, sport=flow.dest_port,
            dport=flow.guest_port, partial=partial)
