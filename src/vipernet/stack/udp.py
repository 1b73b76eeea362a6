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

IPv6 (RFC 8200 8.1, RFC 4443): an ``AF_INET6`` socket takes and reports
``(host, port, flowinfo, scope_id)`` and is dual-stack as Linux's default: bound to ``::``
it also receives IPv4 datagrams (sources named ``::ffff:a.b.c.d``) and sends to mapped
addresses as IPv4.  ``IPV6_V6ONLY`` or a specific IPv6 address makes it IPv6 only, so an
``AF_INET`` socket and a V6ONLY one may share a port; binding ``::ffff:<our IPv4>`` makes it
IPv4 only.  Over IPv6 the checksum is mandatory (a zero one is a counted drop), an
unclaimed datagram is answered with ICMPv6 port unreachable (rate limited, never for
multicast), and ICMPv6 errors reach connected sockets as ICMP ones do.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.link.frame import Offload
from vipernet.link.offload import checksum_finished
from vipernet.stack.icmp_layer import IcmpErrorEvent, IcmpLayer
from vipernet.stack.ports import PortAllocator
from vipernet.stack.socket_api import AF_INET, AF_INET6, Address, SocketKind, StackSocket
from vipernet.stack.sockets_common import (
    ANY,
    ANY6,
    DatagramSocketStatus,
    format_address,
    format_address6,
    mapped,
    os_error,
    parse_address,
    parse_address6,
)
from vipernet.wire.errors import WireError
from vipernet.wire.icmp import UnreachableCode
from vipernet.wire.icmpv6 import Icmpv6Type, Icmpv6UnreachableCode
from vipernet.wire.ipv4 import IpProto, IPv4Header
from vipernet.wire.udp import CHECKSUM_OFFSET, build_udp, parse_udp

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import random

    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.icmpv6_layer import Icmpv6Layer
    from vipernet.stack.ndp_layer import NdLayer

MAX_DATAGRAM = 65507  # 65535 - 20 (IP) - 8 (UDP)
MAX_DATAGRAM6 = 65527  # 65535 (payload length, no jumbograms) - 8 (UDP)
PROTO_UDP = 17
IpAddress = IPv4Address | IPv6Address
# Per-datagram bookkeeping charged against SO_RCVBUF, so empty datagrams are bounded too.
_OVERHEAD = 256


class UdpHost(Protocol):
    """What UDP needs from its stack, for both IP versions."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    icmp: IcmpLayer
    icmp6: Icmpv6Layer
    nd: NdLayer
    ipv6: Any  # the IPv6 layer; None while IPv6 is off

    def mark_changed(self, sock: object) -> None: ...
    def route(self, dst: IPv4Address) -> IPv4Address: ...
    def send_ip(self, dst: IPv4Address, proto: IpProto | int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"") -> None: ...


class _InAny:
    """A port is in use if any of the tables it would join holds it."""

    __slots__ = ("_tables",)

    def __init__(self, tables: Iterable[dict[int, UdpSocket]]) -> None:
        self._tables = tuple(tables)

    def __contains__(self, port: object) -> bool:
        return any(port in table for table in self._tables)


class UdpLayer:
    """The UDP protocol handler: demux to sockets, port allocation.

    Two tables share one port space: ``_by_port`` holds the sockets that take IPv4
    datagrams (AF_INET, and dual-stack AF_INET6), ``_by_port6`` those that take IPv6 ones.
    A dual-stack socket sits in both, so it conflicts with either kind.
    """

    __slots__ = ("_allocator", "_by_port", "_by_port6", "_stack")

    def __init__(self, stack: UdpHost) -> None:
        self._stack = stack
        self._by_port: dict[int, UdpSocket] = {}
        self._by_port6: dict[int, UdpSocket] = {}
        self._allocator = PortAllocator(stack.rng, stack.config.ephemeral_low,
                                        stack.config.ephemeral_high)

    def open_socket(self, family: int = AF_INET) -> UdpSocket:
        if family not in (AF_INET, AF_INET6):
            raise os_error(errno.EAFNOSUPPORT, f"address family {family}")
        return UdpSocket(self._stack, self, family)

    def bound_sockets(self) -> list[UdpSocket]:
        return list({id(s): s for s in (*self._by_port.values(),
                                        *self._by_port6.values())}.values())

    def _tables(self, ipv4: bool, ipv6: bool) -> list[dict[int, UdpSocket]]:
        return [t for t, wanted in ((self._by_port, ipv4), (self._by_port6, ipv6)) if wanted]

    def _bind(self, sock: UdpSocket, port: int, *, ipv4: bool = True,
              ipv6: bool = False) -> int:
        tables = self._tables(ipv4, ipv6)
        in_use = _InAny(tables)
        if port == 0:
            port = self._allocator.allocate(in_use)
        elif port in in_use:
            raise os_error(errno.EADDRINUSE, f"UDP port {port} in use")
        for table in tables:
            table[port] = sock
        return port

    def _unbind(self, sock: UdpSocket, port: int) -> None:
        for table in (self._by_port, self._by_port6):
            if table.get(port) is sock:
                del table[port]

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
        if sock is None or not sock._accepts(ip_header.src, header.src_port):
            count("udp.rx.no_socket")
            stack.icmp.send_unreachable(ip_header, payload, UnreachableCode.PORT, now)
            return
        if sock.family == AF_INET:
            sock._deliver(bytes(data), (str(ip_header.src), header.src_port))
        else:
            sock._deliver(bytes(data), format_address6(mapped(ip_header.src), header.src_port))

    def receive6(self, ip_header: Any, payload: memoryview, offload: Offload | None,
                 now: float) -> None:
        """A UDP datagram over IPv6 (``ip_header`` an ``IPv6Header``)."""
        stack = self._stack
        count = stack.counters.inc
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        src, dst = ip_header.src, ip_header.dst
        try:
            header, data = parse_udp(payload, src=src, dst=dst, verify_checksum=not trusted)
        except WireError as exc:
            count(f"udp.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        sock = self._by_port6.get(header.dst_port)
        if sock is None or not sock._accepts(src, header.src_port) or (
                sock._local_ip != ANY6 and sock._local_ip != dst):
            count("udp.rx.no_socket")
            packet = stack.ipv6.current_packet
            if offload is not None and offload.needs_csum:
                # A local sender's datagram holds only the pseudo-header sum: quoted so,
                # our error would read as corrupt to its sender (and to tshark).
                packet = memoryview(checksum_finished(packet, len(packet) - len(payload),
                                                      CHECKSUM_OFFSET))
            # RFC 4443 3.1 code 4; send_error rate-limits and stays silent for multicast.
            stack.icmp6.send_error(Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT,
                                   packet, now)
            return
        sock._deliver(bytes(data), format_address6(src, header.src_port))

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

    def icmp6_error(self, event: Any, now: float) -> None:
        """An ICMPv6 error (an ``Icmpv6ErrorEvent``) about a datagram we sent."""
        quote = event.quoted_payload
        if event.upper_protocol != PROTO_UDP or len(quote) < 4:
            return
        sport = int.from_bytes(quote[0:2], "big")
        dport = int.from_bytes(quote[2:4], "big")
        sock = self._by_port6.get(sport)
        if sock is None:
            self._stack.counters.inc("udp.rx.icmp_error_no_socket")
            return
        sock._on_icmp_error(event.quoted.dst, dport, event)


class UdpSocket(DatagramSocketStatus):
    """A UDP endpoint implementing :class:`vipernet.stack.socket_api.StackSocket`."""

    kind = SocketKind.UDP

    def __init__(self, stack: UdpHost, layer: UdpLayer, family: int = AF_INET) -> None:
        self._stack = stack
        self._layer = layer
        super().__init__()
        self.family = family
        # ANY / ANY6, or the address bound; an AF_INET6 socket bound to ::ffff:<our IPv4>
        # holds that IPv4Address (it is then IPv4 only).
        self._local_ip: IpAddress = ANY if family == AF_INET else ANY6
        self._port = 0
        self._v6only = False
        # An IPv4Address for a peer reached over IPv4 (also a mapped peer of AF_INET6).
        self._peer: tuple[IpAddress, int] | None = None
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._queued_bytes = 0
        self._rcvbuf = stack.config.udp_rcvbuf
        self._shut_rd = False
        self._shut_wr = False
        self.drops = 0

    # -- binding and connecting -----------------------------------------------------------

    def bind(self, address: Address) -> None:
        self._check_open()
        if self._port:
            raise os_error(errno.EINVAL, "socket already bound")
        if self.family == AF_INET6:
            self._bind6(address)
            return
        ip, port = parse_address(address)
        if ip not in (ANY, self._stack.config.ip.ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not our address")
        self._port = self._layer._bind(self, port)
        self._local_ip = ip

    def _bind6(self, address: Address) -> None:
        ip, port, _scope = parse_address6(address)
        v4 = ip.ipv4_mapped
        if ip == ANY6:
            local: IpAddress = ANY6
        elif v4 is not None:
            if self._v6only or v4 not in (ANY, self._stack.config.ip.ip):
                raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
            local = v4
        elif not self._stack.nd.is_local(ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
        else:
            local = ip
        self._port = self._layer._bind(self, port, **self._families(local))
        self._local_ip = local

    def _families(self, local: IpAddress) -> dict[str, bool]:
        """Which datagrams a socket bound to ``local`` takes: {"ipv4": .., "ipv6": ..}."""
        if self.family == AF_INET or isinstance(local, IPv4Address):
            return {"ipv4": True, "ipv6": False}
        return {"ipv4": local == ANY6 and not self._v6only, "ipv6": True}

    def _autobind(self) -> None:
        if not self._port:
            self._port = self._layer._bind(self, 0, **self._families(self._local_ip))

    def connect(self, address: Address, now: float) -> None:
        self._check_open()
        ip, port = self._remote(address)
        if isinstance(ip, IPv4Address):
            self._stack.route(ip)  # ENETUNREACH now, as connect(2)
        elif self._stack.nd.source_for(ip) is None:
            raise os_error(errno.ENETUNREACH, f"no IPv6 route or source address for {ip}")
        self._autobind()
        self._peer = (ip, port)
        self._error = None

    def _remote(self, address: Address) -> tuple[IpAddress, int]:
        """A destination as this socket's family writes it -> (IPv4 or IPv6 address, port)."""
        if self.family == AF_INET:
            ip4, port = parse_address(address, allow_any_port=False)
            # As Linux: INADDR_ANY means ourselves.
            return (self._stack.config.ip.ip if ip4 == ANY else ip4), port
        ip6, port, _scope = parse_address6(address, allow_any_port=False)
        v4 = ip6.ipv4_mapped
        if v4 is not None:
            local = self._local_ip
            if self._v6only or (isinstance(local, IPv6Address) and local != ANY6):
                raise os_error(errno.ENETUNREACH, f"{ip6}: an IPv6-only socket")
            return (self._stack.config.ip.ip if v4 == ANY else v4), port
        if isinstance(self._local_ip, IPv4Address):
            raise os_error(errno.ENETUNREACH, f"{ip6}: socket bound to an IPv4 address")
        if ip6 == ANY6:
            raise os_error(errno.EINVAL, "cannot send to ::")
        return ip6, port

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
        ip, port = self._remote(address)
        return self._send(data, ip, port, now)

    def _send(self, data: bytes | memoryview, ip: IpAddress, port: int, now: float) -> int:
        if self._shut_wr:
            raise os_error(errno.EPIPE)
        stack = self._stack
        if isinstance(ip, IPv6Address):
            return self._send6(data, ip, port, now)
        if len(data) > MAX_DATAGRAM:
            raise os_error(errno.EMSGSIZE, f"{len(data)} > {MAX_DATAGRAM} bytes")
        self._autobind()
        segment = build_udp(self._port, port, data, src=stack.config.ip.ip, dst=ip)
        stack.send_ip(ip, IpProto.UDP, segment, now=now)
        stack.counters.inc("udp.tx.datagrams")
        return len(data)

    def _send6(self, data: bytes | memoryview, ip: IPv6Address, port: int, now: float) -> int:
        if len(data) > MAX_DATAGRAM6:
            raise os_error(errno.EMSGSIZE, f"{len(data)} > {MAX_DATAGRAM6} bytes")
        stack = self._stack
        src = self._local_ip
        if not isinstance(src, IPv6Address) or src == ANY6:
            chosen = stack.nd.source_for(ip)
            if chosen is None:
                raise os_error(errno.EADDRNOTAVAIL, f"no usable IPv6 source address for {ip}")
            src = chosen
        self._autobind()
        segment = build_udp(self._port, port, data, src=src, dst=ip)
        stack.ipv6.send(ip, PROTO_UDP, segment, now, src=src)
        stack.counters.inc("udp.tx.datagrams6")
        return len(data)

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, max_bytes: int) -> bytes:
        return self.recvfrom(max_bytes)[0]

    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:
        self._check_open()
        self._raise_pending()
        if not self._queue:
            if self._shut_rd:
                return b"", self._name(ANY if self.family == AF_INET else ANY6, 0)
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
            self._layer._unbind(self, self._port)
        self._queue.clear()
        self._queued_bytes = 0
        self._stack.mark_changed(self)

    def _name(self, ip: IpAddress, port: int) -> Address:
        """``ip`` as this socket's family writes addresses (mapped for IPv4 on AF_INET6)."""
        if self.family == AF_INET:
            assert isinstance(ip, IPv4Address)
            return format_address(ip, port)
        return format_address6(mapped(ip) if isinstance(ip, IPv4Address) else ip, port)

    def getsockname(self) -> Address:
        return self._name(self._local_ip, self._port)

    def getpeername(self) -> Address:
        if self._peer is None:
            raise os_error(errno.ENOTCONN)
        return self._name(*self._peer)

    def setsockopt(self, option: str, value: int) -> None:
        if option == "SO_RCVBUF":
            self._rcvbuf = max(int(value), 2 * _OVERHEAD)
        elif option == "IPV6_V6ONLY":
            if self.family != AF_INET6:
                raise os_error(errno.ENOPROTOOPT, "IPV6_V6ONLY on an AF_INET socket")
            if self._port:
                raise os_error(errno.EINVAL, "IPV6_V6ONLY after bind")
            self._v6only = bool(value)
        elif option not in ("SO_REUSEADDR", "SO_BROADCAST"):
            raise os_error(errno.ENOPROTOOPT, option)

    @property
    def readable(self) -> bool:
        return bool(self._queue) or self._error is not None or self._closed or self._shut_rd

    @property
    def queued_bytes(self) -> int:
        return sum(len(d) for d, _ in self._queue)

    # -- from the layer ----------------------------------------------------------------------

    def _accepts(self, src: IpAddress, src_port: int) -> bool:
        if self._shut_rd:
            return False
        peer = self._peer
        return peer is None or (peer[0] == src and peer[1] == src_port)

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

    def _on_icmp_error(self, dst: IpAddress, dport: int, event: Any) -> None:
        """An ICMP or ICMPv6 error event (``.hard``, ``.errno``) about a datagram to
        ``dst:dport``: kept for the next call of a socket connected to that peer."""
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
