"""ICMPv6 echo for the ping command: the IPv6 twin of :mod:`vipernet.stack.ping`.

A :class:`Ping6Socket` owns an echo identifier, unique among IPv6 ping sockets; it sends
Echo Requests (RFC 4443 4.1) and hands back the matching replies with their arrival time
and hop limit.  An ICMPv6 error about one of its requests (address unreachable after
neighbour resolution failed, time exceeded) becomes its pending error.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.stack.icmpv6_layer import Icmpv6ErrorEvent
from vipernet.stack.ping import EchoHost, EchoReplies
from vipernet.stack.ports import PortAllocator
from vipernet.stack.sockets_common import os_error
from vipernet.wire.icmpv6 import PROTO_ICMPV6, Icmpv6Echo, Icmpv6Type, build_echo_request
from vipernet.wire.ipv6 import IPv6Header

if TYPE_CHECKING:
    import random

    from vipernet.stack.ndp_layer import NdLayer

MAX_ECHO_PAYLOAD = 65535 - 8


class Ping6Host(EchoHost, Protocol):
    """What IPv6 ping needs from its stack."""

    rng: random.Random
    ipv6: Any  # the IPv6 layer; None while IPv6 is off
    nd: NdLayer


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping6Reply:
    src: IPv6Address
    ident: int
    seq: int
    payload: bytes
    ttl: int  # the reply's hop limit
    received_at: float


class Ping6Layer:
    """IPv6 ping sockets by identifier."""

    __slots__ = ("_allocator", "_by_ident", "_stack")

    def __init__(self, stack: Ping6Host) -> None:
        self._stack = stack
        self._by_ident: dict[int, Ping6Socket] = {}
        self._allocator = PortAllocator(stack.rng, 1, 0xFFFF)

    def open_socket(self) -> Ping6Socket:
        sock = Ping6Socket(self._stack, self, self._allocator.allocate(self._by_ident))
        self._by_ident[sock.ident] = sock
        return sock

    def _unbind(self, ident: int) -> None:
        self._by_ident.pop(ident, None)

    def deliver_reply(self, ip_header: IPv6Header, echo: Icmpv6Echo, now: float) -> None:
        sock = self._by_ident.get(echo.ident)
        if sock is None:
            self._stack.counters.inc("icmp6.rx.echo_reply_no_socket")
            return
        sock._deliver(Ping6Reply(src=ip_header.src, ident=echo.ident, seq=echo.seq,
                                 payload=echo.payload, ttl=ip_header.hop_limit,
                                 received_at=now))

    def on_icmp_error(self, event: Icmpv6ErrorEvent) -> None:
        quote = event.quoted_payload
        if len(quote) < 8 or quote[0] != Icmpv6Type.ECHO_REQUEST:
            return
        sock = self._by_ident.get(int.from_bytes(quote[4:6], "big"))
        if sock is not None:
            sock._set_error(event.errno)


class Ping6Socket(EchoReplies):
    """An ICMPv6 echo endpoint; see the module docstring."""

    _queue_full_counter = "icmp6.rx.ping_queue_full"
    _stack: Ping6Host  # an IPv6 ping socket sends through the stack too

    def __init__(self, stack: Ping6Host, layer: Ping6Layer, ident: int) -> None:
        super().__init__(stack)
        self._layer = layer
        self.ident = ident

    def send_echo(self, dst: IPv6Address | str, seq: int, payload: bytes, now: float) -> None:
        """Send one Echo Request with our identifier (fragmented if it must be)."""
        self._check_open()
        dst = IPv6Address(dst) if isinstance(dst, str) else dst
        if len(payload) > MAX_ECHO_PAYLOAD:
            raise os_error(errno.EMSGSIZE)
        ipv6 = self._stack.ipv6
        if ipv6 is None:
            raise os_error(errno.EAFNOSUPPORT, "IPv6 is off on this stack")
        src = self._stack.nd.source_for(dst)
        if src is None:
            raise os_error(errno.EADDRNOTAVAIL, f"no usable IPv6 source address for {dst}")
        message = build_echo_request(self.ident, seq & 0xFFFF, payload, src, dst)
        ipv6.send(dst, PROTO_ICMPV6, message, now, src=src)
        self._stack.counters.inc("icmp6.tx.echo_request")

    def recv_reply(self) -> Ping6Reply:
        reply: Ping6Reply = super().recv_reply()
        return reply

    def getsockname(self) -> tuple[str, int]:
        return ("::", self.ident)

    def getpeername(self) -> tuple[str, int]:
        raise os_error(errno.ENOTCONN)

    def close(self, now: float) -> None:
        if self._closed:
            return
        self._closed = True
        self._layer._unbind(self.ident)
        self._replies.clear()
        self._stack.mark_changed(self)
