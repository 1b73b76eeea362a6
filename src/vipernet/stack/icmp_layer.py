"""ICMP: answering pings, sending errors (rate limited), and routing errors to sockets.

* Echo request -> echo reply, built straight from the request (this is the path
  ``benchmarks/ping_rtt.py`` measures, so it does no more than parse, check and rebuild).
  Pings to a broadcast address are ignored, as Linux's ``icmp_echo_ignore_broadcasts``.
* Echo reply -> the ping socket owning its identifier (:mod:`vipernet.stack.ping`).
* Destination unreachable / time exceeded -> an :class:`IcmpErrorEvent` for the socket
  that sent the quoted packet: UDP and ping sockets here, everything else (TCP) through
  ``Stack.icmp_error_listeners``.  A failed ARP resolution produces the same event locally
  (Linux does the same: a neighbour failure becomes a local "host unreachable").
* Errors we send (port / protocol unreachable, reassembly time exceeded) pass a token
  bucket and are never sent about broadcasts, ICMP errors or non-first fragments
  (RFC 1122 3.2.2).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from vipernet.link.frame import Offload
from vipernet.stack.rate_limit import TokenBucket
from vipernet.wire.errors import WireError
from vipernet.wire.icmp import (
    IcmpEcho,
    IcmpError,
    IcmpType,
    TimeExceededCode,
    UnreachableCode,
    build_icmp,
    parse_icmp,
)
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4_header, parse_quoted_ipv4
from vipernet.wire.ipv4_options import echo_options

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters

# RFC 1812 4.3.2.3: quote as much as fits in a 576-byte datagram.
_MAX_QUOTE = 576 - 20 - 8
_SENT_COUNTER = {IcmpType.DEST_UNREACHABLE: "icmp.tx.dest_unreachable",
                 IcmpType.TIME_EXCEEDED: "icmp.tx.time_exceeded",
                 IcmpType.PARAMETER_PROBLEM: "icmp.tx.parameter_problem"}


def _nonstandard_timestamp(now: float) -> int:
    """A Timestamp option's value.  The stack reads no wall clock (``now`` is monotonic),
    so it cannot give milliseconds since midnight UT; RFC 791 allows any time then, with
    the high-order bit set to say it is non-standard."""
    return (int(now * 1000) & 0x7FFFFFFF) | 0x80000000

# Destination-unreachable code -> (errno, hard error?) as Linux's icmp_err_convert table.
_UNREACH_ERRNO: dict[int, tuple[int, bool]] = {
    0: (errno.ENETUNREACH, True),
    1: (errno.EHOSTUNREACH, True),
    2: (errno.ENOPROTOOPT, True),
    3: (errno.ECONNREFUSED, True),
    4: (errno.EMSGSIZE, False),
    5: (errno.EOPNOTSUPP, False),
    6: (errno.ENETUNREACH, True),
    7: (errno.EHOSTDOWN, True),
    8: (errno.ENONET, True),
    9: (errno.ENETUNREACH, True),
    10: (errno.EHOSTUNREACH, True),
    11: (errno.ENETUNREACH, True),
    12: (errno.EHOSTUNREACH, True),
    13: (errno.EHOSTUNREACH, True),
    14: (errno.EHOSTUNREACH, True),
    15: (errno.EHOSTUNREACH, True),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpErrorEvent:
    """An ICMP error about a packet we sent, ready for the socket that sent it.

    ``quoted`` is the header of our original packet and ``quoted_payload`` the start of
    its transport header (ports, TCP sequence number).  ``hard`` follows Linux: a hard
    error aborts a connecting TCP socket and is reported on a connected UDP socket; a
    soft one (fragmentation needed, TTL exceeded) is only remembered.
    """

    type: int
    code: int
    errno: int
    hard: bool
    reporter: IPv4Address  # who sent the error (our own address for local failures)
    quoted: IPv4Header
    quoted_payload: bytes
    next_hop_mtu: int = 0
    local: bool = False  # synthesised by this stack (ARP failure), not received


def error_errno(icmp_type: int, code: int) -> tuple[int, bool]:
    """The errno and hardness an ICMP error maps to."""
    if icmp_type == IcmpType.DEST_UNREACHABLE:
        return _UNREACH_ERRNO.get(code, (errno.EHOSTUNREACH, True))
    return errno.EHOSTUNREACH, False  # time exceeded: soft, as Linux


class IcmpErrorSink(Protocol):
    """A transport that hears of the ICMP errors about the packets it sent."""

    def on_icmp_error(self, event: IcmpErrorEvent) -> None: ...


class EchoReplySink(IcmpErrorSink, Protocol):
    """The ping sockets: echo replies, and the errors about echo requests."""

    def deliver_reply(self, ip_header: IPv4Header, echo: IcmpEcho, now: float) -> None: ...


class IcmpHost(Protocol):
    """What the ICMP layer needs from its stack.  UDP and ping sit above this module (they
    import :class:`IcmpErrorEvent`), so they appear here as the callbacks ICMP makes."""

    config: StackConfig
    counters: Counters
    icmp_error_listeners: list[Callable[[IcmpErrorEvent, float], None]]

    @property
    def udp(self) -> IcmpErrorSink: ...
    @property
    def pings(self) -> EchoReplySink: ...

    def send_ip(self, dst: IPv4Address, proto: IpProto | int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"") -> None: ...


class IcmpLayer:
    """The ICMP protocol handler registered with the IP layer."""

    __slots__ = ("_bucket", "_stack")

    def __init__(self, stack: IcmpHost, now: float) -> None:
        self._stack = stack
        self._bucket = TokenBucket(stack.config.icmp_error_rate, stack.config.icmp_error_burst,
                                   now)

    # -- receive ---------------------------------------------------------------------

    def receive(self, ip_header: IPv4Header, payload: memoryview, offload: Offload | None,
                now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        try:
            message = parse_icmp(payload, verify_checksum=not trusted)
        except WireError as exc:
            count(f"icmp.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        if isinstance(message, IcmpEcho):
            if message.type == IcmpType.ECHO_REQUEST:
                self._answer_echo(ip_header, message, now)
            else:
                count("icmp.rx.echo_reply")
                stack.pings.deliver_reply(ip_header, message, now)
        elif isinstance(message, IcmpError):
            self._receive_error(ip_header, message, now)
        else:
            count("icmp.rx.other")

    def _answer_echo(self, ip_header: IPv4Header, echo: IcmpEcho, now: float) -> None:
        stack = self._stack
        if ip_header.dst != stack.config.ip.ip:
            stack.counters.inc("icmp.rx.echo_broadcast_ignored")
            return
        stack.counters.inc("icmp.rx.echo_request")
        reply = build_icmp(IcmpEcho(type=IcmpType.ECHO_REPLY, code=0, ident=echo.ident,
                                    seq=echo.seq, payload=echo.payload))
        options = b""
        if ip_header.options:
            # RFC 1122 3.2.2.6: Record Route and Timestamp come back updated with us.
            options = echo_options(ip_header.options, stack.config.ip.ip.packed,
                                   _nonstandard_timestamp(now))
            if options:
                stack.counters.inc("icmp.tx.echo_reply_with_options")
        try:
            stack.send_ip(ip_header.src, IpProto.ICMP, reply, now=now, tos=ip_header.tos,
                          options=options)
        except OSError:
            stack.counters.inc("icmp.tx.echo_reply_unroutable")
            return
        stack.counters.inc("icmp.tx.echo_reply")

    def _receive_error(self, ip_header: IPv4Header, message: IcmpError, now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        try:
            quoted, quoted_payload = message.quoted_ipv4()
        except WireError:
            count("icmp.rx.bad_quote")
            return
        if quoted.src != stack.config.ip.ip:
            count("icmp.rx.error_not_ours")
            return
        if quoted.fragment_offset != 0:
            count("icmp.rx.error_about_fragment")
            return  # no transport header in the quote
        err, hard = error_errno(message.type, message.code)
        count("icmp.rx.dest_unreachable" if message.type == IcmpType.DEST_UNREACHABLE
              else "icmp.rx.time_exceeded")
        self.deliver_error(IcmpErrorEvent(
            type=int(message.type), code=message.code, errno=err, hard=hard,
            reporter=ip_header.src, quoted=quoted, quoted_payload=bytes(quoted_payload),
            next_hop_mtu=message.next_hop_mtu), now)

    def deliver_error(self, event: IcmpErrorEvent, now: float) -> None:
        """Hand an error to the socket layer owning the quoted protocol and to listeners."""
        stack = self._stack
        proto = event.quoted.proto
        if proto == IpProto.UDP:
            stack.udp.on_icmp_error(event)
        elif proto == IpProto.ICMP:
            stack.pings.on_icmp_error(event)
        for listener in stack.icmp_error_listeners:
            listener(event, now)

    def host_unreachable(self, packet: bytes, now: float) -> None:
        """A packet we could not resolve a next hop for: report EHOSTUNREACH locally."""
        stack = self._stack
        try:
            header, payload = parse_quoted_ipv4(packet)
        except WireError:
            return
        if header.fragment_offset != 0:
            return
        self.deliver_error(IcmpErrorEvent(
            type=int(IcmpType.DEST_UNREACHABLE), code=int(UnreachableCode.HOST),
            errno=errno.EHOSTUNREACH, hard=True, reporter=stack.config.ip.ip,
            quoted=header, quoted_payload=bytes(payload[:8]), local=True), now)

    # -- send errors -------------------------------------------------------------------

    def send_unreachable(self, ip_header: IPv4Header, payload: bytes | memoryview,
                         code: UnreachableCode, now: float) -> None:
        self._send_error(IcmpType.DEST_UNREACHABLE, int(code), ip_header, payload, now)

    def send_parameter_problem(self, ip_header: IPv4Header, payload: bytes | memoryview,
                               pointer: int, now: float) -> None:
        """Type 12 code 0 (RFC 792): ``pointer`` names the offending octet of the header."""
        self._send_error(IcmpType.PARAMETER_PROBLEM, 0, ip_header, payload, now,
                         pointer=pointer)

    def send_reassembly_timeout(self, ip_header: IPv4Header, head: bytes, now: float) -> None:
        self._send_error(IcmpType.TIME_EXCEEDED, int(TimeExceededCode.REASSEMBLY),
                         ip_header, head, now)

    def _send_error(self, icmp_type: IcmpType, code: int, ip_header: IPv4Header,
                    payload: bytes | memoryview, now: float, *, pointer: int = 0) -> None:
        stack = self._stack
        count = stack.counters.inc
        our = stack.config.ip
        if ip_header.dst != our.ip or ip_header.fragment_offset != 0:
            count("icmp.tx.error_suppressed")  # broadcast or a non-first fragment
            return
        src = ip_header.src
        if src.is_unspecified or src.is_multicast or src == our.network.broadcast_address \
                or src == IPv4Address("255.255.255.255"):
            count("icmp.tx.error_suppressed")
            return
        if ip_header.proto == IpProto.ICMP and len(payload) >= 1 and payload[0] not in (
                IcmpType.ECHO_REQUEST, IcmpType.ECHO_REPLY):
            count("icmp.tx.error_suppressed")  # never an error about an error
            return
        if not self._bucket.take(now):
            count("icmp.tx.rate_limited")
            return
        original_length = len(payload)
        quote = build_ipv4_header(ip_header, original_length) + bytes(
            payload[:_MAX_QUOTE - ip_header.header_length])
        message = build_icmp(IcmpError(type=icmp_type, code=code, quoted=quote,
                                       pointer=pointer))
        try:
            stack.send_ip(src, IpProto.ICMP, message, now=now)
        except OSError:
            count("icmp.tx.error_unroutable")
            return
        count(_SENT_COUNTER.get(icmp_type, "icmp.tx.time_exceeded"))

