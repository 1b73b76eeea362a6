"""libnetclient: typed calls for every netd request, over any :class:`Channel`.

:func:`default_client` picks the backend once per process: an in-process stack when
``VIPER_KERNEL_ENABLE_NET=1`` (kernel mode), else the netd named by ``VIPERNET_SOCKET``
(default ``/run/vipernet/netd.sock``).  A forked child gets its own channel.
"""

from __future__ import annotations

import errno
import os
from typing import Any, TypeVar

from vipernet.netclient.channel import Channel, UnixChannel
from vipernet.netd import protocol as p
from vipernet.netd.protocol import Code
from vipernet.stack.socket_api import AF_INET, Address, SocketKind

BodyT = TypeVar("BodyT", bound=p.Body)


class NetClient:
    """One channel to a stack, and a method per request code.

    An ``AF_INET6`` socket's messages carry 18-byte ``address6`` fields where an IPv4
    one's carry 6 (docs/netd-protocol.md): the client remembers each socket's family
    from its CREATE (or ACCEPT, or ADOPT) to encode and decode them.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.families: dict[int, int] = {}  # AF_INET6 sockets (absent: AF_INET)

    def family(self, sock: int) -> int:
        return self.families.get(sock, AF_INET)

    def _layout(self, body: type[BodyT], sock: int) -> type[BodyT]:
        return p.for_family(body, self.family(sock))

    def _call(self, code: int, body: p.Body | None = None, wait: float | None = 0.0) -> bytes:
        raw = body.encode() if body is not None else b""
        return self.channel.call(code, raw, wait).body

    # ---- sockets

    def create(self, kind: SocketKind, family: int = AF_INET) -> int:
        sock = p.SocketRef.decode(self._call(Code.SOCKET_CREATE, p.CreateRequest(
            kind=kind, family=family))).sock
        self._remember(sock, family)
        return sock

    def _remember(self, sock: int, family: int) -> None:
        if family == AF_INET:
            self.families.pop(sock, None)
        else:
            self.families[sock] = family

    def bind(self, sock: int, address: Address) -> Address:
        body = self._call(Code.SOCKET_BIND, self._layout(p.BindRequest, sock)(
            sock=sock, address=address))
        return self._layout(p.AddressBody, sock).decode(body).address

    def connect(self, sock: int, address: Address, timeout: float | None) -> None:
        self._call(Code.SOCKET_CONNECT, self._layout(p.ConnectRequest, sock)(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout), address=address), timeout)

    def listen(self, sock: int, backlog: int) -> None:
        self._call(Code.SOCKET_LISTEN, p.ListenRequest(sock=sock, backlog=min(backlog, 0xFFFF)))

    def accept(self, sock: int, timeout: float | None) -> tuple[int, Address]:
        body = self._call(Code.SOCKET_ACCEPT, p.WaitRequest(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout)), timeout)
        reply = self._layout(p.AcceptReply, sock).decode(body)
        self._remember(reply.sock, self.family(sock))
        return reply.sock, reply.address

    def send(self, sock: int, data: bytes | memoryview, timeout: float | None,
             send_all: bool = False) -> int:
        flags = p.SendFlags.ALL if send_all else p.SendFlags(0)
        body = self._call(Code.SOCKET_SEND, p.SendRequest(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout), flags=flags, data=bytes(data)),
            timeout)
        return p.CountBody.decode(body).count

    def sendto(self, sock: int, data: bytes | memoryview, address: Address,
               timeout: float | None) -> int:
        body = self._call(Code.SOCKET_SENDTO, self._layout(p.SendToRequest, sock)(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout), flags=p.SendFlags(0),
            address=address, data=bytes(data)), timeout)
        return p.CountBody.decode(body).count

    def recv(self, sock: int, max_bytes: int, timeout: float | None) -> bytes:
        return self._call(Code.SOCKET_RECV, p.RecvRequest(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout),
            max_bytes=min(max_bytes, p.MAX_DATA)), timeout)

    def recvfrom(self, sock: int, max_bytes: int, timeout: float | None) -> tuple[bytes, Address]:
        body = self._call(Code.SOCKET_RECVFROM, p.RecvRequest(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout),
            max_bytes=min(max_bytes, p.MAX_DATA)), timeout)
        reply = self._layout(p.RecvFromReply, sock).decode(body)
        return reply.data, reply.address

    def close(self, sock: int) -> None:
        self._call(Code.SOCKET_CLOSE, p.SocketRef(sock=sock))
        self.families.pop(sock, None)

    def poll(self, entries: list[tuple[int, int]], timeout: float | None) -> list[tuple[int, int]]:
        body = self._call(Code.SOCKET_POLL, p.PollBody(
            timeout_ms=p.timeout_to_ms(timeout), entries=tuple(entries)), timeout)
        return list(p.PollBody.decode(body).entries)

    def getsockname(self, sock: int) -> Address:
        return self._layout(p.AddressBody, sock).decode(
            self._call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock))).address

    def getpeername(self, sock: int) -> Address:
        return self._layout(p.AddressBody, sock).decode(
            self._call(Code.SOCKET_GETPEERNAME, p.SocketRef(sock=sock))).address

    def shutdown(self, sock: int, how: int) -> None:
        self._call(Code.SOCKET_SHUTDOWN, p.ShutdownRequest(sock=sock, how=how))

    def setsockopt(self, sock: int, option: p.SockOpt, value: int | bytes) -> None:
        """``value``: an int, or for the struct options (``p.STRUCT_OPTIONS``) the struct's
        bytes as Linux's setsockopt(2) takes them."""
        if isinstance(value, bytes):
            body = p.SetSockOptRequest(sock=sock, option=option, data=value)
        else:
            body = p.SetSockOptRequest(sock=sock, option=option, value=value)
        self._call(Code.SOCKET_SETSOCKOPT, body)

    def attach_fd(self, sock: int) -> int:
        """A descriptor for the socket's byte stream (NET_SOCKET_ATTACH_FD); the caller
        owns it.  See :mod:`vipernet.netd.fdlink` for what the descriptor means."""
        reply = self.channel.call(Code.SOCKET_ATTACH_FD, p.SocketRef(sock=sock).encode(), 0.0)
        if reply.fd is None:
            raise OSError(errno.EPROTO, "netd's ATTACH_FD reply carried no descriptor")
        return reply.fd

    def adopt(self, sock: int, fd: int, family: int = AF_INET) -> None:
        """Make another channel's socket usable on this one (NET_SOCKET_ADOPT), proving
        possession with its descriptor ``fd`` (the caller keeps it): what a forked child
        does with a socket its parent made."""
        self.channel.call(Code.SOCKET_ADOPT, p.SocketRef(sock=sock).encode(), 0.0, fd=fd)
        self._remember(sock, family)

    def get_error(self, sock: int) -> int:
        return p.ErrnoBody.decode(self._call(Code.SOCKET_GET_ERROR, p.SocketRef(sock=sock))).errno

    # ---- services

    def resolve(self, name: str, timeout: float | None = 5.0) -> list[str]:
        """A records of ``name``; OSError(EINVAL) for a name DNS cannot carry."""
        body = self._call(Code.DNS_RESOLVE, p.ResolveRequest(
            timeout_ms=p.timeout_to_ms(timeout), hostname=dns_name(name)), timeout)
        return list(p.ResolveReply.decode(body).addresses)

    def resolve_all(self, name: str, families: int = p.WANT_A | p.WANT_AAAA,
                    timeout: float | None = 5.0) -> list[str]:
        """A and/or AAAA records of ``name`` (NET_DNS_RESOLVE_ALL), IPv4 and IPv6 texts
        mixed, in the order netd says to try them."""
        body = self._call(Code.DNS_RESOLVE_ALL, p.ResolveAllRequest(
            timeout_ms=p.timeout_to_ms(timeout), families=families, hostname=dns_name(name)),
            timeout)
        return list(p.ResolveAllReply.decode(body).addresses)

    def ping(self, destination: str, seq: int, payload: bytes,
             timeout: float | None) -> p.PingReply:
        body = self._call(Code.PING, p.PingRequest(
            destination=destination, seq=seq & 0xFFFF, timeout_ms=p.timeout_to_ms(timeout),
            payload=payload), timeout)
        return p.PingReply.decode(body)

    def ping6(self, destination: str, seq: int, payload: bytes,
              timeout: float | None) -> p.Ping6Reply:
        body = self._call(Code.PING6, p.Ping6Request(
            destination=destination, seq=seq & 0xFFFF, timeout_ms=p.timeout_to_ms(timeout),
            payload=payload), timeout)
        return p.Ping6Reply.decode(body)

    def info(self) -> dict[str, Any]:
        return p.JsonBody.decode(self._call(Code.GET_INFO)).value

    def stat(self) -> dict[str, Any]:
        return p.JsonBody.decode(self._call(Code.STAT)).value

    def close_channel(self) -> None:
        self.channel.close()

    def __enter__(self) -> NetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_channel()


def socket_path() -> str:
    return os.environ.get("VIPERNET_SOCKET") or "/run/vipernet/netd.sock"


def dns_name(name: str) -> str:
    """``name`` as the ASCII the wire carries: IDNA for non-ASCII names (like getaddrinfo),
    1..253 characters in labels of 1..63; OSError(EINVAL) otherwise, before any IPC."""
    try:
        ascii_name = name if name.isascii() else name.encode("idna").decode("ascii")
    except UnicodeError:
        raise OSError(errno.EINVAL, "invalid host name (not encodable as IDNA)") from None
    bare = ascii_name[:-1] if ascii_name.endswith(".") else ascii_name
    if not 1 <= len(bare) <= p.MAX_NAME:
        raise OSError(errno.EINVAL, f"invalid host name (length not in 1..{p.MAX_NAME})")
    if any(not 1 <= len(label) <= 63 for label in bare.split(".")):
        raise OSError(errno.EINVAL, "invalid host name (label empty or too long)")
    return ascii_name


def connect(path: str | None = None) -> NetClient:
    """A new client on its own channel to the netd at ``path`` (default: as configured)."""
    return NetClient(UnixChannel(path or socket_path()))
