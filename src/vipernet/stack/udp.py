"""UDP (RFC 768): the protocol handler and the datagram sockets.

Demultiplexing: one socket per local port (no SO_REUSEPORT); a connected socket takes only
datagrams from its peer.  A datagram nobody takes is answered with ICMP port unreachable
(rate limited, never for broadcasts) and counted.

Sockets follow Linux: ``bind`` port 0 picks a random free port in the ephemeral range;
sending auto-binds; the checksum is always computed on send, and a zero checksum (none)
is accepted on receive; the receive queue is capped in bytes (``SO_RCVBUF``) and
overflow is a counted drop; ``recv`` with a small buffer discards the rest of the
datagram.  ICMP errors are reported only on *connected* sockets (Linux without
``IP_RECVERR``): the errno (ECONNREFUSED for port unreachable) is raised by the next
send/recv, or read with :meth:`UdpSocket.take_error`.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from vipernet.link.frame import Offload
from vipernet.stack.icmp_layer import IcmpErrorEvent
from vipernet.stack.ports import PortAllocator
from vipernet.stack.socket_api import AF_INET, Address, SocketKind, StackSocket
from vipernet.stack.sockets_common import (
    ANY,
    DatagramSocketStatus,
    format_address,
    os_error,
    parse_address,
)
from vipernet.wire.errors import WireError
from vipernet.wire.icmp import UnreachableCode
from vipernet.wire.ipv4 import IpProto, IPv4Header
from vipernet.wire.udp import build_udp, parse_udp

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vipernet.stack.stack import Stack

MAX_DATAGRAM = 65507  # 65535 - 20 (IP) - 8 (UDP)
# Per-datagram bookkeeping charged against SO_RCVBUF, so empty datagrams are bounded too.
_OVERHEAD = 256


class UdpLayer:
    """The UDP protocol handler: demux to sockets, port allocation."""

    __slots__ = ("_allocator", "_by_port", "_stack")

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._by_port: dict[int, UdpSocket] = {}
        self._allocator = PortAllocator(stack.rng, stack.config.ephemeral_low,
                                        stack.config.ephemeral_high)

    def open_socket(self, family: int = AF_INET) -> UdpSocket:
        if family != AF_INET:
            raise os_error(errno.EAFNOSUPPORT, "IPv6 sockets are not built yet")
        return UdpSocket(self._stack, self)

    def bound_sockets(self) -> list[UdpSocket]:
        return list(self._by_port.values())

    def _bind(self, sock: UdpSocket, port: int) -> int:
        if port == 0:
            port = self._allocator.allocate(self._by_port)
        elif port in self._by_port:
            raise os_error(errno.EADDRINUSE, f"UDP port {port} in use")
        self._by_port[port] = sock
        return port

    def _unbind(self, port: int) -> None:
        self._by_port.pop(port, None)

    def receive(self, ip_header: IPv4Header, payload: memoryview, offload: Offload | None,
                now: float) -> None:
        stack = self._stack
        count = stack.counters.inc
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        try:
            header, data = parse_udp(payload, src=ip_header.src, dst=ip_header.dst,
                                     verify_checksum=not trusted)
        except WireError as exc:
            count(f"udp.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        sock = self._by_port.get(header.dst_port)
        if sock is None or not sock._accepts(ip_header, header.src_port):
            count("udp.rx.no_socket")
            stack.icmp.send_unreachable(ip_header, payload, UnreachableCode.PORT, now)
            return
        sock._deliver(bytes(data), (str(ip_header.src), header.src_port))

    def on_icmp_error(self, event: IcmpErrorEvent) -> None:
        quote = event.quoted_payload
        if len(quote) < 4:
            return
        sport = int.from_bytes(quote[0:2], "big")
        dport = int.from_bytes(quote[2:4], "big")
        sock = self._by_port.get(sport)
        if sock is None:
            self._stack.counters.inc("udp.rx.icmp_error_no_socket")
            return
        sock._on_icmp_error(event.quoted.dst, dport, event)


class UdpSocket(DatagramSocketStatus):
    """A UDP endpoint implementing :class:`vipernet.stack.socket_api.StackSocket`."""

    kind = SocketKind.UDP

    def __init__(self, stack: Stack, layer: UdpLayer) -> None:
        self._stack = stack
        self._layer = layer
        super().__init__()
        self._local_ip = ANY
        self._port = 0
        self._peer: tuple[IPv4Address, int] | None = None
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._queued_bytes = 0
        self._rcvbuf = stack.config.udp_rcvbuf
        self._shut_rd = False
        self._shut_wr = False
        self.drops = 0

    # -- binding and connecting -----------------------------------------------------------

    def bind(self, address: Address) -> None:
        self._check_open()
        ip, port = parse_address(address)
        if ip not in (ANY, self._stack.config.ip.ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not our address")
        if self._port:
            raise os_error(errno.EINVAL, "socket already bound")
        self._port = self._layer._bind(self, port)
        self._local_ip = ip

    def _autobind(self) -> None:
        if not self._port:
            self._port = self._layer._bind(self, 0)

    def connect(self, address: Address, now: float) -> None:
        self._check_open()
        ip, port = parse_address(address, allow_any_port=False)
        if ip == ANY:
            ip = self._stack.config.ip.ip  # as Linux: INADDR_ANY means ourselves
        self._stack.route(ip)  # ENETUNREACH now, as connect(2)
        self._autobind()
        self._peer = (ip, port)
        self._error = None

    def listen(self, backlog: int) -> None:
        raise os_error(errno.EOPNOTSUPP, "UDP sockets do not listen")

    def accept(self) -> UdpSocket:
        raise os_error(errno.EOPNOTSUPP, "UDP sockets do not accept")

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: bytes | memoryview, now: float) -> int:
        self._check_open()
        self._raise_pending()
        if self._peer is None:
            raise os_error(errno.EDESTADDRREQ)
        return self._send(data, self._peer[0], self._peer[1], now)

    def sendto(self, data: bytes | memoryview, address: Address, now: float) -> int:
        self._check_open()
        ip, port = parse_address(address, allow_any_port=False)
        if ip == ANY:
            ip = self._stack.config.ip.ip
        return self._send(data, ip, port, now)

    def _send(self, data: bytes | memoryview, ip: IPv4Address, port: int, now: float) -> int:
        if self._shut_wr:
            raise os_error(errno.EPIPE)
        if len(data) > MAX_DATAGRAM:
            raise os_error(errno.EMSGSIZE, f"{len(data)} > {MAX_DATAGRAM} bytes")
        stack = self._stack
        self._autobind()
        segment = build_udp(self._port, port, data, src=stack.config.ip.ip, dst=ip)
        stack.send_ip(ip, IpProto.UDP, segment, now=now)
        stack.counters.inc("udp.tx.datagrams")
        return len(data)

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, max_bytes: int) -> bytes:
        return self.recvfrom(max_bytes)[0]

    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:
        self._check_open()
        self._raise_pending()
        if not self._queue:
            if self._shut_rd:
                return b"", ("0.0.0.0", 0)
            raise BlockingIOError(errno.EAGAIN, "no datagram queued")
        data, address = self._queue.popleft()
        self._queued_bytes -= len(data) + _OVERHEAD
        return data[:max(max_bytes, 0)], address

    # -- the rest of the interface -------------------------------------------------------------

    def shutdown(self, how: int, now: float) -> None:
        self._check_open()
        if self._peer is None:
            raise os_error(errno.ENOTCONN)
        if how not in (0, 1, 2):
            raise os_error(errno.EINVAL)
        if how in (0, 2):
            self._shut_rd = True
        if how in (1, 2):
            self._shut_wr = True
        self._stack.mark_changed(self)

    def close(self, now: float) -> None:
        if self._closed:
            return
        self._closed = True
        if self._port:
            self._layer._unbind(self._port)
        self._queue.clear()
        self._queued_bytes = 0
        self._stack.mark_changed(self)

    def getsockname(self) -> Address:
        return format_address(self._local_ip, self._port)

    def getpeername(self) -> Address:
        if self._peer is None:
            raise os_error(errno.ENOTCONN)
        return format_address(*self._peer)

    def setsockopt(self, option: str, value: int) -> None:
        if option == "SO_RCVBUF":
            self._rcvbuf = max(int(value), 2 * _OVERHEAD)
        elif option not in ("SO_REUSEADDR", "SO_BROADCAST"):
            raise os_error(errno.ENOPROTOOPT, option)

    @property
    def readable(self) -> bool:
        return bool(self._queue) or self._error is not None or self._closed or self._shut_rd

    @property
    def queued_bytes(self) -> int:
        return sum(len(d) for d, _ in self._queue)

    # -- from the layer ----------------------------------------------------------------------

    def _accepts(self, ip_header: IPv4Header, src_port: int) -> bool:
        if self._shut_rd:
            return False
        peer = self._peer
        return peer is None or (peer[0] == ip_header.src and peer[1] == src_port)

    def _deliver(self, data: bytes, address: Address) -> None:
        cost = len(data) + _OVERHEAD
        if self._queued_bytes + cost > self._rcvbuf:
            self.drops += 1
            self._stack.counters.inc("udp.rx.queue_full")
            return
        self._queue.append((data, address))
        self._queued_bytes += cost
        self._stack.counters.inc("udp.rx.datagrams")
        if len(self._queue) == 1:
            self._stack.mark_changed(self)

    def _on_icmp_error(self, dst: IPv4Address, dport: int, event: IcmpErrorEvent) -> None:
        peer = self._peer
        if peer is None or peer != (dst, dport) or not event.hard:
            self._stack.counters.inc("udp.rx.icmp_error_ignored")
            return
        self._error = event.errno
        self._stack.counters.inc("udp.rx.icmp_error")
        self._stack.mark_changed(self)

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise os_error(err)

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF)


if TYPE_CHECKING:
    def _conforms(sock: UdpSocket) -> StackSocket:
        return sock  # mypy proves UdpSocket implements the StackSocket protocol
