"""Ping sockets: ICMP echo from programs, shaped like Linux's unprivileged ping sockets.

A :class:`PingSocket` owns an echo identifier (its "port": random, unique among ping
sockets; ``bind(("", ident))`` picks one).  It offers the :class:`StackSocket` calls
with Linux's semantics (``sendto`` takes an ICMP echo request header + payload and the
identifier and checksum are filled in; ``recvfrom`` returns the echo reply message) and,
for the ping command, :meth:`PingSocket.send_echo` / :meth:`PingSocket.recv_reply`,
which carry the reply's arrival time (the ``now`` the stack got the frame with) and TTL.
ICMP errors about our requests (host unreachable, TTL exceeded) become the socket's
pending error.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.stack.icmp_layer import IcmpErrorEvent
from vipernet.stack.ports import PortAllocator
from vipernet.stack.socket_api import Address, SocketKind, StackSocket
from vipernet.stack.sockets_common import (
    ANY,
    DatagramSocketStatus,
    format_address,
    os_error,
    parse_address,
)
from vipernet.wire.icmp import IcmpEcho, IcmpType, build_icmp
from vipernet.wire.ipv4 import IpProto, IPv4Header

if TYPE_CHECKING:
    import random

    from vipernet.link.frame import Offload
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters

_ECHO_HEADER = struct.Struct("!BBHHH")
MAX_QUEUED_REPLIES = 64


class EchoHost(Protocol):
    """What an echo socket of either IP version needs from its stack."""

    counters: Counters

    def mark_changed(self, sock: object) -> None: ...


class PingHost(EchoHost, Protocol):
    """What IPv4 ping needs from its stack."""

    config: StackConfig
    rng: random.Random

    def send_ip(self, dst: IPv4Address, proto: IpProto | int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"") -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReply:
    src: IPv4Address
    ident: int
    seq: int
    payload: bytes
    ttl: int
    received_at: float  # the stack's clock when the frame came in


class PingLayer:
    """Ping sockets by identifier."""

    __slots__ = ("_allocator", "_by_ident", "_stack")

    def __init__(self, stack: PingHost) -> None:
        self._stack = stack
        self._by_ident: dict[int, PingSocket] = {}
        self._allocator = PortAllocator(stack.rng, 1, 0xFFFF)

    def open_socket(self) -> PingSocket:
        return PingSocket(self._stack, self)

    def _bind(self, sock: PingSocket, ident: int) -> int:
        if ident == 0:
            ident = self._allocator.allocate(self._by_ident)
        elif ident in self._by_ident:
            raise os_error(errno.EADDRINUSE, f"ping identifier {ident} in use")
        self._by_ident[ident] = sock
        return ident

    def _unbind(self, ident: int) -> None:
        self._by_ident.pop(ident, None)

    def deliver_reply(self, ip_header: IPv4Header, echo: IcmpEcho, now: float) -> None:
        sock = self._by_ident.get(echo.ident)
        if sock is None:
            self._stack.counters.inc("icmp.rx.echo_reply_no_socket")
            return
        sock._deliver(PingReply(src=ip_header.src, ident=echo.ident, seq=echo.seq,
                                payload=echo.payload, ttl=ip_header.ttl, received_at=now))

    def on_icmp_error(self, event: IcmpErrorEvent) -> None:
        quote = event.quoted_payload
        if len(quote) < 8 or quote[0] != IcmpType.ECHO_REQUEST:
            return
        ident = int.from_bytes(quote[4:6], "big")
        sock = self._by_ident.get(ident)
        if sock is not None:
            sock._set_error(event.errno)


class EchoReplies(DatagramSocketStatus):
    """What an echo socket of either IP version shares: the queue of replies (bounded) and
    the pending error an ICMP error about one of its requests leaves."""

    _queue_full_counter = "icmp.rx.ping_queue_full"

    def __init__(self, stack: EchoHost) -> None:
        super().__init__()
        self._stack = stack
        self._replies: deque[Any] = deque()

    @property
    def readable(self) -> bool:
        return bool(self._replies) or self._error is not None or self._closed

    def recv_reply(self) -> Any:
        """The next echo reply; BlockingIOError if none; the pending error first."""
        if self._error is not None:
            err, self._error = self._error, None
            raise os_error(err)
        if not self._replies:
            if self._closed:
                raise os_error(errno.EBADF)
            raise BlockingIOError(errno.EAGAIN, "no echo reply yet")
        return self._replies.popleft()

    def _deliver(self, reply: object) -> None:
        if self._closed:
            return
        if len(self._replies) >= MAX_QUEUED_REPLIES:
            self._stack.counters.inc(self._queue_full_counter)
            return
        self._replies.append(reply)
        self._stack.mark_changed(self)

    def _set_error(self, err: int) -> None:
        if self._closed:
            return
        self._error = err
        self._stack.mark_changed(self)

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF)


class PingSocket(EchoReplies):
    """An ICMP echo endpoint (SocketKind.ICMP); see the module docstring."""

    kind = SocketKind.ICMP
    _stack: PingHost  # an IPv4 ping socket sends through the stack too

    def __init__(self, stack: PingHost, layer: PingLayer) -> None:
        super().__init__(stack)
        self._layer = layer
        self._ident = 0
        self._peer: IPv4Address | None = None

    @property
    def ident(self) -> int:
        """The echo identifier (bound on first use)."""
        if self._ident == 0:
            self._ident = self._layer._bind(self, 0)
        return self._ident

    # -- the StackSocket interface --------------------------------------------------------

    def bind(self, address: Address) -> None:
        self._check_open()
        ip, ident = parse_address(address)
        if ip not in (ANY, self._stack.config.ip.ip):
            raise os_error(errno.EADDRNOTAVAIL, str(ip))
        if self._ident:
            raise os_error(errno.EINVAL, "already bound")
        self._ident = self._layer._bind(self, ident)

    def connect(self, address: Address, now: float) -> None:
        self._check_open()
        self._peer, _ = parse_address(address)
        _ = self.ident

    def listen(self, backlog: int) -> None:
        raise os_error(errno.EOPNOTSUPP, "ping sockets do not listen")

    def accept(self) -> PingSocket:
        raise os_error(errno.EOPNOTSUPP, "ping sockets do not accept")

    def send(self, data: bytes | memoryview, now: float) -> int:
        if self._peer is None:
            raise os_error(errno.EDESTADDRREQ)
        return self._send_raw(data, self._peer, now)

    def sendto(self, data: bytes | memoryview, address: Address, now: float) -> int:
        dst, _ = parse_address(address)
        return self._send_raw(data, dst, now)

    def _send_raw(self, data: bytes | memoryview, dst: IPv4Address, now: float) -> int:
        if len(data) < 8:
            raise os_error(errno.EINVAL, "an ICMP echo request needs an 8-byte header")
        itype, code, _csum, _ident, seq = _ECHO_HEADER.unpack_from(data)
        if itype != IcmpType.ECHO_REQUEST or code != 0:
            raise os_error(errno.EINVAL, "ping sockets only send echo requests")
        self.send_echo(dst, seq, bytes(data[8:]), now)
        return len(data)

    def recv(self, max_bytes: int) -> bytes:
        return self.recvfrom(max_bytes)[0]

    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:
        reply = self.recv_reply()
        raw = build_icmp(IcmpEcho(type=IcmpType.ECHO_REPLY, ident=reply.ident, seq=reply.seq,
                                  payload=reply.payload))
        return raw[:max_bytes], format_address(reply.src, 0)

    def shutdown(self, how: int, now: float) -> None:
        raise os_error(errno.ENOTCONN)

    def close(self, now: float) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ident:
            self._layer._unbind(self._ident)
        self._replies.clear()
        self._stack.mark_changed(self)

    def getsockname(self) -> Address:
        return format_address(self._stack.config.ip.ip if self._ident else ANY, self._ident)

    def getpeername(self) -> Address:
        if self._peer is None:
            raise os_error(errno.ENOTCONN)
        return format_address(self._peer, 0)

    def setsockopt(self, option: str, value: int) -> None:
        raise os_error(errno.ENOPROTOOPT, option)

    # -- the ping command's calls ------------------------------------------------------------

    def send_echo(self, dst: IPv4Address | str, seq: int, payload: bytes, now: float) -> None:
        """Send one echo request with our identifier."""
        self._check_open()
        if isinstance(dst, str):
            dst, _ = parse_address((dst, 0))
        if len(payload) > 65507 - 8 + 8:
            raise os_error(errno.EMSGSIZE)
        message = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=self.ident,
                                      seq=seq & 0xFFFF, payload=payload))
        self._stack.send_ip(dst, IpProto.ICMP, message, now=now)
        self._stack.counters.inc("icmp.tx.echo_request")

    def recv_reply(self) -> PingReply:
        reply: PingReply = super().recv_reply()
        return reply


if TYPE_CHECKING:
    def _conforms(sock: PingSocket) -> StackSocket:
        return sock  # mypy proves PingSocket implements the StackSocket protocol
