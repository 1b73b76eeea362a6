"""ICMPv6 (RFC 4443): echo, errors both ways; NDP and MLD messages handed on.

Receive: the checksum is verified over the pseudo-header (a bad one is a counted drop);
an Echo Request is answered (also one sent to a group we listen to, as Linux does, from
our unicast address of the right scope); an Echo Reply goes to the ping sockets; an error
about a packet we sent becomes an :class:`Icmpv6ErrorEvent` for the sockets (a Packet
Too Big first lowers the destination's path MTU, RFC 8201); Neighbor Discovery (133-137)
goes to :mod:`vipernet.stack.ndp_layer` once RFC 4861's hop limit 255 / code 0 checks
passed (a message that crossed a router is forged), MLD queries to the MLD part of it.

Send (:meth:`Icmpv6Layer.send_error`): RFC 4443 2.4 (e): never about an ICMPv6 error or a
Redirect, never to a packet whose source is unspecified or multicast, and for a packet sent
to a group only Packet Too Big and Parameter Problem code 2 (an option whose type asks for
it); (f): a token bucket limits the rate (``icmp_error_rate``/``icmp_error_burst``, the
same knobs as ICMPv4's).  The quote is as much of the packet as fits in 1280 bytes.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.link.frame import Offload
from vipernet.stack.rate_limit import TokenBucket
from vipernet.wire.errors import WireError
from vipernet.wire.icmpv6 import (
    PROTO_ICMPV6,
    Icmpv6Echo,
    Icmpv6Error,
    Icmpv6ParamProblemCode,
    Icmpv6Type,
    build_echo_reply,
    build_icmpv6_error,
    parse_icmpv6,
)
from vipernet.wire.ipv6 import IPv6Header, NextHeader, parse_quoted_ipv6
from vipernet.wire.ipv6_ext import walk_extension_headers
from vipernet.wire.ndp import NDP_HOP_LIMIT

if TYPE_CHECKING:
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters

log = logging.getLogger(__name__)

_ND_TYPES = frozenset(range(133, 138))
_MLD_TYPES = frozenset((130, 131, 132, 143))

# Destination-unreachable code -> errno, as Linux's icmpv6_err_convert (all hard errors).
_UNREACH_ERRNO = {0: errno.ENETUNREACH, 1: errno.EACCES, 2: errno.EHOSTUNREACH,
                  3: errno.EHOSTUNREACH, 4: errno.ECONNREFUSED, 5: errno.EACCES,
                  6: errno.EACCES}


def error_errno(icmp_type: int, code: int) -> tuple[int, bool]:
    """The errno and hardness an ICMPv6 error maps to (Linux's table)."""
    if icmp_type == Icmpv6Type.DEST_UNREACHABLE:
        return _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH), True
    if icmp_type == Icmpv6Type.PACKET_TOO_BIG:
        return errno.EMSGSIZE, False
    if icmp_type == Icmpv6Type.PARAMETER_PROBLEM:
        return errno.EPROTO, True
    return errno.EHOSTUNREACH, False  # time exceeded: soft


@dataclass(frozen=True, slots=True, kw_only=True)
class Icmpv6ErrorEvent:
    """An ICMPv6 error about a packet we sent, ready for the socket that sent it.

    ``quoted`` is our original packet's header, ``upper_protocol`` and ``quoted_payload``
    what its extension headers led to (ports, TCP sequence number).
    """

    type: int
    code: int
    errno: int
    hard: bool
    reporter: IPv6Address
    quoted: IPv6Header
    upper_protocol: int
    quoted_payload: bytes
    mtu: int = 0
    local: bool = False  # synthesised here (neighbour resolution failed), not received


class NeighborDiscovery(Protocol):
    """The ND layer as ICMPv6 sees it (``ndp_layer`` sits above: it sends through ICMPv6)."""

    def is_local(self, addr: IPv6Address) -> bool: ...
    def source_for(self, dst: IPv6Address) -> IPv6Address | None: ...
    def receive_icmpv6(self, header: IPv6Header, kind: int, payload: memoryview,
                       now: float) -> None: ...


class Echo6ReplySink(Protocol):
    """The IPv6 ping sockets: echo replies, and the errors about echo requests."""

    def deliver_reply(self, ip_header: IPv6Header, echo: Icmpv6Echo, now: float) -> None: ...
    def on_icmp_error(self, event: Icmpv6ErrorEvent) -> None: ...


class Icmpv6Host(Protocol):
    """What ICMPv6 needs from its stack.  ND and IPv6 ping sit above this module, so they
    appear here as the calls ICMPv6 makes."""

    config: StackConfig
    counters: Counters
    ipv6: Any  # the IPv6 layer
    icmp6_error_listeners: list[Callable[[Any, float], None]]  # (Icmpv6ErrorEvent, now)

    @property
    def nd(self) -> NeighborDiscovery: ...
    @property
    def pings6(self) -> Echo6ReplySink: ...


class Icmpv6Layer:
    """The ICMPv6 handler registered with the IPv6 layer."""

    __slots__ = ("_bucket", "_stack")

    def __init__(self, stack: Icmpv6Host, now: float) -> None:
        self._stack = stack
        self._bucket = TokenBucket(stack.config.icmp_error_rate, stack.config.icmp_error_burst,
                                   now)

    # -- receive -----------------------------------------------------------------------

    def receive(self, ip_header: IPv6Header, payload: memoryview, offload: Offload | None,
                now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        trusted = offload is not None and offload.data_valid
        try:
            message = parse_icmpv6(payload, ip_header.src, ip_header.dst,
                                   verify_checksum=not trusted)
        except WireError as exc:
            count(f"icmp6.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        kind = int(payload[0])
        if kind in _ND_TYPES or kind in _MLD_TYPES:
            if kind in _ND_TYPES and (ip_header.hop_limit != NDP_HOP_LIMIT or payload[1]):
                count("icmp6.rx.nd_not_link_local")  # RFC 4861 6.1/7.1: forged or routed
                return
            stack.nd.receive_icmpv6(ip_header, kind, payload, now)
            return
        dst = ip_header.dst
        if not stack.nd.is_local(dst) and not dst.is_multicast:
            count("icmp6.rx.to_tentative")  # only ND may reach an address under DAD
            return
        if isinstance(message, Icmpv6Echo):
            if message.type == Icmpv6Type.ECHO_REQUEST:
                count("icmp6.rx.echo_request")
                self._answer_echo(ip_header, message, now)
            else:
                count("icmp6.rx.echo_reply")
                stack.pings6.deliver_reply(ip_header, message, now)
        elif isinstance(message, Icmpv6Error):
            self._receive_error(ip_header, message, now)
        else:
            count("icmp6.rx.unknown_type")

    def _answer_echo(self, ip_header: IPv6Header, echo: Icmpv6Echo, now: float) -> None:
        stack = self._stack
        src = ip_header.src
        if src.is_unspecified:
            stack.counters.inc("icmp6.rx.echo_from_unspecified")
            return
        dst = ip_header.dst
        ours = None if dst.is_multicast else dst
        if ours is None:
            ours = stack.nd.source_for(src)
            if ours is None:
                return
        reply = build_echo_reply(echo.ident, echo.seq, echo.payload, ours, src)
        try:
            stack.ipv6.send(src, PROTO_ICMPV6, reply, now, src=ours,
                            traffic_class=ip_header.traffic_class)
        except OSError:
            stack.counters.inc("icmp6.tx.unroutable")
            return
        stack.counters.inc("icmp6.tx.echo_reply")

    def _receive_error(self, ip_header: IPv6Header, message: Icmpv6Error, now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        try:
            quoted, quoted_payload = parse_quoted_ipv6(message.quoted)
        except WireError:
            count("icmp6.rx.bad_quote")
            return
        if not stack.nd.is_local(quoted.src):
            count("icmp6.rx.error_not_ours")
            return
        if message.type == Icmpv6Type.PACKET_TOO_BIG:
            count("icmp6.rx.packet_too_big")
            stack.ipv6.packet_too_big(quoted.dst, message.mtu, now)
        else:
            count(f"icmp6.rx.error_{int(message.type)}")
        try:
            chain = walk_extension_headers(quoted, quoted_payload)
        except WireError:
            upper, upper_payload = int(quoted.next_header), bytes(quoted_payload)
        else:
            upper = chain.upper_protocol
            upper_payload = bytes(quoted_payload[chain.upper_offset:])
            if chain.fragment is not None and chain.fragment.offset:
                count("icmp6.rx.error_about_fragment")
                return  # no upper-layer header in the quote
        err, hard = error_errno(message.type, message.code)
        self.deliver_error(Icmpv6ErrorEvent(
            type=int(message.type), code=message.code, errno=err, hard=hard,
            reporter=ip_header.src, quoted=quoted, upper_protocol=upper,
            quoted_payload=upper_payload, mtu=message.mtu), now)

    def deliver_error(self, event: Icmpv6ErrorEvent, now: float) -> None:
        stack = self._stack
        if event.upper_protocol == NextHeader.ICMPV6:
            stack.pings6.on_icmp_error(event)
        for listener in stack.icmp6_error_listeners:
            listener(event, now)

    def address_unreachable(self, packet: bytes, now: float) -> None:
        """Neighbour resolution for a packet we sent failed: EHOSTUNREACH for its socket
        (RFC 4861 7.2.2's "address unreachable", delivered locally)."""
        try:
            header, payload = parse_quoted_ipv6(packet)
            chain = walk_extension_headers(header, payload)
        except WireError:
            return
        if chain.fragment is not None and chain.fragment.offset:
            return
        self.deliver_error(Icmpv6ErrorEvent(
            type=int(Icmpv6Type.DEST_UNREACHABLE), code=3, errno=errno.EHOSTUNREACH,
            hard=True, reporter=header.src, quoted=header, upper_protocol=chain.upper_protocol,
            quoted_payload=bytes(payload[chain.upper_offset:chain.upper_offset + 8]),
            local=True), now)

    # -- send errors ------------------------------------------------------------------

    def send_error(self, icmp_type: Icmpv6Type, code: int, packet: memoryview, now: float,
                   *, mtu: int = 0, pointer: int = 0) -> None:
        """An error about ``packet`` (from its IPv6 header) back to its source."""
        stack = self._stack
        count = stack.counters.inc
        try:
            header, payload = parse_quoted_ipv6(packet)
        except WireError:
            return
        src, dst = header.src, header.dst
        if src.is_unspecified or src.is_multicast:
            count("icmp6.tx.error_suppressed")
            return
        if dst.is_multicast and not (
                icmp_type == Icmpv6Type.PACKET_TOO_BIG
                or (icmp_type == Icmpv6Type.PARAMETER_PROBLEM
                    and code == Icmpv6ParamProblemCode.OPTION)):
            count("icmp6.tx.error_suppressed")
            return
        if self._about_error(header, payload):
            count("icmp6.tx.error_suppressed")  # never an error about an error
            return
        if not self._bucket.take(now):
            count("icmp6.tx.rate_limited")
            return
        ours = None if dst.is_multicast else dst
        if ours is None or not stack.nd.is_local(ours):
            ours = stack.nd.source_for(src)
        if ours is None:
            count("icmp6.tx.error_unroutable")
            return
        message = build_icmpv6_error(icmp_type, code, packet, ours, src, mtu=mtu,
                                     pointer=pointer)
        try:
            stack.ipv6.send(src, PROTO_ICMPV6, message, now, src=ours)
        except OSError:
            count("icmp6.tx.error_unroutable")
            return
        count(f"icmp6.tx.error_{int(icmp_type)}")

    @staticmethod
    def _about_error(header: IPv6Header, payload: memoryview) -> bool:
        """Whether the packet is an ICMPv6 error or Redirect (RFC 4443 2.4(e.1, e.2))."""
        try:
            chain = walk_extension_headers(header, payload)
        except WireError:
            return False
        if chain.upper_protocol != NextHeader.ICMPV6 or (chain.fragment is not None and (
                chain.fragment.offset)):
            return False
        if len(payload) <= chain.upper_offset:
            return False
        kind = payload[chain.upper_offset]
        return kind < 128 or kind == Icmpv6Type.REDIRECT
