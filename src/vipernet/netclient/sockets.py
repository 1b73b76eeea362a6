"""A socket class shaped like the stdlib's, backed by netd (or the in-process stack).

Code written for ``socket.socket`` reads the same: ``bind/connect/listen/accept/send/
sendall/sendto/recv/recvfrom/recv_into/shutdown/close``, timeouts (``settimeout``,
``setblocking``; a timeout raises ``TimeoutError``), ``makefile`` for streams, context
manager.  Every failure is the ``OSError`` subclass the stdlib would raise, with the errno
the stack gave.

TCP and UDP sockets have a real file descriptor (netd's NET_SOCKET_ATTACH_FD, see
:mod:`vipernet.netd.fdlink`), taken when ``fileno()`` is first asked for, at the first
send/recv, when a TCP connect succeeds, at accept, or before ``os.fork``: bytes and
datagrams then flow
through the kernel descriptor, so ``select``, ``selectors``, ``asyncio`` and ``ssl`` work,
and ``send``/``recv`` cost no IPC message.  A stream's descriptor shows the peer's FIN as
EOF; when it ended in a reset or a timeout instead, netd keeps the error and ``recv``
raises it, as a kernel socket would.  A listener's descriptor is readable while ``accept``
would not block.  Ping sockets have none (``fileno()`` is -1; use :func:`poll`).

A child forked after the socket was made uses it too: at its first netd call the socket
is adopted into the child's own channel (NET_SOCKET_ADOPT, the descriptor as proof).

Blocking calls park inside netd (which enforces the timeout), so a thread blocked in
``recv`` costs netd nothing and does not hold up other threads or other sockets.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import os
import select as _select
import socket as _std
import struct
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from vipernet.netclient.client import NetClient, connect, socket_path
from vipernet.netclient.default import default_client, kernel_mode
from vipernet.netd import protocol as p
from vipernet.stack.socket_api import Address, SocketKind
from vipernet.stack.sockets_common import format_address6, ip6_text

AF_INET = _std.AF_INET
AF_INET6 = _std.AF_INET6
AF_UNSPEC = _std.AF_UNSPEC
IPPROTO_IPV6 = _std.IPPROTO_IPV6
IPV6_V6ONLY = _std.IPV6_V6ONLY
SOCK_STREAM = _std.SOCK_STREAM
SOCK_DGRAM = _std.SOCK_DGRAM
IPPROTO_TCP = _std.IPPROTO_TCP
IPPROTO_UDP = _std.IPPROTO_UDP
IPPROTO_ICMP = _std.IPPROTO_ICMP
SOL_SOCKET = _std.SOL_SOCKET
SO_REUSEADDR = _std.SO_REUSEADDR
SO_KEEPALIVE = _std.SO_KEEPALIVE
SO_RCVBUF = _std.SO_RCVBUF
SO_SNDBUF = _std.SO_SNDBUF
SO_BROADCAST = _std.SO_BROADCAST
SO_ERROR = _std.SO_ERROR
TCP_NODELAY = _std.TCP_NODELAY
SHUT_RD = _std.SHUT_RD
SHUT_WR = _std.SHUT_WR
SHUT_RDWR = _std.SHUT_RDWR
AI_PASSIVE = _std.AI_PASSIVE
# Broadcast and multicast options: Linux's values (<linux/in.h>, <linux/in6.h>); the stdlib
# lacks the source-filter ones.
IPPROTO_IP = _std.IPPROTO_IP
IP_MULTICAST_IF = 32
IP_MULTICAST_TTL = 33
IP_MULTICAST_LOOP = 34
IP_ADD_MEMBERSHIP = 35
IP_DROP_MEMBERSHIP = 36
IP_UNBLOCK_SOURCE = 37
IP_BLOCK_SOURCE = 38
IP_ADD_SOURCE_MEMBERSHIP = 39
IP_DROP_SOURCE_MEMBERSHIP = 40
IP_MULTICAST_ALL = 49
IPV6_MULTICAST_IF = 17
IPV6_MULTICAST_HOPS = 18
IPV6_MULTICAST_LOOP = 19
IPV6_JOIN_GROUP = 20
IPV6_LEAVE_GROUP = 21
INADDR_ANY = 0
timeout = TimeoutError
error = OSError
gaierror = _std.gaierror

_OPTIONS: dict[tuple[int, int], p.SockOpt] = {
    (IPPROTO_TCP, TCP_NODELAY): p.SockOpt.TCP_NODELAY,
    (SOL_SOCKET, SO_REUSEADDR): p.SockOpt.SO_REUSEADDR,
    (SOL_SOCKET, SO_KEEPALIVE): p.SockOpt.SO_KEEPALIVE,
    (SOL_SOCKET, SO_RCVBUF): p.SockOpt.SO_RCVBUF,
    (SOL_SOCKET, SO_SNDBUF): p.SockOpt.SO_SNDBUF,
    (SOL_SOCKET, SO_BROADCAST): p.SockOpt.SO_BROADCAST,
    (IPPROTO_IPV6, IPV6_V6ONLY): p.SockOpt.IPV6_V6ONLY,
    (IPPROTO_IP, IP_MULTICAST_TTL): p.SockOpt.IP_MULTICAST_TTL,
    (IPPROTO_IP, IP_MULTICAST_LOOP): p.SockOpt.IP_MULTICAST_LOOP,
    (IPPROTO_IP, IP_MULTICAST_ALL): p.SockOpt.IP_MULTICAST_ALL,
    (IPPROTO_IP, IP_MULTICAST_IF): p.SockOpt.IP_MULTICAST_IF,
    (IPPROTO_IP, IP_ADD_MEMBERSHIP): p.SockOpt.IP_ADD_MEMBERSHIP,
    (IPPROTO_IP, IP_DROP_MEMBERSHIP): p.SockOpt.IP_DROP_MEMBERSHIP,
    (IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP): p.SockOpt.IP_ADD_SOURCE_MEMBERSHIP,
    (IPPROTO_IP, IP_DROP_SOURCE_MEMBERSHIP): p.SockOpt.IP_DROP_SOURCE_MEMBERSHIP,
    (IPPROTO_IP, IP_BLOCK_SOURCE): p.SockOpt.IP_BLOCK_SOURCE,
    (IPPROTO_IP, IP_UNBLOCK_SOURCE): p.SockOpt.IP_UNBLOCK_SOURCE,
    (IPPROTO_IPV6, IPV6_JOIN_GROUP): p.SockOpt.IPV6_JOIN_GROUP,
    (IPPROTO_IPV6, IPV6_LEAVE_GROUP): p.SockOpt.IPV6_LEAVE_GROUP,
    (IPPROTO_IPV6, IPV6_MULTICAST_HOPS): p.SockOpt.IPV6_MULTICAST_HOPS,
    (IPPROTO_IPV6, IPV6_MULTICAST_LOOP): p.SockOpt.IPV6_MULTICAST_LOOP,
}

_POLLOUT = 4
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_DGRAM_ADDRESS = struct.Struct("!4sH")  # in front of each datagram on a UDP descriptor
_DGRAM_ADDRESS6 = struct.Struct("!16sH")  # the same for an AF_INET6 socket
MAX_UDP_PAYLOAD = 65507
MAX_UDP6_PAYLOAD = 65527
MIXED_POLL_SLICE = 0.01  # poll() over sockets with and without a descriptor alternates
CONNECT_SLICE = 0.05  # how long SO_ERROR waits for a non-blocking connect to end

_default_timeout: float | None = None
# Each raw read or write is one IPC round trip, so buffer more than io's 8 KiB default.
MAKEFILE_BUFFER = 64 * 1024


def getdefaulttimeout() -> float | None:
    return _default_timeout


def setdefaulttimeout(value: float | None) -> None:
    global _default_timeout
    _default_timeout = None if value is None else float(value)


class socket:
    """An AF_INET or AF_INET6 stream or datagram socket, or an AF_INET ping socket, living
    in the vipernet stack.  AF_INET6 sockets are dual-stack, as Linux's by default."""

    def __init__(self, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 *, client: NetClient | None = None, _sock_id: int | None = None,
                 host: str | None = None) -> None:
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, f"address family {family} is not supported "
                                              "(AF_INET and AF_INET6 are)")
        base_type = type & 0xF  # ignore SOCK_NONBLOCK / SOCK_CLOEXEC bits
        if base_type == SOCK_STREAM:
            kind = SocketKind.TCP
        elif base_type == SOCK_DGRAM:
            if family == AF_INET6 and proto == _std.IPPROTO_ICMPV6:
                raise OSError(errno.EPROTONOSUPPORT, "no ICMPv6 ping sockets (vipernet ping "
                                                     "uses NET_PING6)")
            kind = SocketKind.ICMP if proto == IPPROTO_ICMP else SocketKind.UDP
        else:
            raise OSError(errno.ESOCKTNOSUPPORT, f"socket type {type} is not supported")
        self.family = _std.AddressFamily(family)  # as the stdlib's: an enum with a name
        self.type = _std.SocketKind(base_type)
        self.proto = proto
        self._kind = kind
        self._netd = client or default_client()
        self._pid = os.getpid()  # the process whose channel self._netd is
        if _sock_id is not None:
            self._id = _sock_id
        elif host is not None:  # a virtual host's socket (netd --hosts, docs/vhosts.md)
            from vipernet.netclient.vhosts import create_on_host

            self._id = create_on_host(self._netd, kind, family, host)
        else:
            self._id = self._netd.create(kind, family)
        self._timeout: float | None = _default_timeout
        self._closed = False
        self._io_refs = 0
        self._lock = threading.Lock()
        self._stream: _std.socket | None = None  # the byte stream's descriptor (TCP)
        self._listening = False
        self._connecting = False  # a non-blocking connect is under way
        self._connected = False
        self._broadcast = False  # SO_BROADCAST, mirrored: see _datagram_out
        if kind != SocketKind.ICMP:
            _live.add(self)  # given its descriptor before a fork (_attach_before_fork)

    # ---- housekeeping

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"id={self._id}"
        return f"<vipernet.socket kind={self._kind.name} {state} timeout={self._timeout}>"

    def __enter__(self) -> socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> int:
        # As in the stdlib, a socket closed while makefile() objects still hold it stays
        # usable through them (http.client closes the socket before reading the body).
        if self._closed and self._io_refs <= 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._id

    @property
    def _client(self) -> NetClient:
        """The channel to ask netd about this socket on.  In a child forked after the
        socket was made it is the parent's channel, which the child must not touch: the
        child opens its own and adopts the socket into it first (NET_SOCKET_ADOPT, with
        the descriptor as proof), so accept/connect/names work there too."""
        if self._pid != os.getpid():
            self._follow_fork()
        return self._netd

    def _follow_fork(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            stream = self._stream
            if stream is None or stream.fileno() < 0:
                raise OSError(errno.EBADF, "a socket inherited over fork without its "
                                           "descriptor cannot be adopted")
            client = _client_in_child(self._netd)
            client.adopt(self._id, stream.fileno(), self.family)
            self._netd = client
            self._pid = pid

    def fileno(self) -> int:
        """The stream's descriptor (taken now if need be); -1 for sockets without one."""
        if self._closed:
            return -1
        stream = self._descriptor()
        return -1 if stream is None else stream.fileno()

    def _descriptor(self) -> _std.socket | None:
        """The socket's descriptor, attached on first use (None for ping sockets).  A
        listener's is only readable-when-acceptable, a UDP socket's carries datagrams
        with an address in front (see :mod:`vipernet.netd.fdlink`)."""
        if self._stream is None and self._kind != SocketKind.ICMP:
            fd = self._client.attach_fd(self._check())
            kind = _std.SOCK_STREAM if self._kind == SocketKind.TCP else _std.SOCK_SEQPACKET
            stream = _std.socket(_std.AF_UNIX, kind, fileno=fd)
            stream.settimeout(self._timeout)
            self._stream = stream
        return self._stream

    @property
    def sock_id(self) -> int:
        """netd's id for this socket (shown by ``vipernet stat``)."""
        return self._id

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._io_refs > 0:
            return  # makefile() objects still use it; the last one closes it for real
        self._real_close()

    def _data_stream(self) -> _std.socket | None:
        """The descriptor bytes flow through (a listener's carries none)."""
        return None if self._listening else self._descriptor()

    def _real_close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._pid != os.getpid():
            return  # an inherited copy: closing the descriptor was all (netd sees it go)
        try:
            self._netd.close(self._id)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ECONNRESET, errno.EPIPE):
                raise

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._real_close()

    def detach(self) -> int:
        """Hand the stream's descriptor over (``ssl.wrap_socket`` does this): the netd
        socket then lives as long as that descriptor does, like any kernel socket."""
        stream = self._descriptor()
        if stream is None:
            raise OSError(errno.EOPNOTSUPP, "only a TCP stream has a descriptor to detach")
        with self._lock:
            self._closed = True
        self._stream = None
        return stream.detach()

    # ---- timeouts

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value
        if self._stream is not None:
            self._stream.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # ---- addresses and connections

    def _address(self, address: Any) -> Address:
        if self.family == AF_INET6:
            return self._address6(address)
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"AF_INET address must be a tuple (host, port), got {address!r}")
        host, port = address
        _check_port(port)
        return (_resolve_host(str(host), self._client), port)

    def _address6(self, address: Any) -> Address:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, "
                            f"scope_id]]), got {address!r}")
        host, port = address[0], address[1]
        _check_port(port)
        flowinfo = address[2] if len(address) > 2 else 0
        scope_id = address[3] if len(address) > 3 else 0
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError("flowinfo must be 0-1048575.")
        return (_resolve_host6(str(host), self._client), port, flowinfo, scope_id)

    def bind(self, address: Any) -> None:
        self._client.bind(self._check(), self._address(address))

    def connect(self, address: Any) -> None:
        target = self._address(address)
        try:
            self._client.connect(self._check(), target, self._timeout)
        except BlockingIOError:
            self._connecting = True  # EINPROGRESS: SO_ERROR says how it ended
            raise
        self._connected = True
        if self._kind == SocketKind.TCP:
            self._descriptor()

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def listen(self, backlog: int = 128) -> None:
        self._client.listen(self._check(), max(0, backlog))
        self._listening = True

    def accept(self) -> tuple[socket, Address]:
        if self._stream is not None:
            # Drain the readiness byte netd keeps in a listener's descriptor; it puts one
            # back while more connections wait.
            with contextlib.suppress(BlockingIOError, InterruptedError):
                self._stream.recv(64, _std.MSG_DONTWAIT)
        sock_id, address = self._client.accept(self._check(), self._timeout)
        child = socket(self.family, self.type, self.proto, client=self._client, _sock_id=sock_id)
        child._timeout = None if _default_timeout is None else _default_timeout
        child._descriptor()
        return child, address

    def getsockname(self) -> Address:
        return self._client.getsockname(self._check())

    def getpeername(self) -> Address:
        return self._client.getpeername(self._check())

    def shutdown(self, how: int) -> None:
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise ValueError(f"invalid shutdown mode {how}")
        sock_id = self._check()
        if self._stream is None or self._listening:
            self._client.shutdown(sock_id, how)
            return
        if how in (SHUT_RD, SHUT_RDWR):
            self._client.shutdown(sock_id, SHUT_RD)
        # Writing ends on the descriptor: netd sends the FIN after what is still in it.
        self._stream.shutdown(how)

    # ---- options

    def setsockopt(self, level: int, optname: int, value: int | bytes | bool) -> None:
        option = _OPTIONS.get((level, optname))
        if option is None:
            raise OSError(errno.ENOPROTOOPT, f"option ({level}, {optname}) is not supported")
        if option == p.SockOpt.SO_BROADCAST:
            self._broadcast = bool(int.from_bytes(value, "little") if isinstance(
                value, (bytes, bytearray, memoryview)) else value)
        if option in p.STRUCT_OPTIONS:
            # The struct goes as given (an int is the 4 bytes the kernel would read).
            raw = (bytes(value) if isinstance(value, (bytes, bytearray, memoryview))
                   else int(value).to_bytes(4, "little", signed=True))
            self._client.setsockopt(self._check(), option, raw)
            return
        number = (int.from_bytes(value, "little", signed=len(value) == 4)
                  if isinstance(value, (bytes, bytearray, memoryview)) else int(value))
        self._client.setsockopt(self._check(), option, number)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int:
        if (level, optname) == (SOL_SOCKET, SO_ERROR):
            sock_id = self._check()
            if self._connecting:
                # The descriptor is writable before the handshake ends: wait a moment for
                # it, and if it is still under way say so (asyncio then asks again).
                if not self._client.poll([(sock_id, _POLLOUT)], CONNECT_SLICE):
                    raise BlockingIOError(errno.EINPROGRESS, "connect still in progress")
                self._connecting = False
            return self._client.get_error(sock_id)
        if (level, optname) == (SOL_SOCKET, _std.SO_TYPE):
            return self.type
        raise OSError(errno.ENOPROTOOPT, f"option ({level}, {optname}) cannot be read")

    # ---- data

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        if self._kind == SocketKind.UDP:
            return self._datagram_out(data, None)
        stream = self._data_stream()
        if stream is not None:
            self._check()
            try:
                return stream.send(data, flags)
            except BrokenPipeError:
                raise self._stream_error(errno.EPIPE) from None
        view = memoryview(data).cast("B")[:p.MAX_DATA]
        return self._client.send(self._check(), view, self._timeout)

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        if self._kind == SocketKind.UDP:
            self._datagram_out(data, None)
            return
        stream = self._data_stream()
        if stream is not None:
            self._check()
            try:
                stream.sendall(data, flags)
            except BrokenPipeError:
                raise self._stream_error(errno.EPIPE) from None
            return
        view = memoryview(data).cast("B")
        sock_id = self._check()
        if not view:
            self._client.send(sock_id, b"", self._timeout)
            return
        offset = 0
        while offset < len(view):
            chunk = view[offset:offset + p.MAX_DATA]
            offset += self._client.send(sock_id, chunk, self._timeout, send_all=True)

    def sendto(self, data: bytes | bytearray | memoryview, flags_or_address: Any,
               address: Any = None) -> int:
        target = flags_or_address if address is None else address
        if self._kind == SocketKind.UDP:
            return self._datagram_out(data, self._address(target))
        if self._kind == SocketKind.TCP:
            return self.send(data)  # a connected stream ignores the address, as Linux does
        return self._client.sendto(self._check(), memoryview(data).cast("B"),
                                   self._address(target), self._timeout)

    def _datagram_out(self, data: bytes | bytearray | memoryview,
                      address: Address | None) -> int:
        """One datagram through the UDP descriptor: 6 address bytes (18 for AF_INET6),
        then the payload; the all-zero address is the connected peer."""
        view = memoryview(data).cast("B")
        six = self.family == AF_INET6
        if len(view) > (MAX_UDP6_PAYLOAD if six else MAX_UDP_PAYLOAD):
            raise OSError(errno.EMSGSIZE, "Message too long")
        layout = _DGRAM_ADDRESS6 if six else _DGRAM_ADDRESS
        if address is None:
            if not self._connected:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            header = bytes(layout.size)
        else:
            ip = (ipaddress.IPv6Address(str(address[0]).split("%", 1)[0]) if six
                  else ipaddress.IPv4Address(address[0]))
            if ip == _LIMITED_BROADCAST and not self._broadcast:
                # Refused here, at once, as Linux's sendto; the stack refuses a directed
                # broadcast too, but over the descriptor that error comes one call later.
                raise OSError(errno.EACCES, "Permission denied (set SO_BROADCAST)")
            header = layout.pack(ip.packed, address[1])
        stream = self._descriptor()
        assert stream is not None
        self._check()
        stream.sendmsg([header, view])
        return len(view)

    def _datagram_in(self, bufsize: int) -> tuple[bytes, Address]:
        stream = self._descriptor()
        assert stream is not None
        self._check()
        six = self.family == AF_INET6
        layout = _DGRAM_ADDRESS6 if six else _DGRAM_ADDRESS
        message = stream.recv(bufsize + layout.size)
        if len(message) < layout.size:
            raise self._stream_error(errno.EBADF)  # netd closed the socket's descriptor
        raw_ip, port = layout.unpack_from(message)
        if port == 0 and not any(raw_ip):  # an error netd passes in the stream
            err = int.from_bytes(message[layout.size:layout.size + 2], "big") or errno.EIO
            raise OSError(err, os.strerror(err))
        data = message[layout.size:]
        if six:
            return data, format_address6(ipaddress.IPv6Address(raw_ip), port)
        return data, (str(ipaddress.IPv4Address(raw_ip)), port)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self._kind == SocketKind.UDP:
            return self._datagram_in(bufsize)[0]
        stream = self._data_stream()
        if stream is not None:
            self._check()
            data = stream.recv(bufsize, flags)
            if not data and bufsize:
                self._raise_pending()
            return data
        return self._client.recv(self._check(), bufsize, self._timeout)

    def _pending_error(self) -> int:
        """The reset/timeout netd kept for this stream, or 0.  A stream that ended both
        ways in FINs may already be gone from netd (it releases it then): 0."""
        try:
            return self._client.get_error(self._id)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return 0
            raise

    def _raise_pending(self) -> None:
        """EOF on the descriptor: a FIN, or a reset/timeout netd kept for us."""
        err = self._pending_error()
        if err:
            raise OSError(err, os.strerror(err))

    def _stream_error(self, default: int) -> OSError:
        err = self._pending_error() or default
        return OSError(err, os.strerror(err))

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if self._kind == SocketKind.UDP:
            return self._datagram_in(bufsize)
        if self._kind == SocketKind.TCP:
            return self.recv(bufsize, flags), self.getpeername()
        return self._client.recvfrom(self._check(), bufsize, self._timeout)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._kind == SocketKind.UDP:
            view = memoryview(buffer).cast("B")
            data = self._datagram_in(nbytes or len(view))[0]
            view[:len(data)] = data
            return len(data)
        stream = self._data_stream()
        if stream is not None:
            self._check()
            n = stream.recv_into(buffer, nbytes, flags)
            if not n and (nbytes or len(memoryview(buffer))):
                self._raise_pending()
            return n
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data = self.recv(size, flags)
        view[:len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0,
                      flags: int = 0) -> tuple[int, Address]:
        view = memoryview(buffer).cast("B")
        data, address = self.recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), address

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        """A file object over a stream socket, as ``socket.socket.makefile``."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        reading = "r" in mode
        writing = "w" in mode
        if not (reading or writing):
            reading = True
        raw = _SocketIO(self, reading, writing)
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = MAKEFILE_BUFFER
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffered: Any
        if reading and writing:
            buffered = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffered = io.BufferedReader(raw, buffering)
        else:
            buffered = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text


class _SocketIO(io.RawIOBase):
    """Raw I/O over a vipernet socket, for makefile()."""

    def __init__(self, sock: socket, reading: bool, writing: bool) -> None:
        super().__init__()
        self._sock = sock
        self._reading = reading
        self._writing = writing

    def readable(self) -> bool:
        return self._reading

    def writable(self) -> bool:
        return self._writing

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def write(self, data: Any) -> int:
        return self._sock.send(data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._sock._decref_socketios()


_child_clients: dict[tuple[int, str], NetClient] = {}
_live: weakref.WeakSet[socket] = weakref.WeakSet()


def _attach_before_fork() -> None:
    """Before ``os.fork``: every open netd socket of this process gets its descriptor
    now, so the child holds the proof it needs to adopt it (a socket never given one
    could not follow).  Sockets of an in-process stack are left alone."""
    pid = os.getpid()
    for sock in list(_live):
        if sock._closed or sock._stream is not None or sock._pid != pid:
            continue
        if not isinstance(getattr(sock._netd.channel, "path", None), str):
            continue
        with contextlib.suppress(OSError):
            sock._descriptor()


os.register_at_fork(before=_attach_before_fork)


def _client_in_child(parent: NetClient) -> NetClient:
    """This (forked) process's own client to the netd ``parent`` talks to."""
    path = getattr(parent.channel, "path", None)
    if not isinstance(path, str):
        raise OSError(errno.EOPNOTSUPP, "a socket of an in-process stack cannot follow fork")
    pid = os.getpid()
    client = _child_clients.get((pid, path))
    if client is not None and not getattr(client.channel, "broken", False):
        return client
    if not kernel_mode() and socket_path() == path:
        return default_client()  # the child's own process-wide client
    client = connect(path)
    for key in [k for k in _child_clients if k[0] != pid]:
        del _child_clients[key]  # a parent's entries mean nothing here
    _child_clients[(pid, path)] = client
    return client


def _check_port(port: object) -> None:
    if not isinstance(port, int):
        raise TypeError("'port' must be an int")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("port must be 0-65535.")


def _resolve_host6(host: str, client: NetClient) -> str:
    """An AF_INET6 socket's host: ``::`` for "", a literal (its ``%zone`` dropped: one
    interface), or the first AAAA of a name.  An IPv4 literal is refused as the stdlib's
    AF_INET6 socket refuses it (write ``::ffff:a.b.c.d``)."""
    if host == "":
        return "::"
    bare = host.split("%", 1)[0]
    try:
        return ip6_text(ipaddress.IPv6Address(bare))
    except ValueError:
        pass
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        raise gaierror(_std.EAI_FAMILY, "Address family for hostname not supported")
    return _lookup(host, AF_INET6, client)[0][1]


def _lookup(name: str, family: int, client: NetClient | None = None) -> list[tuple[int, str]]:
    """(family, address) pairs for ``name`` through netd (NET_DNS_RESOLVE_ALL), in the
    order to try them; AF_UNSPEC asks for both A and AAAA.  Failures are gaierrors."""
    client = client or default_client()
    wanted = (p.WANT_A if family == AF_INET else p.WANT_AAAA if family == AF_INET6
              else p.WANT_A | p.WANT_AAAA)
    try:
        addresses = client.resolve_all(name, wanted,
                                       _default_timeout if _default_timeout else 10.0)
    except OSError as exc:
        raise _gaierror_for(exc) from None
    if not addresses:
        raise gaierror(_std.EAI_NONAME, "Name or service not known")
    return [(AF_INET6 if ":" in a else AF_INET, a) for a in addresses]


def _gaierror_for(exc: OSError) -> gaierror:
    if exc.errno in (errno.ENOENT, errno.ENODATA):
        return gaierror(_std.EAI_NONAME, "Name or service not known")
    if exc.errno == errno.ETIMEDOUT:
        return gaierror(_std.EAI_AGAIN, "Temporary failure in name resolution")
    return gaierror(_std.EAI_FAIL, f"Non-recoverable failure in name resolution: "
                                   f"{exc.strerror}")


def _resolve_host(host: str, client: NetClient) -> str:
    if host in ("", "0.0.0.0"):
        return "0.0.0.0"
    if host == "<broadcast>":
        return "255.255.255.255"
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    return gethostbyname(host, client=client)


def gethostbyname(name: str, *, client: NetClient | None = None) -> str:
    """The first IPv4 address of ``name``, asked of the stack's resolver (NET_DNS_RESOLVE)."""
    return gethostbyname_ex(name, client=client)[2][0]


def gethostbyname_ex(name: str, *,
                     client: NetClient | None = None) -> tuple[str, list[str], list[str]]:
    try:
        return name, [], [str(ipaddress.IPv4Address(name))]
    except ValueError:
        pass
    client = client or default_client()
    try:
        addresses = client.resolve(name, _default_timeout if _default_timeout else 10.0)
    except OSError as exc:
        raise _gaierror_for(exc) from None
    if not addresses:
        raise gaierror(_std.EAI_NONAME, "Name or service not known")
    return name, [], addresses


def getaddrinfo(host: str | None, port: int | str | None, family: int = 0, type: int = 0,
                proto: int = 0, flags: int = 0
                ) -> list[tuple[int, int, int, str, Address]]:
    """Like ``socket.getaddrinfo`` for AF_INET, AF_INET6 and AF_UNSPEC (both, in netd's
    order: IPv6 first when the stack can send IPv6), resolving through the stack."""
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        raise gaierror(_std.EAI_FAMILY, "ai_family not supported")
    if port is None:
        number = 0
    elif isinstance(port, int):
        number = port
    elif port.isdigit():
        number = int(port)
    else:
        try:
            number = _std.getservbyname(port)
        except OSError:
            raise gaierror(_std.EAI_SERVICE, "Servname not supported for ai_socktype") from None
    found: list[tuple[int, str]] = []
    if host is None:
        passive = bool(flags & AI_PASSIVE)
        if family in (AF_UNSPEC, AF_INET6):
            found.append((AF_INET6, "::" if passive else "::1"))
        if family in (AF_UNSPEC, AF_INET):
            found.append((AF_INET, "0.0.0.0" if passive else "127.0.0.1"))
    else:
        found = _literal_pairs(host, family)
        if not found:
            found = _lookup(host, family)
    types: Iterable[tuple[int, int]]
    if type:
        types = [(type, proto or (IPPROTO_TCP if type == SOCK_STREAM else IPPROTO_UDP))]
    else:
        types = [(SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP)]
    return [(fam, t, pr, "", (ip, number, 0, 0) if fam == AF_INET6 else (ip, number))
            for fam, ip in found for t, pr in types]


def _literal_pairs(host: str, family: int) -> list[tuple[int, str]]:
    """An address literal as getaddrinfo's one result, [] for a name; EAI_FAMILY for a
    literal of the other family, as glibc."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return []
    fam = AF_INET6 if ip.version == 6 else AF_INET
    if family not in (AF_UNSPEC, fam):
        raise gaierror(_std.EAI_FAMILY if ip.version == 4 else _std.EAI_NONAME,
                       "Address family for hostname not supported")
    return [(fam, ip6_text(ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip))]


_GLOBAL_DEFAULT: Any = object()


def create_connection(address: tuple[Any, ...], timeout: Any = _GLOBAL_DEFAULT,
                      source_address: tuple[Any, ...] | None = None) -> socket:
    """Connect a stream socket to ``(host, port)``.  A name with addresses of both families
    is raced Happy Eyeballs style (RFC 8305, :mod:`vipernet.dns.happy_eyeballs`): IPv6
    first when the stack can send it, a new attempt every 250 ms or as soon as one fails,
    the first to connect wins and the others are closed."""
    host, port = address[0], address[1]
    found = _literal_pairs(host, AF_UNSPEC) or _lookup(host, AF_UNSPEC)
    limit = _default_timeout if timeout is _GLOBAL_DEFAULT else timeout
    if len(found) == 1:
        family, ip = found[0]
        sock = socket(family, SOCK_STREAM)
        try:
            sock.settimeout(limit)
            if source_address:
                sock.bind(source_address)
            sock.connect((ip, port))
        except OSError:
            sock.close()
            raise
        return sock
    return _race(found, port, limit, source_address)


def _race(found: list[tuple[int, str]], port: int, limit: float | None,
          source_address: tuple[Any, ...] | None) -> socket:
    """The Happy Eyeballs loop: the engine decides, netd's POLL and SO_ERROR tell how each
    non-blocking connect ended."""
    from vipernet.dns import happy_eyeballs as he

    started = time.monotonic()
    deadline = None if limit is None else started + limit
    race = he.HappyEyeballs(started)
    for family in (AF_INET6, AF_INET):
        race.addresses_resolved(family, [a for f, a in found if f == family], started)
    attempts: dict[int, socket] = {}
    client = default_client()
    try:
        while True:
            now = time.monotonic()
            action = race.next_action(now)
            if isinstance(action, he.StartAttempt):
                sock = socket(action.family, SOCK_STREAM, client=client)
                attempts[action.attempt_id] = sock
                try:
                    if source_address:
                        sock.bind(source_address)
                    sock.setblocking(False)
                    sock.connect((action.address, port))
                except BlockingIOError:
                    continue
                except OSError as exc:
                    attempts.pop(action.attempt_id).close()
                    race.attempt_failed(action.attempt_id, exc, now)
                    continue
                race.attempt_succeeded(action.attempt_id, now)
            elif isinstance(action, he.CancelAttempt):
                attempts.pop(action.attempt_id).close()
            elif isinstance(action, he.Connected):
                sock = attempts.pop(action.attempt_id)
                sock._connecting, sock._connected = False, True
                sock.settimeout(limit)
                sock._descriptor()
                return sock
            elif isinstance(action, he.Failed):
                raise action.error
            else:
                _await_attempts(race, attempts, client, action.until, deadline)
    finally:
        for sock in attempts.values():
            sock.close()


def _await_attempts(race: Any, attempts: dict[int, socket], client: NetClient,
                    until: float | None, deadline: float | None) -> None:
    """Wait for a connect in flight to end (or for the engine's next timer); report it."""
    now = time.monotonic()
    ends = [t for t in (until, deadline) if t is not None]
    wait = max(0.0, min(ends) - now) if ends else None
    if deadline is not None and now >= deadline:
        raise TimeoutError(errno.ETIMEDOUT, "timed out")
    if not attempts:
        time.sleep(wait or 0.0)
        return
    by_id = {sock._id: attempt for attempt, sock in attempts.items()}
    ready = client.poll([(sid, _POLLOUT | 1) for sid in by_id], wait)
    now = time.monotonic()
    for sid, _events in ready:
        attempt = by_id[sid]
        err = client.get_error(sid)
        if err:
            attempts.pop(attempt).close()
            race.attempt_failed(attempt, OSError(err, os.strerror(err)), now)
        else:
            race.attempt_succeeded(attempt, now)


def poll(entries: list[tuple[socket, int]], timeout: float | None = None,
         *, client: NetClient | None = None) -> list[tuple[socket, int]]:
    """Wait until one of ``(sock, events)`` is ready (POLLIN 1, POLLOUT 4); ready pairs.

    Sockets with a descriptor are polled by the kernel (their bytes are in it, not in the
    stack's socket); ping sockets by netd (NET_SOCKET_POLL); a mix, by both in turns."""
    if not entries:
        return []
    by_fd = [(s, ev) for s, ev in entries if s._descriptor() is not None]
    by_netd = [(s, ev) for s, ev in entries if s._stream is None]
    if not by_fd:
        return _netd_poll(by_netd, timeout, client)
    if not by_netd:
        return _kernel_poll(by_fd, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ready = _kernel_poll(by_fd, 0) + _netd_poll(by_netd, 0, client)
        remaining = None if deadline is None else deadline - time.monotonic()
        if ready or (remaining is not None and remaining <= 0):
            return ready
        slice_ = MIXED_POLL_SLICE if remaining is None else min(MIXED_POLL_SLICE, remaining)
        ready = _kernel_poll(by_fd, slice_)
        if ready:
            return ready


def _netd_poll(entries: list[tuple[socket, int]], timeout: float | None,
               client: NetClient | None) -> list[tuple[socket, int]]:
    client = client or entries[0][0]._client
    by_id = {s.sock_id: s for s, _ in entries}
    result = client.poll([(s.sock_id, ev) for s, ev in entries], timeout)
    return [(by_id[sid], rev) for sid, rev in result if rev]


def _kernel_poll(entries: list[tuple[socket, int]],
                 timeout: float | None) -> list[tuple[socket, int]]:
    poller = _select.poll()  # netd's POLL bits are Linux's (IN 1, OUT 4, ERR 8, HUP 16)
    by_fd = {}
    for sock, events in entries:
        fd = sock.fileno()
        by_fd[fd] = sock
        poller.register(fd, events)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return [(by_fd[fd], rev) for fd, rev in poller.poll(ms) if rev]
