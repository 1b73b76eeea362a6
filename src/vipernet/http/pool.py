"""The keep-alive pool: idle connections per (scheme, host, port), and how new ones are made.

A connection goes back to the pool only when its last exchange ended cleanly (both h11
sides IDLE again); anything else is closed.  Before an idle connection is reused it is
checked for readability without blocking: an idle HTTP/1.1 connection has nothing to say,
so readable means the server closed it (or sent garbage) and it is dropped.
"""

from __future__ import annotations

import contextlib
import select
import socket as _stdlib_socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from vipernet.errors import VipernetError
from vipernet.http.connection import RECV_SIZE, HTTPConnection, StreamSocket
from vipernet.http.errors import (
    ConnectError,
    HTTPError,
    ResolveError,
    Timeout,
    TLSError,
    TransportError,
)
from vipernet.http.models import URL, PoolStats

PROBE_AFTER = 1.0  # seconds
ConnectFn = Callable[[str, int, float | None], Any]
TLSWrapFn = Callable[..., Any]


def default_connect(host: str, port: int, timeout: float | None) -> Any:
    """The CLI transport: netd by default, OS sockets with ``VIPERNET_TRANSPORT=os``."""
    from vipernet.netclient.transport import connect

    return connect(host, port, timeout)


def default_tls_wrap(sock: Any, **kwargs: Any) -> Any:
    import importlib

    # Looked up at call time: vipernet.tls is written in parallel and may not exist yet.
    tls = importlib.import_module("vipernet.tls")
    wrap = getattr(tls, "wrap", None)
    if wrap is None:
        raise ImportError("vipernet.tls.wrap is not available yet")
    return wrap(sock, **kwargs)


def _is_resolve_error(exc: BaseException) -> bool:
    if isinstance(exc, _stdlib_socket.gaierror):
        return True
    # vipernet.dns raises its own errors; name-based so http need not import dns.
    return isinstance(exc, VipernetError) and type(exc).__module__.startswith("vipernet.dns")


def _is_certificate_error(exc: BaseException) -> bool:
    try:
        from vipernet.tls import CertificateError
    except ImportError:
        return False
    return isinstance(exc, CertificateError)


class ConnectionPool:
    """Opens, hands out and takes back :class:`HTTPConnection` objects."""

    def __init__(self, *, connect: ConnectFn, tls_wrap: TLSWrapFn, stats: PoolStats,
                 resolve: Mapping[tuple[str, int], str] | None = None,
                 cafile: str | None = None, insecure: bool = False,
                 max_idle_per_origin: int = 8, max_header_bytes: int = 64 * 1024,
                 recv_size: int = RECV_SIZE) -> None:
        self._connect = connect
        self._tls_wrap = tls_wrap
        self.stats = stats
        self._resolve = dict(resolve or {})
        self._cafile = cafile
        self._insecure = insecure
        self._max_idle = max_idle_per_origin
        self._max_header_bytes = max_header_bytes
        self._recv_size = recv_size
        self._idle: dict[tuple[str, str, int], list[HTTPConnection]] = {}

    def acquire(self, url: URL, connect_timeout: float | None, *,
                replayable: bool = True) -> tuple[HTTPConnection, bool]:
        """A connection to ``url``'s origin and whether it is a reused one.

        A connection idle for less than ``PROBE_AFTER`` seconds is handed out unprobed when
        the request could be resent (the retry covers a server that closed it meanwhile);
        that saves a system call on every request of a busy keep-alive loop.
        """
        idle = self._idle.get(url.origin)
        while idle:
            conn = idle.pop()
            if (replayable and time.monotonic() - conn.idle_since < PROBE_AFTER
                    and not conn.closed) or self._still_idle(conn):
                self.stats.connections_reused += 1
                return conn, True
            self._discard(conn)
        return self._open(url, connect_timeout), False

    def release(self, conn: HTTPConnection) -> None:
        if not conn.reusable:
            self._discard(conn)
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self._max_idle:
            self._discard(idle.pop(0))
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                self._discard(conn)
        self._idle.clear()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _discard(conn: HTTPConnection) -> None:
        conn.close()

    @staticmethod
    def _still_idle(conn: HTTPConnection) -> bool:
        if conn.closed:
            return False
        fileno = getattr(conn.sock, "fileno", None)
        if fileno is None:
            return True  # cannot tell cheaply; a failure on first use is retried instead
        try:
            fd = fileno()
            if fd < 0:
                return True  # a netd socket has no descriptor (-1): rely on the retry
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError, TypeError):
            return True
        return not readable

    def _open(self, url: URL, timeout: float | None) -> HTTPConnection:
        address = self._resolve.get((url.host, url.port), url.host)
        try:
            sock = self._connect(address, url.port, timeout)
        except HTTPError:
            raise
        except TimeoutError:
            raise Timeout("connect", timeout or 0.0) from None
        except Exception as exc:
            if _is_resolve_error(exc):
                raise ResolveError(f"cannot resolve {address!r}: {exc}") from None
            if isinstance(exc, OSError | VipernetError):
                raise ConnectError(f"cannot connect to {address}:{url.port}: {exc}") from None
            raise
        with contextlib.suppress(Exception):  # not every socket type has the option
            sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        if url.scheme == "https":
            sock = self._wrap_tls(sock, url, timeout)
        self.stats.connections_opened += 1
        conn = HTTPConnection(sock, origin=url.origin, max_header_bytes=self._max_header_bytes,
                              recv_size=self._recv_size)
        return conn

    def _wrap_tls(self, sock: Any, url: URL, timeout: float | None) -> StreamSocket:
        with contextlib.suppress(Exception):
            sock.settimeout(timeout)
        try:
            wrapped: StreamSocket = self._tls_wrap(
                sock, server_hostname=url.host, alpn=["http/1.1"], cafile=self._cafile,
                insecure=self._insecure)
        except TimeoutError:
            sock.close()
            raise Timeout("connect", timeout or 0.0) from None
        except ImportError as exc:
            sock.close()
            raise TransportError(f"https is unavailable: {exc}") from None
        except (OSError, VipernetError) as exc:
            sock.close()
            raise TLSError(f"TLS handshake with {url.host} failed: {exc}",
                           certificate=_is_certificate_error(exc)) from None
        return wrapped
