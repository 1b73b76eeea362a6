"""IPv6 (RFC 8200): validation, extension headers, reassembly, local delivery, sending.

Receive (:meth:`Ipv6Layer.receive`): the fixed header is parsed by
:func:`vipernet.wire.parse_ipv6`; a packet is ours when its destination is one of our
usable addresses or a multicast group we listen to (all-nodes, the solicited-node groups
of our addresses, what sockets joined).  A packet to an address still under DAD is only
let through when it is ICMPv6 (RFC 4862 5.4: the Neighbor Solicitations and
Advertisements that decide DAD).  The extension-header chain is walked by
:func:`vipernet.wire.walk_extension_headers`, whose verdict may be an ICMPv6 Parameter
Problem; a fragment goes to the shared :class:`FragmentTrains` under
(source, destination, identification) — any overlap drops the train (RFC 5722), an atomic
fragment is processed on its own (RFC 6946) — and a reassembled packet is walked again
(a Fragment header inside it drops it).  A train that times out after its first fragment
came earns the sender an ICMPv6 Time Exceeded, code 1.  The upper layer is dispatched by
Next Header; one with no handler earns a Parameter Problem code 1 pointing at the octet
that named it (RFC 8200 4).  Everything is counted under ``ipv6.rx.*``.

Send (:meth:`Ipv6Layer.send`): the source is chosen by the address configuration
(RFC 6724, reduced to scope and state), the next hop by on-link prefixes and the default
router list (no router and off-link: ENETUNREACH, RFC 4943), its MAC by the neighbour cache
(a packet waits there while the neighbour is resolved); multicast goes straight to its
33:33:xx MAC (RFC 2464 7).  A packet larger than the path MTU is fragmented at the source
(RFC 8200 4.5) unless its upper layer asked for an offload (TCP sizes its own segments);
the path MTU per destination comes from Packet Too Big messages (RFC 8201), never below
1280, and expires after 10 minutes.  Packets to our own addresses loop back through the
receive path on the next ``transmit()``/``poll()``.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Protocol

from vipernet.link.frame import Offload
from vipernet.stack.fragment_trains import FragmentTrains
from vipernet.stack.sockets_common import os_error
from vipernet.wire.errors import WireError
from vipernet.wire.icmpv6 import Icmpv6ParamProblemCode, Icmpv6TimeExceededCode, Icmpv6Type
from vipernet.wire.ipv6 import (
    HEADER_LENGTH,
    MIN_MTU,
    IPv6Header,
    NextHeader,
    multicast_mac,
    parse_ipv6,
)
from vipernet.wire.ipv6_ext import ChainVerdict, build_fragment_header, walk_extension_headers

if TYPE_CHECKING:
    import random

    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.icmpv6_layer import Icmpv6Layer
    from vipernet.stack.ndp_layer import NdLayer

log = logging.getLogger(__name__)

ETH_HEADER = 14
PMTU_LIFETIME = 600.0  # RFC 8201 4: "SHOULD be set to 10 minutes"
MAX_PMTU_ENTRIES = 1024
_FIXED = struct.Struct("!IHBB16s16s")
_LOCAL_OFFLOAD = Offload(data_valid=True)
_V6_TAG = 1 << 128  # TCP's tag for an IPv6 address as an int (vipernet.stack.tcp.addresses)


class Ipv6ProtocolHandler(Protocol):
    """What the IPv6 layer hands upper-layer payloads to (ICMPv6, UDP and TCP's
    ``receive6``): a callable, so a layer serving IPv4 and IPv6 needs no adapter."""

    def __call__(self, ip_header: IPv6Header, payload: memoryview, offload: Offload | None,
                 now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class _FirstFragment:
    """What reassembly keeps from the offset-0 fragment (RFC 8200 4.5)."""

    header: IPv6Header
    unfragmentable: bytes  # extension headers before the Fragment header
    next_header_field: int  # from the IPv6 start: the octet that named the Fragment header
    next_header: int  # the Fragment header's Next Header
    packet: bytes  # the first fragment itself, cut for an ICMPv6 quote


class Ipv6Host(Protocol):
    """What the IPv6 layer needs from its stack."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    nd: NdLayer
    icmp6: Icmpv6Layer

    def _emit_ipv6(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None: ...
    def ipv6_control_changed(self) -> None: ...


class Ipv6Layer:
    """IPv6 in both directions; owns the upper-layer handlers, reassembly and path MTUs."""

    __slots__ = ("_ident", "_loopback", "_pmtu", "_stack", "current_packet", "handlers",
                 "tcp_fast", "trains")

    def __init__(self, stack: Ipv6Host) -> None:
        self._stack = stack
        self.handlers: dict[int, Ipv6ProtocolHandler] = {}
        self.trains: FragmentTrains[_FirstFragment] = FragmentTrains(
            stack.config, stack.counters, prefix="ipv6.reasm", max_payload=0xFFFF)
        self._ident = stack.rng.getrandbits(32)
        self._pmtu: dict[IPv6Address, tuple[int, float]] = {}
        self._loopback: deque[bytes] = deque()
        # The packet being delivered (from its IPv6 header), for an upper layer that owes
        # an ICMPv6 error quoting it (a UDP port unreachable).
        self.current_packet: memoryview = memoryview(b"")
        # TCP's receive_segment6(src, dst, payload, offload, now), addresses tagged ints.
        self.tcp_fast: Callable[[int, int, memoryview, Offload | None, float], None] | None
        self.tcp_fast = None

    # -- receive ------------------------------------------------------------------------

    def receive(self, data: memoryview, offload: Offload | None, now: float) -> None:
        stack = self._stack
        # The TCP fast path (as IPv4's): a packet with no extension header, TCP straight
        # after the fixed header, from a unicast source that is not ours to one of our
        # usable unicast addresses, goes to TCP by tagged integer addresses -- no header
        # object, no extension walk.  Anything else takes the general path, which does
        # all the drop counting, so the two cannot disagree on what is accepted.
        if (len(data) >= 60 and data[6] == 6 and data[0] >> 4 == 6 and data[8] != 0xFF
                and data[24] != 0xFF and self.tcp_fast is not None):
            length = (data[4] << 8) | data[5]
            src_i = int.from_bytes(data[8:24], "big")
            dst_i = int.from_bytes(data[24:40], "big")
            usable = stack.nd.addrconf.usable_ints()
            if (20 <= length <= len(data) - HEADER_LENGTH and dst_i in usable
                    and src_i not in usable):
                stack.counters.inc("ipv6.rx.delivered")
                self.tcp_fast(_V6_TAG | src_i, _V6_TAG | dst_i,
                              data[HEADER_LENGTH:HEADER_LENGTH + length], offload, now)
                return
        stack.ipv6_control_changed()  # NDP, MLD, fragments...: timers may move
        count = stack.counters.inc
        try:
            header, payload = parse_ipv6(data)
        except WireError as exc:
            count(f"ipv6.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        nd = stack.nd
        dst = header.dst
        if dst.is_multicast:
            if not nd.listening(dst):
                count("ipv6.rx.not_for_us")
                return
        elif not nd.is_local(dst) and not (
                nd.is_tentative(dst) and header.next_header == NextHeader.ICMPV6):
            count("ipv6.rx.not_for_us")
            return
        src = header.src
        if src.is_multicast or (nd.is_local(src) and not src.is_unspecified):
            # A group never sends; our own address coming back is a loop or a spoof.  (Our
            # DAD probes come from ::, so they are not dropped here.)
            count("ipv6.rx.martian_source")
            return
        packet = data[:HEADER_LENGTH + header.payload_length]
        self._walk(header, payload, packet, offload, now, reassembled=False)

    def _walk(self, header: IPv6Header, payload: memoryview, packet: memoryview,
              offload: Offload | None, now: float, *, reassembled: bool) -> None:
        stack = self._stack
        count = stack.counters.inc
        try:
            chain = walk_extension_headers(header, payload)
        except WireError as exc:
            count(f"ipv6.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        if chain.verdict is ChainVerdict.DROP:
            count("ipv6.rx.ext_drop")
            log.debug("drop: %s", chain.reason)
            return
        if chain.verdict is ChainVerdict.PARAMETER_PROBLEM:
            count("ipv6.rx.parameter_problem")
            log.debug("drop: %s", chain.reason)
            stack.icmp6.send_error(Icmpv6Type.PARAMETER_PROBLEM, chain.icmp_code, packet, now,
                                   pointer=chain.icmp_pointer)
            return
        fragment = chain.fragment
        if fragment is not None:
            if reassembled:
                count("ipv6.rx.nested_fragment")  # a fragment header inside a datagram
                return
            data_part = payload[fragment.data_offset:]
            if fragment.offset == 0 and not fragment.more:
                # An atomic fragment (RFC 6946): nothing to wait for, and it must not
                # join a train with real fragments of the same identification.
                count("ipv6.reasm.atomic")
                self._reassembled(header, payload[:fragment.header_offset],
                                  fragment.next_header_field, fragment.next_header,
                                  data_part, now)
                return
            count("ipv6.reasm.fragments")
            first = _FirstFragment(header, bytes(payload[:fragment.header_offset]),
                                   fragment.next_header_field, fragment.next_header,
                                   bytes(packet[:MIN_MTU]))
            done = self.trains.add((header.src, header.dst, fragment.ident), fragment.offset,
                                   fragment.more, data_part, first, now)
            if done is not None:
                f = done.first
                self._reassembled(f.header, memoryview(f.unfragmentable), f.next_header_field,
                                  f.next_header, memoryview(done.payload), now)
            return
        proto = chain.upper_protocol
        handler = self.handlers.get(proto)
        if handler is None:
            count("ipv6.rx.unknown_protocol")
            stack.icmp6.send_error(Icmpv6Type.PARAMETER_PROBLEM,
                                   Icmpv6ParamProblemCode.NEXT_HEADER, packet, now,
                                   pointer=chain.next_header_field)
            return
        count("ipv6.rx.delivered")
        self.current_packet = packet
        handler(header, payload[chain.upper_offset:], offload, now)

    def _reassembled(self, header: IPv6Header, unfragmentable: memoryview,
                     next_header_field: int, next_header: int, data: memoryview,
                     now: float) -> None:
        """Rebuild the original packet (the Fragment header gone, the octet that named it
        now naming what followed it) and walk it again."""
        body = bytearray(unfragmentable)
        body += data
        if len(body) > 0xFFFF:
            self._stack.counters.inc("ipv6.reasm.too_big")
            return
        if next_header_field == 6:  # the fixed header named the Fragment header
            first_next = next_header
        else:
            first_next = int(header.next_header)
            body[next_header_field - HEADER_LENGTH] = next_header
        fixed = _FIXED.pack(0x60000000 | header.traffic_class << 20 | header.flow_label,
                            len(body), first_next, header.hop_limit, header.src.packed,
                            header.dst.packed)
        packet = memoryview(fixed + body)
        whole, payload = parse_ipv6(packet)
        self._walk(whole, payload, packet, None, now, reassembled=True)

    # -- send -----------------------------------------------------------------------------

    def path_mtu(self, dst: IPv6Address, now: float) -> int:
        link = self._stack.nd.link_mtu
        entry = self._pmtu.get(dst)
        if entry is None:
            return link
        mtu, expires = entry
        if now >= expires:
            del self._pmtu[dst]
            return link
        return min(mtu, link)

    def packet_too_big(self, dst: IPv6Address, mtu: int, now: float) -> int:
        """A Packet Too Big about a packet we sent to ``dst`` (RFC 8201 4): lower its path
        MTU (never below 1280, never raised by a PTB); returns the new value."""
        current = self.path_mtu(dst, now)
        new = max(MIN_MTU, min(mtu, current))
        if new < current:
            if len(self._pmtu) >= MAX_PMTU_ENTRIES:
                self._pmtu.pop(next(iter(self._pmtu)))
            self._pmtu[dst] = (new, now + PMTU_LIFETIME)
            self._stack.counters.inc("ipv6.pmtu.lowered")
        return new

    def next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFFFFFF
        return self._ident

    def send(self, dst: IPv6Address, next_header: int, payload: bytes | memoryview,
             now: float, *, src: IPv6Address | None = None, hop_limit: int | None = None,
             offload_l4: Offload | None = None, hop_by_hop: bytes = b"",
             traffic_class: int = 0) -> None:
        """Send ``payload`` (an upper-layer message) to ``dst``.

        ``hop_by_hop`` is a Hop-by-Hop Options header to put first (MLD's Router Alert);
        the caller then passes the header's own Next Header inside it and
        ``next_header`` 0.  Raises ENETUNREACH (no route), EADDRNOTAVAIL (no source
        address of the right scope yet) or EMSGSIZE.
        """
        stack = self._stack
        nd = stack.nd
        if src is None:
            src = nd.source_for(dst)
            if src is None:
                raise os_error(errno.EADDRNOTAVAIL, f"no usable IPv6 source address for {dst}")
        hops = hop_limit if hop_limit is not None else nd.hop_limit
        first_next = 0 if hop_by_hop else next_header
        ext = hop_by_hop
        size = len(ext) + len(payload)
        if size > 0xFFFF:
            raise os_error(errno.EMSGSIZE, f"{size}-byte IPv6 payload > 65535")
        word = 0x60000000 | traffic_class << 20
        srcb, dstb = src.packed, dst.packed
        if nd.is_local(dst) or nd.is_tentative(dst):
            self._loopback.append(
                _FIXED.pack(word, size, first_next, hops, srcb, dstb) + ext + bytes(payload))
            stack.counters.inc("ipv6.tx.loopback")
            return
        mtu = self.path_mtu(dst, now)
        if offload_l4 is not None or HEADER_LENGTH + size <= mtu:
            offload = None
            if offload_l4 is not None:
                shift = ETH_HEADER + HEADER_LENGTH + len(ext)
                o = offload_l4
                offload = Offload(needs_csum=o.needs_csum, data_valid=o.data_valid,
                                  csum_start=o.csum_start + shift, csum_offset=o.csum_offset,
                                  gso_type=o.gso_type, gso_size=o.gso_size,
                                  hdr_len=o.hdr_len + shift)
            fixed = _FIXED.pack(word, size, first_next, hops, srcb, dstb)
            self._output(dst, fixed + ext, payload, offload, now)
        else:
            self._fragment(dst, word, first_next, hops, srcb, dstb, ext, next_header, payload,
                           mtu, now)
        stack.counters.inc("ipv6.tx.packets")

    def send_to_mac(self, mac: bytes, dst: IPv6Address, next_header: int, payload: bytes,
                    *, src: IPv6Address, hop_limit: int) -> None:
        """One small packet straight to a link-layer address (a NUD probe goes to the MAC
        being verified, whatever the neighbour cache would pick)."""
        fixed = _FIXED.pack(0x60000000, len(payload), next_header, hop_limit, src.packed,
                            dst.packed)
        self._stack._emit_ipv6(mac, fixed, payload, None)
        self._stack.counters.inc("ipv6.tx.packets")

    def _fragment(self, dst: IPv6Address, word: int, first_next: int, hops: int, srcb: bytes,
                  dstb: bytes, unfragmentable: bytes, next_header: int,
                  payload: bytes | memoryview, mtu: int, now: float) -> None:
        """RFC 8200 4.5: the unfragmentable part (our Hop-by-Hop header, if any) in every
        fragment, the rest cut in multiples of 8 bytes, one identification for all."""
        chunk = (mtu - HEADER_LENGTH - len(unfragmentable) - 8) // 8 * 8
        ident = self.next_ident()
        view = memoryview(payload)
        total = len(view)
        if unfragmentable:
            # The Hop-by-Hop header now names the Fragment header; the fixed one names it.
            unfragmentable = bytes((44,)) + unfragmentable[1:]
            inner_next = next_header
        else:
            first_next, inner_next = 44, next_header
        for offset in range(0, total, chunk):
            part = view[offset:offset + chunk]
            more = offset + chunk < total
            frag = build_fragment_header(inner_next, offset, more, ident)
            size = len(unfragmentable) + 8 + len(part)
            fixed = _FIXED.pack(word, size, first_next, hops, srcb, dstb)
            self._output(dst, fixed + unfragmentable + frag, part, None, now)
            self._stack.counters.inc("ipv6.tx.fragments")

    def _output(self, dst: IPv6Address, header: bytes, payload: bytes | memoryview,
                offload: Offload | None, now: float) -> None:
        stack = self._stack
        nd = stack.nd
        if dst.is_multicast:
            stack._emit_ipv6(multicast_mac(dst), header, payload, offload)
            return
        next_hop = nd.next_hop(dst, now)
        mac = nd.neighbors.lookup_for_send(next_hop, now)
        if mac is not None:
            stack._emit_ipv6(mac, header, payload, offload)
        else:
            nd.hold(next_hop, (header + bytes(payload), offload), now)

    # -- timers and loopback -------------------------------------------------------------

    def poll(self, now: float) -> None:
        for expired in self.trains.poll(now):
            first = expired.first
            if first is not None:
                self._stack.icmp6.send_error(Icmpv6Type.TIME_EXCEEDED,
                                             Icmpv6TimeExceededCode.REASSEMBLY,
                                             memoryview(first.packet), now)

    def next_deadline(self) -> float | None:
        return self.trains.next_deadline()

    @property
    def has_loopback(self) -> bool:
        return bool(self._loopback)

    def run_loopback(self, now: float) -> None:
        self._stack.ipv6_control_changed()  # our own NDP/MLD may be among them
        for _ in range(len(self._loopback)):
            packet = memoryview(self._loopback.popleft())
            header, payload = parse_ipv6(packet)
            self._walk(header, payload, packet, _LOCAL_OFFLOAD, now, reassembled=False)
