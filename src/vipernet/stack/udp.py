"""UDP (RFC 768): the protocol handler and the datagram sockets.

Demultiplexing: one socket per local port and address, unless every socket sharing it set
``SO_REUSEADDR`` (Linux's rule; no SO_REUSEPORT); a connected socket takes only datagrams
from its peer.  A unicast datagram goes to the best match (connected, then bound to the
address, then to any); a broadcast or multicast one to every socket on the port that takes
it (``__udp4_lib_mcast_deliver``).  A datagram nobody takes is answered with ICMP port
unreachable (rate limited, never for broadcasts or multicast) and counted.

Broadcast and multicast, as Linux: sending to 255.255.255.255 or the subnet's broadcast
address (or connecting to one) needs ``SO_BROADCAST`` (else EACCES); a broadcast reaches
sockets bound to the port on INADDR_ANY or that broadcast address, never one bound to our
unicast address.  ``IP_ADD_MEMBERSHIP`` / ``IP_DROP_MEMBERSHIP`` (``ip_mreq`` or
``ip_mreqn``), ``IP_ADD_SOURCE_MEMBERSHIP`` / ``IP_DROP_SOURCE_MEMBERSHIP`` (INCLUDE
filters) and ``IP_BLOCK_SOURCE`` / ``IP_UNBLOCK_SOURCE`` (EXCLUDE filters; Linux's
``ip_mreq_source``) set the socket's filter per group, which the IGMP layer merges into the
interface's; at most 20 groups per socket and 10 sources per group (Linux's
``igmp_max_memberships`` / ``igmp_max_msf``: ENOBUFS).  A group's datagram reaches a socket
bound to the port (on INADDR_ANY or the group) that joined it and whose filter admits the
source — or, with ``IP_MULTICAST_ALL`` on (Linux's default), one that did not join it at all
but the interface listens to it.  ``IP_MULTICAST_TTL`` (default 1; 0: only looped back),
``IP_MULTICAST_LOOP`` (default on: our own datagram to a group we listen to is delivered
locally too), ``IP_MULTICAST_IF`` (our address, INADDR_ANY, or ifindex 0/1 — there is one
interface).  Closing a socket leaves its groups.  Over IPv6, ``IPV6_JOIN_GROUP`` /
``IPV6_LEAVE_GROUP`` (through MLD, any-source only) and ``IPV6_MULTICAST_HOPS`` (default 1)
and ``IPV6_MULTICAST_LOOP`` (accepted; IPv6 multicast is not looped back).

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
from vipernet.stack.igmp_layer import FilterMode, GroupFilter, IgmpLayer
from vipernet.stack.ports import PortAllocator
from vipernet.stack.socket_api import (
    AF_INET,
    AF_INET6,
    Address,
    GroupOptionSocket,
    GroupRequest,
    SocketKind,
    StackSocket,
    parse_ip_mreq_source,
    parse_ip_mreqn,
    parse_ipv6_mreq,
    parse_multicast_if,
)
from vipernet.stack.sockets_common import (
    ANY,
    ANY6,
    LIMITED_BROADCAST,
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
    from vipernet.stack.mld_layer import MldLayer
    from vipernet.stack.ndp_layer import NdLayer

MAX_DATAGRAM = 65507  # 65535 - 20 (IP) - 8 (UDP)
MAX_DATAGRAM6 = 65527  # 65535 (payload length, no jumbograms) - 8 (UDP)
PROTO_UDP = 17
IpAddress = IPv4Address | IPv6Address
# Per-datagram bookkeeping charged against SO_RCVBUF, so empty datagrams are bounded too.
_OVERHEAD = 256
MAX_MEMBERSHIPS = 20  # groups per socket (Linux's igmp_max_memberships)
MAX_SOURCES = 10  # sources in one socket's filter for a group (Linux's igmp_max_msf)
DEFAULT_MULTICAST_TTL = 1  # RFC 1112 6.1, Linux
_SOURCE_OPTIONS = {  # option -> (the filter mode it works on, adds a source)
    "IP_ADD_SOURCE_MEMBERSHIP": (FilterMode.INCLUDE, True),
    "IP_DROP_SOURCE_MEMBERSHIP": (FilterMode.INCLUDE, False),
    "IP_BLOCK_SOURCE": (FilterMode.EXCLUDE, True),
    "IP_UNBLOCK_SOURCE": (FilterMode.EXCLUDE, False),
}


class UdpHost(Protocol):
    """What UDP needs from its stack, for both IP versions."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    icmp: IcmpLayer
    icmp6: Icmpv6Layer
    igmp: IgmpLayer
    mld: MldLayer
    nd: NdLayer
    ipv6: Any  # the IPv6 layer; None while IPv6 is off

    def mark_changed(self, sock: object) -> None: ...
    def route(self, dst: IPv4Address) -> IPv4Address: ...
    def send_ip(self, dst: IPv4Address, proto: IpProto | int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"", multicast_loop: bool = False) -> None: ...


class _InAny:
    """A port is in use if any of the tables it would join holds it."""

    __slots__ = ("_tables",)

    def __init__(self, tables: Iterable[dict[int, list[UdpSocket]]]) -> None:
        self._tables = tuple(tables)

    def __contains__(self, port: object) -> bool:
        return any(port in table for table in self._tables)


def _is_any(ip: IpAddress) -> bool:
    return ip in (ANY, ANY6)


def _clash(sock: UdpSocket, other: UdpSocket, local: IpAddress) -> bool:
    """Whether ``sock`` may not bind ``local`` next to ``other`` (Linux's
    ``udp_lib_lport_inuse``): their addresses overlap and not both set SO_REUSEADDR."""
    theirs = other._local_ip
    overlap = _is_any(local) or _is_any(theirs) or local == theirs
    return overlap and not (sock._reuse and other._reuse)


class UdpLayer:
    """The UDP protocol handler: demux to sockets, port allocation.

    Two tables share one port space: ``_by_port`` holds the sockets that take IPv4
    datagrams (AF_INET, and dual-stack AF_INET6), ``_by_port6`` those that take IPv6 ones.
    A dual-stack socket sits in both, so it conflicts with either kind.  Each port holds a
    list, in bind order: more than one socket only when their addresses differ or they all
    set SO_REUSEADDR.
    """

    __slots__ = ("_allocator", "_by_port", "_by_port6", "_stack")

    def __init__(self, stack: UdpHost) -> None:
        self._stack = stack
        self._by_port: dict[int, list[UdpSocket]] = {}
        self._by_port6: dict[int, list[UdpSocket]] = {}
        self._allocator = PortAllocator(stack.rng, stack.config.ephemeral_low,
                                        stack.config.ephemeral_high)

    def open_socket(self, family: int = AF_INET) -> UdpSocket:
        if family not in (AF_INET, AF_INET6):
            raise os_error(errno.EAFNOSUPPORT, f"address family {family}")
        return UdpSocket(self._stack, self, family)

    def bound_sockets(self) -> list[UdpSocket]:
        every = [s for table in (self._by_port, self._by_port6) for socks in table.values()
                 for s in socks]
        return list({id(s): s for s in every}.values())

    def _tables(self, ipv4: bool, ipv6: bool) -> list[dict[int, list[UdpSocket]]]:
        return [t for t, wanted in ((self._by_port, ipv4), (self._by_port6, ipv6)) if wanted]

    def _bind(self, sock: UdpSocket, port: int, *, local: IpAddress = ANY, ipv4: bool = True,
              ipv6: bool = False) -> int:
        tables = self._tables(ipv4, ipv6)
        if port == 0:
            port = self._allocator.allocate(_InAny(tables))
        elif any(_clash(sock, other, local) for table in tables
                 for other in table.get(port, ())):
            raise os_error(errno.EADDRINUSE, f"UDP port {port} in use")
        for table in tables:
            table.setdefault(port, []).append(sock)
        return port

    def _unbind(self, sock: UdpSocket, port: int) -> None:
        for table in (self._by_port, self._by_port6):
            socks = table.get(port)
            if socks is not None and sock in socks:
                socks.remove(sock)
                if not socks:
                    del table[port]

    @staticmethod
    def _unicast_match(socks: list[UdpSocket], src: IpAddress, src_port: int,
                       dst: IpAddress) -> UdpSocket | None:
        """The socket a unicast datagram goes to: connected beats bound-to-the-address
        beats bound-to-any (Linux's ``compute_score``); ties go to the first bound."""
        if len(socks) == 1:
            only = socks[0]
            local = only._local_ip
            if only._accepts(src, src_port) and (local == dst or _is_any(local)):
                return only
            return None
        best: UdpSocket | None = None
        best_score = -1
        for sock in socks:
            local = sock._local_ip
            if not sock._accepts(src, src_port) or not (local == dst or _is_any(local)):
                continue
            score = (4 if sock._peer is not None else 0) + (2 if local == dst else 0)
            if score > best_score:
                best, best_score = sock, score
        return best

    def _group_delivery(self, socks: list[UdpSocket] | None, data: bytes, src: IpAddress,
                        src_port: int, dst: IpAddress) -> int:
        """A broadcast or multicast datagram to every socket on the port that takes it."""
        taken = 0
        for sock in socks or ():
            local = sock._local_ip
            if (not sock._accepts(src, src_port) or not (local == dst or _is_any(local))
                    or not sock._wants_group(dst, src)):
                continue
            if isinstance(src, IPv4Address) and sock.family == AF_INET6:
                sock._deliver(data, format_address6(mapped(src), src_port))
            elif isinstance(src, IPv4Address):
                sock._deliver(data, (str(src), src_port))
            else:
                sock._deliver(data, format_address6(src, src_port))
            taken += 1
        return taken

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
        socks = self._by_port.get(header.dst_port)
        dst = ip_header.dst
        if dst != stack.config.ip.ip:  # the IP layer let in only broadcasts and our groups
            if not self._group_delivery(socks, bytes(data), ip_header.src, header.src_port,
                                        dst):
                count("udp.rx.no_socket")
            return
        sock = (None if socks is None
                else self._unicast_match(socks, ip_header.src, header.src_port, dst))
        if sock is None:
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
        socks = self._by_port6.get(header.dst_port)
        if dst.is_multicast:
            if not self._group_delivery(socks, bytes(data), src, header.src_port, dst):
                count("udp.rx.no_socket")
            return
        sock = (None if socks is None
                else self._unicast_match(socks, src, header.src_port, dst))
        if sock is None:
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
        sock = _connected_to(self._by_port.get(sport), event.quoted.dst, dport)
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
        sock = _connected_to(self._by_port6.get(sport), event.quoted.dst, dport)
        if sock is None:
            self._stack.counters.inc("udp.rx.icmp_error_no_socket")
            return
        sock._on_icmp_error(event.quoted.dst, dport, event)


def _connected_to(socks: list[UdpSocket] | None, dst: IpAddress, dport: int
                  ) -> UdpSocket | None:
    """Which socket of a port an ICMP error about a datagram to ``dst:dport`` concerns: the
    one connected there, else the first (which counts it ignored)."""
    if not socks:
        return None
    for sock in socks:
        if sock._peer == (dst, dport):
            return sock
    return socks[0]


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
        self._reuse = False  # SO_REUSEADDR
        self._broadcast = False  # SO_BROADCAST
        self._mc_ttl = DEFAULT_MULTICAST_TTL  # IP_MULTICAST_TTL
        self._mc_loop = True  # IP_MULTICAST_LOOP
        self._mc_all = True  # IP_MULTICAST_ALL
        self._mc_hops6 = DEFAULT_MULTICAST_TTL  # IPV6_MULTICAST_HOPS
        self._groups: dict[IPv4Address, GroupFilter] = {}  # this socket's IGMP filters
        self._groups6: set[IPv6Address] = set()  # IPV6_JOIN_GROUP (any-source)

    # -- binding and connecting -----------------------------------------------------------

    def bind(self, address: Address) -> None:
        self._check_open()
        if self._port:
            raise os_error(errno.EINVAL, "socket already bound")
        if self.family == AF_INET6:
            self._bind6(address)
            return
        ip, port = parse_address(address)
        if not self._bindable4(ip):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not our address")
        self._port = self._layer._bind(self, port, local=ip)
        self._local_ip = ip

    def _bindable4(self, ip: IPv4Address) -> bool:
        """Ours, any, a broadcast address or a group (Linux binds those too: such a
        socket then takes only the datagrams sent to that address)."""
        our = self._stack.config.ip
        return (ip in (ANY, our.ip, LIMITED_BROADCAST, our.network.broadcast_address)
                or ip.is_multicast)

    def _bind6(self, address: Address) -> None:
        ip, port, _scope = parse_address6(address)
        v4 = ip.ipv4_mapped
        if ip == ANY6:
            local: IpAddress = ANY6
        elif v4 is not None:
            if self._v6only or not self._bindable4(v4):
                raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
            local = v4
        elif not (ip.is_multicast or self._stack.nd.is_local(ip)):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
        else:
            local = ip
        self._port = self._layer._bind(self, port, local=local, **self._families(local))
        self._local_ip = local

    def _families(self, local: IpAddress) -> dict[str, bool]:
        """Which datagrams a socket bound to ``local`` takes: {"ipv4": .., "ipv6": ..}."""
        if self.family == AF_INET or isinstance(local, IPv4Address):
            return {"ipv4": True, "ipv6": False}
        return {"ipv4": local == ANY6 and not self._v6only, "ipv6": True}

    def _autobind(self) -> None:
        if not self._port:
            self._port = self._layer._bind(self, 0, local=self._local_ip,
                                           **self._families(self._local_ip))

    def connect(self, address: Address, now: float) -> None:
        self._check_open()
        ip, port = self._remote(address)
        if isinstance(ip, IPv4Address):
            self._check_broadcast(ip)
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
        self._check_broadcast(ip)
        self._autobind()
        segment = build_udp(self._port, port, data, src=stack.config.ip.ip, dst=ip)
        if int(ip) >> 28 == 14:  # a group: our TTL and loop settings, no gateway
            stack.send_ip(ip, IpProto.UDP, segment, now=now, ttl=self._mc_ttl,
                          multicast_loop=self._mc_loop)
            stack.counters.inc("udp.tx.multicast")
        else:
            stack.send_ip(ip, IpProto.UDP, segment, now=now)
        stack.counters.inc("udp.tx.datagrams")
        return len(data)

    def _check_broadcast(self, ip: IPv4Address) -> None:
        """EACCES for a broadcast destination without SO_BROADCAST, as Linux's
        ``udp_sendmsg`` and ``ip4_datagram_connect``."""
        if self._broadcast:
            return
        if ip == LIMITED_BROADCAST or ip == self._stack.config.ip.network.broadcast_address:
            raise os_error(errno.EACCES, f"{ip} is a broadcast address (set SO_BROADCAST)")

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
        stack.ipv6.send(ip, PROTO_UDP, segment, now, src=src,
                        hop_limit=self._mc_hops6 if ip.is_multicast else None)
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
        for group in list(self._groups):
            self._stack.igmp.set_filter(self, group, FilterMode.INCLUDE, frozenset(), now)
        self._groups.clear()
        for group6 in self._groups6:
            self._stack.mld.leave(group6, now)
        self._groups6.clear()
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
        elif option == "SO_REUSEADDR":
            self._reuse = bool(value)
        elif option == "SO_BROADCAST":
            self._broadcast = bool(value)
        elif option in ("IP_MULTICAST_TTL", "IPV6_MULTICAST_HOPS"):
            if option == "IPV6_MULTICAST_HOPS" and self.family != AF_INET6:
                raise os_error(errno.ENOPROTOOPT, f"{option} on an AF_INET socket")
            if not -1 <= value <= 255:
                raise os_error(errno.EINVAL, f"{option} {value} not in -1..255")
            ttl = DEFAULT_MULTICAST_TTL if value == -1 else int(value)  # -1: the default
            if option == "IP_MULTICAST_TTL":
                self._mc_ttl = ttl
            else:
                self._mc_hops6 = ttl
        elif option == "IP_MULTICAST_LOOP":
            self._mc_loop = bool(value)
        elif option == "IPV6_MULTICAST_LOOP":
            if self.family != AF_INET6:
                raise os_error(errno.ENOPROTOOPT, f"{option} on an AF_INET socket")
            if value not in (0, 1):
                raise os_error(errno.EINVAL, f"{option} {value} not 0 or 1")
        elif option == "IP_MULTICAST_ALL":
            self._mc_all = bool(value)
        else:
            raise os_error(errno.ENOPROTOOPT, option)

    # -- multicast groups ---------------------------------------------------------------------

    def set_group_option(self, option: str, value: bytes, now: float) -> None:
        """The struct-valued options (see :class:`~vipernet.stack.socket_api.GroupOptionSocket`)
        with Linux's errors: EINVAL for a short value or a group that is not multicast,
        ENODEV for an interface that is not ours, EADDRINUSE for a second join,
        EADDRNOTAVAIL for leaving what was not joined, ENOBUFS over the caps."""
        self._check_open()
        if option == "IP_MULTICAST_IF":
            self._interface(parse_multicast_if(value), errno.EADDRNOTAVAIL)
        elif option in ("IP_ADD_MEMBERSHIP", "IP_DROP_MEMBERSHIP"):
            request = parse_ip_mreqn(value)
            group = self._group(request)
            if option == "IP_ADD_MEMBERSHIP":
                self._join(group, now)
            elif group not in self._groups:
                raise os_error(errno.EADDRNOTAVAIL, f"{group} was not joined")
            else:
                self._set_filter(group, None, now)
        elif option in _SOURCE_OPTIONS:
            request = parse_ip_mreq_source(value)
            mode, add = _SOURCE_OPTIONS[option]
            self._source_option(self._group(request), IPv4Address(request.source or b""),
                                mode, add, now)
        elif option in ("IPV6_JOIN_GROUP", "IPV6_LEAVE_GROUP"):
            self._group6_option(option == "IPV6_JOIN_GROUP", parse_ipv6_mreq(value), now)
        else:
            raise os_error(errno.ENOPROTOOPT, option)

    def _interface(self, request: GroupRequest, no_address: int) -> None:
        """Our one interface, named by index (0 or 1) or address (ours or any)."""
        if request.ifindex not in (0, 1):
            raise os_error(errno.ENODEV, f"no interface with index {request.ifindex}")
        address = IPv4Address(request.interface)
        if request.ifindex == 0 and address not in (ANY, self._stack.config.ip.ip):
            raise os_error(no_address, f"{address} is not our address")

    def _group(self, request: GroupRequest) -> IPv4Address:
        group = IPv4Address(request.group)
        if not group.is_multicast:
            raise os_error(errno.EINVAL, f"{group} is not a multicast group")
        self._interface(request, errno.ENODEV)
        return group

    def _join(self, group: IPv4Address, now: float) -> None:
        if group in self._groups:
            raise os_error(errno.EADDRINUSE, f"{group} already joined")
        if len(self._groups) >= MAX_MEMBERSHIPS:
            raise os_error(errno.ENOBUFS, f"a socket joins at most {MAX_MEMBERSHIPS} groups")
        self._set_filter(group, GroupFilter(FilterMode.EXCLUDE), now)

    def _source_option(self, group: IPv4Address, source: IPv4Address, mode: FilterMode,
                       add: bool, now: float) -> None:
        """Linux's ``ip_mc_source``: an add/drop of ``source`` in a ``mode`` filter."""
        current = self._groups.get(group)
        if current is None:
            if not (add and mode == FilterMode.INCLUDE):
                raise os_error(errno.EADDRNOTAVAIL, f"{group} was not joined")
            if len(self._groups) >= MAX_MEMBERSHIPS:
                raise os_error(errno.ENOBUFS, f"a socket joins at most {MAX_MEMBERSHIPS} groups")
            current = GroupFilter(FilterMode.INCLUDE)
        if current.mode != mode:
            if current.sources:
                raise os_error(errno.EINVAL, f"{group}'s filter is in the other mode")
            current = GroupFilter(mode)  # an empty filter may switch mode
        sources = set(current.sources)
        if add:
            if source not in sources and len(sources) >= MAX_SOURCES:
                raise os_error(errno.ENOBUFS, f"at most {MAX_SOURCES} sources per group")
            sources.add(source)
        elif source not in sources:
            raise os_error(errno.EADDRNOTAVAIL, f"{source} is not in {group}'s filter")
        else:
            sources.discard(source)
        if mode == FilterMode.INCLUDE and not sources:
            self._set_filter(group, None, now)  # INCLUDE {}: the group is left
        else:
            self._set_filter(group, GroupFilter(mode, frozenset(sources)), now)

    def _set_filter(self, group: IPv4Address, new: GroupFilter | None, now: float) -> None:
        if new is None:
            self._groups.pop(group, None)
            self._stack.igmp.set_filter(self, group, FilterMode.INCLUDE, frozenset(), now)
        else:
            self._groups[group] = new
            self._stack.igmp.set_filter(self, group, new.mode, new.sources, now)

    def _group6_option(self, join: bool, request: GroupRequest, now: float) -> None:
        if self.family != AF_INET6:
            raise os_error(errno.ENOPROTOOPT, "an IPv6 option on an AF_INET socket")
        group = IPv6Address(request.group)
        if not group.is_multicast:
            raise os_error(errno.EINVAL, f"{group} is not a multicast group")
        if request.ifindex not in (0, 1):
            raise os_error(errno.ENODEV, f"no interface with index {request.ifindex}")
        if join:
            if group in self._groups6:
                raise os_error(errno.EADDRINUSE, f"{group} already joined")
            if len(self._groups6) >= MAX_MEMBERSHIPS:
                raise os_error(errno.ENOBUFS, f"a socket joins at most {MAX_MEMBERSHIPS} groups")
            self._groups6.add(group)
            self._stack.mld.join(group, now)
        elif group not in self._groups6:
            raise os_error(errno.EADDRNOTAVAIL, f"{group} was not joined")
        else:
            self._groups6.discard(group)
            self._stack.mld.leave(group, now)

    def _wants_group(self, dst: IpAddress, src: IpAddress) -> bool:
        """Whether a broadcast or multicast datagram from ``src`` is for this socket."""
        if isinstance(dst, IPv4Address):
            if int(dst) >> 28 != 14:
                return True  # a broadcast
            joined = self._groups.get(dst)
            if joined is not None:
                return isinstance(src, IPv4Address) and joined.allows(src)
            return self._mc_all
        return dst in self._groups6 or self._mc_all

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

    def _takes_groups(sock: UdpSocket) -> GroupOptionSocket:
        return sock
