"""TcpSocket: the :class:`~vipernet.stack.socket_api.StackSocket` face of a TCP endpoint.

Non-blocking throughout, with Linux's errnos: ``connect`` sends the SYN and raises
``BlockingIOError(EINPROGRESS)``; the caller waits for ``writable`` and reads the outcome with
``take_error()`` (ECONNREFUSED, ETIMEDOUT...).  ``recv`` returns ``b""`` at end of stream and
raises ``BlockingIOError`` when nothing is there yet; ``send`` returns how many bytes it
queued.  ``close()`` is a lingering close: queued bytes are still delivered and our FIN
follows them; the connection finishes in the background (unless unread data remains, in
which case Linux and we send a RST).

Socket options (``setsockopt(name, value)``): ``TCP_NODELAY``, ``SO_KEEPALIVE``,
``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``, ``SO_REUSEADDR``, ``SO_RCVBUF``,
``SO_SNDBUF``, ``TCP_CONGESTION`` (``"newreno"``, the default, or ``"cubic"``; before
connect/listen), ``TCP_CUBIC`` (1: CUBIC, 0: NewReno),
``IPV6_V6ONLY`` (an ``AF_INET6`` socket, before bind/connect/listen).

Families: an ``AF_INET6`` socket takes and reports ``(host, port, flowinfo, scope_id)``
addresses and is dual-stack, as Linux's default (``bindv6only=0``): bound to ``::`` it
also accepts IPv4 peers and connects to ``::ffff:a.b.c.d``, both plain IPv4 connections
underneath that it names in the mapped form.  ``IPV6_V6ONLY`` (or binding a specific
IPv6 address) makes it IPv6 only; binding ``::ffff:<our IPv4>`` makes it IPv4 only.
"""

from __future__ import annotations

import errno
import functools
from collections import Counter
from ipaddress import AddressValueError, IPv4Address
from typing import Any, Protocol

from vipernet.stack.socket_api import AF_INET, AF_INET6, Address, SocketKind
from vipernet.stack.sockets_common import ANY6, format_address6, mapped, parse_address6
from vipernet.stack.tcp.addresses import V4_MAX, V6, address_of
from vipernet.stack.tcp.congestion import ALGORITHMS
from vipernet.stack.tcp.connection import Connection
from vipernet.stack.tcp.listener import Listener
from vipernet.stack.tcp.params import ConnectionParams
from vipernet.stack.tcp.state import TcpState


class SocketStack(Protocol):
    """The parts of the stack a socket reaches through its layer."""

    nd: Any  # the IPv6 neighbour-discovery layer, present when IPv6 is on

    def mark_changed(self, sock: object) -> None: ...


class SocketHost(Protocol):
    """What a socket needs from its layer (``layer.TcpLayer``, which creates sockets and so
    sits above this module): ports, opening connections and listeners, the clock."""

    local_ip: int
    local_addr: str
    defaults: ConnectionParams
    port_refs: Counter[int]
    now: float

    @property
    def stack(self) -> SocketStack: ...

    def bind_port(self, port: int, reuse: bool, only: int = 0) -> int: ...
    def release_port(self, port: int, only: int = 0) -> None: ...
    def release_family(self, port: int, only: int) -> None: ...
    def connect(self, sock: Any, params: ConnectionParams, remote_ip: int, remote_port: int,
                local_port: int | None, now: float, local_ip: int | None = None
                ) -> Connection: ...
    def listen(self, sock: Any, port: int, backlog: int, params: ConnectionParams, *,
               ipv4: bool = True, ipv6: bool = False) -> Listener: ...
    def close_listener(self, lst: Listener, now: float) -> None: ...
    def compact_time_wait(self, conn: Connection) -> None: ...

SHUT_RD = 0
SHUT_WR = 1
SHUT_RDWR = 2

_CONNECTED = (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1,
              TcpState.FIN_WAIT_2, TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT)
_CAN_SEND = (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT)
_MIN_BUF = 4096
_MAX_BUF = 64 << 20


@functools.lru_cache(maxsize=1024)
def _parse_ipv4(host: str) -> int:
    """Dotted quad to int, cached: ``IPv4Address()`` parsing dominated connect() cost."""
    try:
        return int(IPv4Address(host))
    except (AddressValueError, ValueError):
        raise _ioerror(errno.EINVAL, f"bad IPv4 address {host!r}") from None


def _ioerror(code: int, what: str) -> OSError:
    """An OSError of the stdlib subclass that matches ``code`` (OSError maps it)."""
    return OSError(code, f"{what}: {errno.errorcode.get(code, code)}")


class TcpSocket:
    kind = SocketKind.TCP

    __slots__ = (
        "__weakref__",
        "_bound6",
        "_closed",
        "_conn",
        "_family",
        "_layer",
        "_listener",
        "_only",
        "_params",
        "_port",
        "_reuse",
        "_shut_rd",
        "_shut_wr",
        "_v6only",
    )

    def __init__(self, layer: SocketHost, conn: Connection | None = None, *,
                 family: int = AF_INET) -> None:
        self._layer = layer
        self._family = family
        self._v6only = False
        self._bound6: int | None = None  # a specific IPv6 address bound (tagged)
        # Which family's port space the bound port covers: 4, 6, or 0 for both.
        self._only = 4 if family == AF_INET else 0
        self._conn = conn
        self._listener: Listener | None = None
        self._params = conn.p if conn is not None else layer.defaults.copy()
        self._port = conn.local_port if conn is not None else 0
        self._reuse = False
        self._shut_rd = False
        self._shut_wr = False
        self._closed = False
        if conn is not None:
            conn.socket = self

    def __repr__(self) -> str:
        what = self._conn or self._listener or f"port {self._port}"
        return f"<TcpSocket {what}>"

    @property
    def family(self) -> int:
        return self._family

    @property
    def connection(self) -> Connection | None:
        return self._conn

    @property
    def state(self) -> TcpState:
        if self._listener is not None:
            return TcpState.LISTEN
        return self._conn.state if self._conn is not None else TcpState.CLOSED

    def _check_open(self) -> None:
        if self._closed:
            raise _ioerror(errno.EBADF, "socket is closed")

    # -- addresses --------------------------------------------------------------------------

    def bind(self, address: Address) -> None:
        self._check_open()
        if self._port or self._conn is not None:
            raise _ioerror(errno.EINVAL, "already bound")
        if self._family == AF_INET6:
            self._bind6(address)
            return
        host, port = address
        if host not in ("", "0.0.0.0", self._layer.local_addr):
            raise _ioerror(errno.EADDRNOTAVAIL, f"{host} is not a local address")
        self._port = self._layer.bind_port(int(port), self._reuse, self._only)

    def _bind6(self, address: Address) -> None:
        ip, port, _scope = parse_address6(address)
        v4 = ip.ipv4_mapped
        if ip == ANY6:
            only = 6 if self._v6only else 0
        elif v4 is not None:
            if self._v6only or v4 not in (IPv4Address(0), IPv4Address(self._layer.local_ip)):
                raise _ioerror(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
            only = 4
        else:
            if not self._layer.stack.nd.is_local(ip):
                raise _ioerror(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
            self._bound6 = V6 | int(ip)
            only = 6
        self._port = self._layer.bind_port(port, self._reuse, only)
        self._only = only

    def _name(self, ip: int, port: int) -> Address:
        """``ip`` (a key int) as this socket's family writes addresses."""
        if self._family == AF_INET:
            return (str(IPv4Address(ip)), port)
        address = address_of(ip)
        if isinstance(address, IPv4Address):
            address = mapped(address)
        return format_address6(address, port)

    def getsockname(self) -> Address:
        if self._conn is not None:
            return self._name(self._conn.local_ip, self._port)
        if self._family == AF_INET6:
            if self._bound6 is not None:
                return self._name(self._bound6, self._port)
            if self._only == 4:
                return self._name(self._layer.local_ip, self._port)
            return ("::", self._port, 0, 0)
        return ("0.0.0.0", self._port)

    def getpeername(self) -> Address:
        conn = self._conn
        if conn is None or conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED) or (
                conn.state == TcpState.CLOSED and conn.error is not None
                and not conn.syn_options_seen):
            raise _ioerror(errno.ENOTCONN, "not connected")
        return self._name(conn.remote_ip, conn.remote_port)

    # -- connection setup -------------------------------------------------------------------

    def connect(self, address: Address, now: float) -> None:
        self._check_open()
        if self._listener is not None:
            raise _ioerror(errno.EINVAL, "listening socket")
        conn = self._conn
        if conn is not None:
            if conn.state == TcpState.SYN_SENT:
                raise BlockingIOError(errno.EALREADY, "connect in progress")
            if conn.error is not None and conn.state == TcpState.CLOSED:
                err = conn.error
                conn.error = None
                raise _ioerror(err, "connect")
            raise _ioerror(errno.EISCONN, "already connected")
        local_ip: int | None = None
        if self._family == AF_INET6:
            ip, port, local_ip = self._remote6(address)
        else:
            host, port = address
            ip = _parse_ipv4(str(host))
            port = int(port)
        if not 0 < port < 65536 or (ip <= V4_MAX and (ip >> 28 == 0xE
                                                      or ip in (0, 0xFFFFFFFF))):
            raise _ioerror(errno.EINVAL, f"cannot connect to {address}")
        local = self._port or None
        if local is not None and self._only:
            self._layer.release_family(local, self._only)  # the connection's now: one family
            self._only = 0
        try:
            self._conn = self._layer.connect(self, self._params, ip, port, local, now,
                                             local_ip)
        except OSError:
            self._port = 0  # the port reference went with the failed connection
            raise
        self._port = self._conn.local_port
        raise BlockingIOError(errno.EINPROGRESS, "connect in progress")

    def _remote6(self, address: Address) -> tuple[int, int, int | None]:
        """An AF_INET6 connect's peer and our bound IPv6 source, as key ints."""
        ip, port, _scope = parse_address6(address)
        v4 = ip.ipv4_mapped
        if v4 is not None:
            if self._v6only or self._bound6 is not None:
                raise _ioerror(errno.ENETUNREACH, f"{ip}: an IPv6-only socket")
            return int(v4), port, None
        if self._only == 4:
            raise _ioerror(errno.ENETUNREACH, f"{ip}: socket bound to an IPv4 address")
        if ip.is_multicast or ip == ANY6:
            raise _ioerror(errno.EINVAL, f"cannot connect to {ip}")
        return V6 | int(ip), port, self._bound6

    def listen(self, backlog: int) -> None:
        self._check_open()
        if self._conn is not None:
            raise _ioerror(errno.EINVAL, "connected socket")
        if not self._port:
            if self._family == AF_INET6 and self._v6only:
                self._only = 6
            self._port = self._layer.bind_port(0, False, self._only)
        self._listener = self._layer.listen(self, self._port, backlog, self._params,
                                            ipv4=self._only != 6,
                                            ipv6=self._family == AF_INET6 and self._only != 4)

    def accept(self) -> TcpSocket:
        self._check_open()
        if self._listener is None:
            raise _ioerror(errno.EINVAL, "not listening")
        conn = self._listener.pop()
        if conn is None:
            raise BlockingIOError(errno.EAGAIN, "no connection to accept")
        conn.port_ref = True
        self._layer.port_refs[conn.local_port] += 1
        return TcpSocket(self._layer, conn, family=self._family)

    # -- data -------------------------------------------------------------------------------

    def send(self, data: bytes | memoryview, now: float) -> int:
        self._check_open()
        conn = self._conn
        if conn is None:
            raise _ioerror(errno.ENOTCONN, "not connected")
        if conn.error is not None:
            err = conn.error
            conn.error = None
            raise _ioerror(err, "send")
        st = conn.state
        if self._shut_wr or (st not in _CAN_SEND and st not in (TcpState.SYN_SENT,
                                                                 TcpState.SYN_RECEIVED)):
            raise _ioerror(errno.EPIPE, "send after shutdown or close")
        if st not in _CAN_SEND:
            raise BlockingIOError(errno.EAGAIN, "not yet connected")
        if not data:
            return 0
        n = conn.app_send(data, now)
        if n == 0:
            raise BlockingIOError(errno.EAGAIN, "send buffer full")
        return n

    def sendto(self, data: bytes | memoryview, address: Address, now: float) -> int:
        return self.send(data, now)

    def recv(self, max_bytes: int) -> bytes:
        self._check_open()
        conn = self._conn
        if conn is None:
            raise _ioerror(errno.ENOTCONN, "not connected")
        if max_bytes < 0:
            raise _ioerror(errno.EINVAL, "negative length")
        data = conn.app_recv(max_bytes, self._layer.now)
        if data:
            return data
        if conn.error is not None:
            err = conn.error
            conn.error = None
            raise _ioerror(err, "recv")
        if (conn.fin_received or self._shut_rd or conn.state == TcpState.CLOSED
                or max_bytes == 0):
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data")

    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:
        data = self.recv(max_bytes)
        return data, self.getpeername()

    def shutdown(self, how: int, now: float) -> None:
        self._check_open()
        conn = self._conn
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _ioerror(errno.EINVAL, "bad shutdown mode")
        if conn is None or conn.state in (TcpState.SYN_SENT, TcpState.CLOSED):
            raise _ioerror(errno.ENOTCONN, "not connected")
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True
            conn.app_shutdown_read()
        if how in (SHUT_WR, SHUT_RDWR) and not self._shut_wr:
            self._shut_wr = True
            conn.app_shutdown_write(now)
        self._layer.stack.mark_changed(self)

    def close(self, now: float) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._layer.close_listener(self._listener, now)
            self._layer.release_port(self._port, self._only)
            self._listener = None
        elif self._conn is not None:
            self._conn.app_close(now)
            if self._conn.state == TcpState.TIME_WAIT:
                self._layer.compact_time_wait(self._conn)
        elif self._port:
            self._layer.release_port(self._port, self._only)

    def setsockopt(self, option: str, value: int | str | bytes) -> None:
        p = self._params
        name = option.upper()
        if name == "TCP_NODELAY":
            p.nodelay = bool(value)
            if self._conn is not None and value:
                self._conn._output(self._layer.now)
                self._conn._rearm()
        elif name == "SO_KEEPALIVE":
            p.keepalive = bool(value)
            if self._conn is not None:
                if value:
                    self._conn._restart_keepalive(self._layer.now)
                    self._conn._rearm()
                else:
                    self._conn.t_keep = None
        elif name == "TCP_KEEPIDLE":
            p.keep_idle = float(max(1, value))
        elif name == "TCP_KEEPINTVL":
            p.keep_intvl = float(max(1, value))
        elif name == "TCP_KEEPCNT":
            p.keep_cnt = max(1, int(value))
        elif name == "TCP_CUBIC":
            if self._conn is None:  # chosen before connect/listen
                p.congestion = "cubic" if value else "newreno"
        elif name == "TCP_CONGESTION":  # by name, as Linux's option
            algo = value.decode() if isinstance(value, bytes) else str(value)
            if algo not in ALGORITHMS:
                raise OSError(errno.ENOENT, f"no congestion control {algo!r}")
            if self._conn is None:
                p.congestion = algo
        elif name == "SO_REUSEADDR":
            self._reuse = bool(value)
        elif name == "SO_RCVBUF":
            if self._conn is None:  # fixed once the window scale is negotiated
                p.rcv_buf = min(max(int(value), _MIN_BUF), _MAX_BUF)
        elif name == "SO_SNDBUF":
            p.snd_buf = min(max(int(value), _MIN_BUF), _MAX_BUF)
        elif name == "IPV6_V6ONLY":
            if self._family != AF_INET6:
                raise _ioerror(errno.ENOPROTOOPT, "IPV6_V6ONLY on an AF_INET socket")
            if self._port or self._conn is not None:
                raise _ioerror(errno.EINVAL, "IPV6_V6ONLY after bind")
            self._v6only = bool(value)
        else:
            raise _ioerror(errno.ENOPROTOOPT, f"unknown option {option}")

    # -- readiness --------------------------------------------------------------------------

    @property
    def readable(self) -> bool:
        if self._listener is not None:
            return bool(self._listener.accept_queue)
        conn = self._conn
        if conn is None:
            return False
        return bool(conn.rb.size or conn.fin_received or conn.error is not None
                    or conn.state == TcpState.CLOSED or self._shut_rd)

    @property
    def writable(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        st = conn.state
        if st in _CAN_SEND:
            return self._shut_wr or conn.send_space > 0
        return st not in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED)

    def take_error(self) -> int | None:
        conn = self._conn
        if conn is None or conn.error is None:
            return None
        err = conn.error
        conn.error = None
        return err

    @property
    def closed(self) -> bool:
        return self._closed
