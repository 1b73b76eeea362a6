"""The TCP layer of a stack: demultiplexing, listeners, ports, timers, RST for strays.

The stack registers :meth:`TcpLayer.receive` for IP protocol 6 and calls :meth:`poll` /
:meth:`next_deadline`; sockets come from :meth:`open_socket`.  Connections of both
families live in one dict keyed by ``(remote ip, remote port, local port)``, the IP as an
int (IPv6 tagged, see ``addresses``); each connection keeps its own local address (the
stack's IPv4 address, or the IPv6 source chosen when it opened).  The key leaves the local
address out: two connections from one remote address and port to two of our IPv6
addresses on the same port cannot coexist (a peer picks a fresh port per connection, so
this does not happen).  Timers are a heap of ``(deadline, tiebreak, connection)`` with lazy
invalidation: a connection registers a deadline only when it is earlier than the one it
already has, and stale entries are skipped when popped, so 10,000 idle connections cost
nothing per poll.

Ports: listeners, bound and connected sockets hold a reference on their local port;
connections in TIME_WAIT are counted apart.  ``bind`` refuses a port in use
(``EADDRINUSE``) unless SO_REUSEADDR is set and the only users are connections (not a
listener); a port with only TIME_WAIT users needs SO_REUSEADDR, as on Linux.  Ephemeral
ports come from 32768-60999 starting at a random point; when every port is busy a TIME_WAIT
entry for a different peer is reused (the 4-tuple still differs), then one for the same peer
(timestamps and the RFC 6528 clock keep the new incarnation's sequence numbers ahead).

Families: an ``AF_INET`` listener takes IPv4 SYNs, an ``IPV6_V6ONLY`` one IPv6 SYNs, a
dual-stack ``AF_INET6`` one both (``listeners`` / ``listeners6``).  One port space serves
both; an ``AF_INET`` and an ``IPV6_V6ONLY`` socket may bind the same port, as on Linux
(nginx's default ``listen 80; listen [::]:80;``).

A SYN that hits a TIME_WAIT connection for a listening port starts a new incarnation when its
sequence number (or timestamp) is beyond the old one (RFC 9293 3.6.1, RFC 6191).
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
from collections import Counter
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from vipernet.link.frame import GsoType, Offload
from vipernet.stack.socket_api import AF_INET, AF_INET6
from vipernet.stack.sockets_common import os_error
from vipernet.stack.tcp.addresses import V4_MAX, V6, address_of, key_bytes
from vipernet.stack.tcp.connection import Connection, ConnectionParams
from vipernet.stack.tcp.isn import IsnGenerator
from vipernet.stack.tcp.listener import Listener
from vipernet.stack.tcp.segment import (
    ACK,
    FIN,
    RST,
    SYN,
    Segment,
    build_segment,
    checksum_ok,
    finish_checksum,
    parse_segment,
    partial_checksum,
)
from vipernet.stack.tcp.seq import HALF, MASK
from vipernet.stack.tcp.socket import TcpSocket
from vipernet.stack.tcp.state import SegmentError, TcpState
from vipernet.stack.tcp.tcb import Tcb
from vipernet.stack.tcp.timewait import TimeWait

log = logging.getLogger("vipernet.tcp")

EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999
PROTO_TCP = 6
CHALLENGE_ACK_LIMIT = 1000  # per second, per layer (RFC 5961 7; Linux's default)

_TIME_WAIT = TcpState.TIME_WAIT
_CLOSED = TcpState.CLOSED
_ESTABLISHED = TcpState.ESTABLISHED

Key = tuple[int, int, int]  # remote ip (IPv6 tagged), remote port, local port
IPV6_HEADERS = 60  # IPv6 (40) + TCP (20): what an MSS leaves of the MTU
MAX_TCP_OVER_IPV6 = 65535  # the IPv6 payload length field (no jumbograms)
Entry = Connection | TimeWait
Timed = Tcb | TimeWait  # what the timer heap and the ConnectionHost calls see


class StackHooks(Protocol):
    """The parts of ``vipernet.stack.Stack`` the TCP layer uses."""

    config: Any
    capabilities: Any
    rng: Any
    nd: Any  # the IPv6 layers, present when IPv6 is on
    ipv6: Any

    def send_ip(self, dst: Any, proto: Any, payload: Any, *, offload_l4: Any = None,
                now: float) -> Any: ...
    def mark_changed(self, sock: object) -> None: ...


class TcpLayer:
    """Everything TCP in one stack."""

    def __init__(self, stack: StackHooks) -> None:
        self.stack = stack
        self.rng = stack.rng
        self.isn = IsnGenerator(stack.rng)
        self.local_ip = int(stack.config.ip.ip)
        self.local_addr = str(stack.config.ip.ip)
        caps = stack.capabilities
        self.tx_csum = bool(caps.tx_csum_offload)
        mtu_mss = max(88, caps.mtu - 40)
        self.tso = bool(caps.tso and caps.tx_csum_offload)
        # Without TSO: one MSS per segment (0).
        max_payload = max(mtu_mss, min(caps.max_frame - 34, 65515) - 60) if self.tso else 0
        self.defaults = ConnectionParams(mtu_mss=mtu_mss, max_payload=max_payload)
        self.conns: dict[Key, Entry] = {}
        self.listeners: dict[int, Listener] = {}  # the ones taking IPv4 SYNs
        self.listeners6: dict[int, Listener] = {}  # the ones taking IPv6 SYNs
        self.port_refs: Counter[int] = Counter()
        # Bound sockets of one family only (AF_INET; AF_INET6 with IPV6_V6ONLY): they do
        # not conflict with each other's family on the same port.
        self.v4only_refs: Counter[int] = Counter()
        self.v6only_refs: Counter[int] = Counter()
        self.tw_ports: Counter[int] = Counter()
        self.counters: Counter[str] = Counter()
        self.msl = 30.0  # TIME_WAIT lasts 2*MSL = 60 s, as on Linux
        self.fin_timeout = 60.0
        self.syn_retries = 6
        self.max_retries = 15
        self.now = 0.0
        self._heap: list[tuple[float, int, Timed]] = []
        self._ack_soon: list[Tcb] = []  # ACKs owed at the end of this batch
        self._tie = itertools.count()
        self._addr_cache: dict[int, IPv4Address | IPv6Address] = {}
        self._chal_second = -1
        self._chal_count = 0
        self._next_port: int = self.rng.randint(EPHEMERAL_LOW, EPHEMERAL_HIGH)

    # -- sockets ----------------------------------------------------------------------------

    def open_socket(self, family: int = AF_INET) -> TcpSocket:
        if family not in (AF_INET, AF_INET6):
            raise os_error(errno.EAFNOSUPPORT, f"address family {family}")
        return TcpSocket(self, family=family)

    def address_changed(self, ip: IPv4Address) -> None:
        """The stack's IPv4 address changed: new connections and listeners use it (open
        ones keep the address they were made with, as their peers know them by it)."""
        self.local_ip = int(ip)
        self.local_addr = str(ip)

    def bind_port(self, port: int, reuse: bool, only: int = 0) -> int:
        """Take a reference on ``port``; ``only`` is 4 or 6 for a socket of one family
        (0: both, a dual-stack socket or a connection)."""
        if port == 0:
            port = self.ephemeral_port(None, 0)
        else:
            if not 0 < port < 65536:
                raise OSError(errno.EINVAL, "port out of range")
            other = self.v6only_refs if only == 4 else self.v4only_refs if only == 6 else None
            sharing = other[port] if other is not None else 0
            lst4, lst6 = self.listeners.get(port), self.listeners6.get(port)
            listening = (only != 6 and lst4 is not None) or (only != 4 and lst6 is not None)
            if listening or (self.port_refs[port] - sharing and not reuse) or (
                    self.tw_ports[port] and not reuse):
                raise OSError(errno.EADDRINUSE, f"port {port} is in use")
            self.port_refs[port] += 1
        if only == 4:
            self.v4only_refs[port] += 1
        elif only == 6:
            self.v6only_refs[port] += 1
        return port

    def release_family(self, port: int, only: int) -> None:
        """A bound one-family socket connects: its port is its connection's now, which
        (being of one family already) needs no family reference."""
        refs = self.v4only_refs if only == 4 else self.v6only_refs
        refs[port] -= 1
        if refs[port] <= 0:
            del refs[port]

    def release_port(self, port: int, only: int = 0) -> None:
        self.port_refs[port] -= 1
        if self.port_refs[port] <= 0:
            del self.port_refs[port]
        if only:
            self.release_family(port, only)

    def ephemeral_port(self, remote_ip: int | None, remote_port: int) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self._next_port
        for pass_ in range(3):
            for i in range(span):
                port = EPHEMERAL_LOW + (start - EPHEMERAL_LOW + i) % span
                if self.port_refs[port] or port in self.listeners or port in self.listeners6:
                    continue
                if self.tw_ports[port]:
                    if pass_ == 0:
                        continue
                    if remote_ip is not None:
                        old = self.conns.get((remote_ip, remote_port, port))
                        if old is not None:
                            if pass_ == 1:
                                continue
                            self.counters["tcp_time_wait_reused"] += 1
                            old._set_state(_CLOSED, self.now)
                self._next_port = port + 1 if port < EPHEMERAL_HIGH else EPHEMERAL_LOW
                self.port_refs[port] += 1
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")

    def connect(self, sock: Any, params: ConnectionParams, remote_ip: int, remote_port: int,
                local_port: int | None, now: float, local_ip: int | None = None) -> Connection:
        """Create and open an active connection; the socket's port reference moves to it.

        ``local_ip`` is the (tagged) IPv6 source of an IPv6 connection; IPv4 ones use the
        stack's address."""
        self.now = now
        if remote_ip > V4_MAX:
            local_ip = self._source6(remote_ip, local_ip)
            self._fit_to_ipv6(params, remote_ip, now)
        if local_port is None:
            local_port = self.ephemeral_port(remote_ip, remote_port)
        key = (remote_ip, remote_port, local_port)
        old = self.conns.get(key)
        if old is not None:
            if old.state != _TIME_WAIT:
                self.release_port(local_port)
                raise OSError(errno.EADDRINUSE, "4-tuple in use")
            old._set_state(_CLOSED, now)
        conn = self._new_conn(params, local_port, remote_ip, remote_port, now, local_ip)
        conn.port_ref = True
        conn.socket = sock
        self.conns[key] = conn
        self.counters["tcp_active_open"] += 1
        conn.open_active(now)
        if conn.state == _CLOSED and conn.error is not None:
            err = conn.error
            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
        return conn

    def listen(self, sock: Any, port: int, backlog: int, params: ConnectionParams, *,
               ipv4: bool = True, ipv6: bool = False) -> Listener:
        """Listen on ``port`` for SYNs of the families asked (both: a dual-stack socket)."""
        tables = ([self.listeners] if ipv4 else []) + ([self.listeners6] if ipv6 else [])
        for table in tables:
            lst = table.get(port)
            if lst is not None:
                if lst.socket is sock:
                    lst.backlog = max(1, backlog)
                    return lst
                raise OSError(errno.EADDRINUSE, f"port {port} already listening")
        lst = Listener(port, backlog, params, sock)
        for table in tables:
            table[port] = lst
        return lst

    def close_listener(self, lst: Listener, now: float) -> None:
        for table in (self.listeners, self.listeners6):
            if table.get(lst.port) is lst:
                del table[lst.port]
        for conn in list(lst.syn_queue) + list(lst.accept_queue):
            conn.listener = None
            conn.orphan = True
            conn.abort(now)
        lst.syn_queue.clear()
        lst.accept_queue.clear()

    def _new_conn(self, params: ConnectionParams, local_port: int, remote_ip: int,
                  remote_port: int, now: float, local_ip: int | None = None) -> Connection:
        if local_ip is None:
            local_ip = self.local_ip
        iss = self.isn.isn(local_ip, local_port, remote_ip, remote_port, now)
        ts_off = self.isn.token(key_bytes(remote_ip) + remote_port.to_bytes(2, "big")
                                + local_port.to_bytes(2, "big"))
        return Connection(self, params, local_ip=local_ip, local_port=local_port,
                          remote_ip=remote_ip, remote_port=remote_port, iss=iss,
                          ts_offset=ts_off)

    def _source6(self, remote_ip: int, bound: int | None) -> int:
        """Our IPv6 address for a connection to ``remote_ip``: the bound one, else the
        stack's choice (RFC 6724); EADDRNOTAVAIL before SLAAC/DAD gave one of its scope."""
        if bound is not None:
            return bound
        src = self.stack.nd.source_for(address_of(remote_ip))
        if src is None:
            raise OSError(errno.EADDRNOTAVAIL, "no usable IPv6 source address yet")
        return V6 | int(src)

    def _fit_to_ipv6(self, params: ConnectionParams, remote_ip: int, now: float) -> None:
        """An MSS that fits the path MTU after 60 bytes of headers (RFC 8200 5: at least
        1280), and TSO segments that fit the 16-bit payload length."""
        dst = address_of(remote_ip)
        assert isinstance(dst, IPv6Address)
        mtu = self.stack.ipv6.path_mtu(dst, now)
        params.mtu_mss = max(1220, min(mtu, self.stack.capabilities.mtu) - IPV6_HEADERS)
        if self.tso:
            caps = self.stack.capabilities
            params.max_payload = max(params.mtu_mss,
                                     min(caps.max_frame - 54, MAX_TCP_OVER_IPV6) - 60)

    # -- ConnectionHost ---------------------------------------------------------------------

    def transmit(self, conn: Timed, segment: bytearray, payload_len: int,
                 now: float) -> None:
        try:
            self._send(conn.local_ip, conn.remote_ip, segment, payload_len, conn.smss, now)
        except OSError as exc:
            # The IP layer refused (no route: ENETUNREACH; oversized: EMSGSIZE).  A connect
            # fails with that errno, as on Linux; otherwise it is a lost segment.
            self.counters["tcp_send_error"] += 1
            if isinstance(conn, Tcb) and conn.state == TcpState.SYN_SENT and exc.errno:
                conn._fail(exc.errno, now)

    def arm(self, conn: Timed, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._tie), conn))

    def notify(self, conn: Tcb) -> None:
        sock = conn.socket
        if sock is None and conn.listener is not None and conn.state == _ESTABLISHED:
            sock = conn.listener.socket  # type: ignore[attr-defined]
        if sock is not None:
            self.stack.mark_changed(sock)

    def state_changed(self, conn: Timed, old: TcpState, new: TcpState,
                      now: float) -> None:
        key = (conn.remote_ip, conn.remote_port, conn.local_port)
        if new == _TIME_WAIT:
            self.tw_ports[conn.local_port] += 1
            self._drop_port_ref(conn)
            self.counters["tcp_time_wait"] += 1
            if isinstance(conn, Connection) and conn.orphan:
                self.compact_time_wait(conn)
        elif new == _CLOSED:
            if self.conns.get(key) is conn:
                del self.conns[key]
            if old == _TIME_WAIT:
                self.tw_ports[conn.local_port] -= 1
                if self.tw_ports[conn.local_port] <= 0:
                    del self.tw_ports[conn.local_port]
            self._drop_port_ref(conn)
            lst = conn.listener
            if isinstance(lst, Listener) and isinstance(conn, Connection):
                lst.forget(conn)
        elif new == _ESTABLISHED and isinstance(conn, Connection):
            lst = conn.listener
            if isinstance(lst, Listener):
                lst.established(conn)
                self.counters["tcp_passive_established"] += 1
                self.stack.mark_changed(lst.socket)

    def compact_time_wait(self, conn: Connection) -> None:
        """Swap an orphaned TIME_WAIT connection for a small :class:`TimeWait` record."""
        key = (conn.remote_ip, conn.remote_port, conn.local_port)
        if conn.state != _TIME_WAIT or self.conns.get(key) is not conn:
            return
        tw = TimeWait(conn)
        conn.t_wait = conn.t_rtx = conn.t_persist = conn.t_delack = conn.t_keep = None
        conn.scheduled = None  # its heap entries go stale
        self.conns[key] = tw
        tw.arm()

    def _drop_port_ref(self, conn: Timed) -> None:
        if isinstance(conn, Tcb) and conn.port_ref:
            conn.port_ref = False
            self.release_port(conn.local_port)

    def ack_soon(self, conn: Tcb) -> None:
        self._ack_soon.append(conn)

    def _flush_acks(self, now: float) -> None:
        pending, self._ack_soon = self._ack_soon, []
        for conn in pending:
            if conn.delack_segs and conn.state != _CLOSED:
                conn.send_ack(now)
                conn._rearm()

    def challenge_ack_allowed(self, now: float) -> bool:
        second = int(now)
        if second != self._chal_second:
            self._chal_second = second
            self._chal_count = 0
        self._chal_count += 1
        return self._chal_count <= CHALLENGE_ACK_LIMIT

    def count(self, name: str) -> None:
        self.counters[name] += 1

    # -- the wire ---------------------------------------------------------------------------

    def _addr(self, ip: int) -> Any:
        a = self._addr_cache.get(ip)
        if a is None:
            if len(self._addr_cache) > 4096:
                self._addr_cache.clear()
            a = self._addr_cache[ip] = address_of(ip)
        return a

    def _send(self, src: int, dst: int, segment: bytearray, payload_len: int, gso_size: int,
              now: float) -> None:
        v6 = dst > V4_MAX
        if self.tx_csum:
            partial_checksum(src, dst, segment)
            hlen = (segment[12] >> 4) * 4
            if payload_len > gso_size:
                off = Offload(needs_csum=True, csum_start=0, csum_offset=16, hdr_len=hlen,
                              gso_type=GsoType.TCPV6 if v6 else GsoType.TCPV4,
                              gso_size=gso_size)
            else:
                off = Offload(needs_csum=True, csum_start=0, csum_offset=16, hdr_len=hlen)
        else:
            finish_checksum(src, dst, segment)
            off = None
        if v6:
            self.stack.ipv6.send(self._addr(dst), PROTO_TCP, segment, now,
                                 src=self._addr(src), offload_l4=off)
        else:
            self.stack.send_ip(self._addr(dst), PROTO_TCP, segment, offload_l4=off, now=now)
        self.counters["tcp_segments_sent"] += 1

    def receive(self, ip_header: Any, payload: memoryview | bytes, offload: Offload | None,
                now: float) -> None:
        """One TCP segment from the IP layer."""
        self.receive_segment(int(ip_header.src), int(ip_header.dst), payload, offload, now)

    def receive_segment(self, src: int, dst: int, payload: memoryview | bytes,
                        offload: Offload | None, now: float) -> None:
        """One TCP segment by addresses as ints: the IP layer's fast path calls this
        directly, without building an IPv4 header object for every data segment."""
        self.now = now
        if dst != self.local_ip:
            self.counters["tcp_drop_not_for_us"] += 1
            return
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        if not trusted and not checksum_ok(src, dst, payload):
            self.counters["tcp_drop_bad_checksum"] += 1
            return
        try:
            seg = parse_segment(payload)
        except SegmentError as exc:
            self.counters["tcp_drop_malformed"] += 1
            log.debug("tcp: dropped malformed segment from %s: %s", IPv4Address(src), exc)
            return
        self._demux(src, dst, seg, now)

    def receive6(self, ip_header: Any, payload: memoryview, offload: Offload | None,
                 now: float) -> None:
        """One TCP segment from the IPv6 layer (which checked the destination is ours)."""
        self.now = now
        if ip_header.dst.is_multicast:
            self.counters["tcp_drop_multicast"] += 1  # RFC 9293 3.9.2.1: never for TCP
            return
        self.receive_segment6(V6 | int(ip_header.src), V6 | int(ip_header.dst), payload,
                              offload, now)

    def receive_segment6(self, src: int, dst: int, payload: memoryview,
                         offload: Offload | None, now: float) -> None:
        """One TCP segment over IPv6 by tagged addresses (the IPv6 layer's fast path)."""
        self.now = now
        trusted = offload is not None and (offload.needs_csum or offload.data_valid)
        if not trusted and not checksum_ok(src, dst, payload):
            self.counters["tcp_drop_bad_checksum"] += 1
            return
        try:
            seg = parse_segment(payload)
        except SegmentError as exc:
            self.counters["tcp_drop_malformed"] += 1
            log.debug("tcp: dropped malformed segment from %s: %s", address_of(src), exc)
            return
        self._demux(src, dst, seg, now)

    def _demux(self, src: int, dst: int, seg: Segment, now: float) -> None:
        self.counters["tcp_segments_received"] += 1
        conn = self.conns.get((src, seg.src_port, seg.dst_port))
        if conn is not None:
            if conn.state == _TIME_WAIT and seg.flags & (SYN | ACK | RST) == SYN:
                if self._time_wait_accepts_syn(conn, seg):
                    self.counters["tcp_time_wait_recycled"] += 1
                    conn._set_state(_CLOSED, now)
                else:
                    conn.on_segment(seg, now)
                    return
            else:
                conn.on_segment(seg, now)
                return
        lst = (self.listeners6 if src > V4_MAX else self.listeners).get(seg.dst_port)
        if lst is not None:
            self._listen_segment(lst, src, dst, seg, now)
            return
        self.counters["tcp_no_socket"] += 1
        self._reset_stray(src, dst, seg, now)

    def _time_wait_accepts_syn(self, conn: Entry, seg: Segment) -> bool:
        listeners = self.listeners6 if conn.remote_ip > V4_MAX else self.listeners
        if seg.dst_port not in listeners:
            return False
        if conn.ts_enabled and seg.tsval is not None:
            return (seg.tsval - conn.ts_recent) & MASK < HALF and seg.tsval != conn.ts_recent
        rcv_nxt_wire = (conn.irs + conn.rcv_nxt) & MASK
        return 0 < (seg.seq - rcv_nxt_wire) & MASK < HALF

    def _listen_segment(self, lst: Listener, src: int, dst: int, seg: Segment,
                        now: float) -> None:
        f = seg.flags
        if f & RST:
            return
        if f & ACK:
            self.counters["tcp_listen_stray_ack"] += 1
            self._reset_stray(src, dst, seg, now)
            return
        if not f & SYN:
            return
        if not lst.can_take_syn():
            self.counters["tcp_listen_overflow"] += 1
            return
        params = lst.params.copy()
        if src > V4_MAX:
            self._fit_to_ipv6(params, src, now)
        conn = self._new_conn(params, lst.port, src, seg.src_port, now, dst)
        self.conns[(src, seg.src_port, lst.port)] = conn
        lst.add_half_open(conn)
        self.counters["tcp_passive_open"] += 1
        conn.open_passive(seg, now)

    def _reset_stray(self, src: int, dst: int, seg: Segment, now: float) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST (never a RST)."""
        f = seg.flags
        if f & RST:
            return
        if f & ACK:
            out = build_segment(src_port=seg.dst_port, dst_port=seg.src_port, seq=seg.ack, ack=0,
                                flags=RST, window=0)
        else:
            n = len(seg.payload) + (1 if f & SYN else 0) + (1 if f & FIN else 0)
            out = build_segment(src_port=seg.dst_port, dst_port=seg.src_port, seq=0,
                                ack=(seg.seq + n) & MASK, flags=RST | ACK, window=0)
        self.counters["tcp_rst_sent"] += 1
        try:
            self._send(dst, src, out, 0, 1 << 16, now)
        except OSError:
            self.counters["tcp_send_error"] += 1

    def icmp_unreachable(self, remote_ip: int, local_port: int, remote_port: int, code: int,
                         now: float) -> None:
        """ICMP destination unreachable quoting one of our segments (RFC 1122 4.2.3.9):
        a hard error aborts a connection still in SYN_SENT; otherwise it is only counted."""
        conn = self.conns.get((remote_ip, remote_port, local_port))
        if not isinstance(conn, Connection):
            return
        self.counters["tcp_icmp_unreachable"] += 1
        if conn.state == TcpState.SYN_SENT and code in (2, 3):  # protocol / port unreachable
            conn._fail(errno.ECONNREFUSED, now)
        elif conn.state == TcpState.SYN_SENT and code in (0, 1):
            conn._fail(errno.EHOSTUNREACH, now)

    def icmp6_error(self, event: Any, now: float) -> None:
        """An ICMPv6 error about a segment we sent (an ``Icmpv6ErrorEvent``).

        Packet Too Big (the IPv6 layer already lowered the path MTU) shrinks the
        connection's MSS and resends what was in flight in smaller segments (RFC 8201 5.2);
        a hard error aborts a connection still in SYN_SENT (RFC 1122 4.2.3.9, RFC 4443 3),
        and is only counted on an established one (it may be transient)."""
        quote = event.quoted_payload
        if event.upper_protocol != PROTO_TCP or len(quote) < 4:
            return
        sport = int.from_bytes(quote[0:2], "big")
        dport = int.from_bytes(quote[2:4], "big")
        conn = self.conns.get((V6 | int(event.quoted.dst), dport, sport))
        if not isinstance(conn, Connection):
            self.counters["tcp_icmp6_no_connection"] += 1
            return
        self.now = now
        if event.mtu:
            self.counters["tcp_icmp6_packet_too_big"] += 1
            conn.path_mtu_lowered(max(1220, event.mtu - IPV6_HEADERS), now)
            return
        self.counters["tcp_icmp6_error"] += 1
        if conn.state == TcpState.SYN_SENT and event.hard:
            conn._fail(event.errno, now)

    # -- time -------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self._ack_soon:
            return self.now  # due at once: the caller polls after this batch of frames
        heap = self._heap
        while heap and heap[0][2].scheduled != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def poll(self, now: float) -> None:
        self.now = now
        if self._ack_soon:
            self._flush_acks(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn.scheduled == deadline and conn.state != _CLOSED:
                conn.on_timer(now)
