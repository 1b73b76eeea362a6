"""Run ``httpx`` (through ``httpcore``) over vipernet sockets and vipernet TLS.

    import httpx
    from vipernet.http.httpx_transport import VipernetTransport

    with httpx.Client(transport=VipernetTransport(cafile="ca.pem")) as client:
        client.get("https://example.test/")

:class:`VipernetBackend` is an ``httpcore`` network backend: TCP connections come from the
same ``connect(host, port, timeout)`` callable :class:`vipernet.http.Client` uses (netd by
default) and ``start_tls`` is done by ``vipernet.tls.wrap``, not the stdlib ``ssl`` module:
the ``ssl.SSLContext`` httpcore passes in is ignored; verification follows this backend's
``cafile`` / ``insecure`` instead.  ``httpx`` and ``httpcore`` are optional dependencies
(the ``bench`` extra); importing this module without them raises ImportError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from vipernet.errors import VipernetError
from vipernet.http.pool import ConnectFn, TLSWrapFn, default_connect, default_tls_wrap

if TYPE_CHECKING:  # only httpcore's signature mentions it; we never use stdlib ssl
    import ssl


class VipernetStream(httpcore.NetworkStream):
    """An httpcore stream over a vipernet (or any stream) socket."""

    def __init__(self, sock: Any, *, tls_wrap: TLSWrapFn, cafile: str | None,
                 insecure: bool) -> None:
        self._sock = sock
        self._tls_wrap = tls_wrap
        self._cafile = cafile
        self._insecure = insecure

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._sock.settimeout(timeout)
        try:
            data: bytes = self._sock.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except (OSError, VipernetError) as exc:
            raise httpcore.ReadError(str(exc)) from exc
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._sock.settimeout(timeout)
        try:
            self._sock.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except (OSError, VipernetError) as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sock.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # ssl_context is httpcore's stdlib context: deliberately unused (see module doc).
        try:
            self._sock.settimeout(timeout)
            wrapped = self._tls_wrap(self._sock, server_hostname=server_hostname,
                                     alpn=["http/1.1"], cafile=self._cafile,
                                     insecure=self._insecure)
        except TimeoutError as exc:
            self.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, VipernetError, ImportError) as exc:
            self.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        return VipernetStream(wrapped, tls_wrap=self._tls_wrap, cafile=self._cafile,
                              insecure=self._insecure)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return None  # httpcore asks for ALPN; None means plain HTTP/1.1
        if info == "server_addr":
            return getattr(self._sock, "getpeername", lambda: None)()
        if info == "client_addr":
            return getattr(self._sock, "getsockname", lambda: None)()
        return None


class VipernetBackend(httpcore.NetworkBackend):
    def __init__(self, *, connect: ConnectFn | None = None, tls_wrap: TLSWrapFn | None = None,
                 cafile: str | None = None, insecure: bool = False) -> None:
        self._connect = connect or default_connect
        self._tls_wrap = tls_wrap or default_tls_wrap
        self._cafile = cafile
        self._insecure = insecure

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            sock = self._connect(host, port, timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, VipernetError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return VipernetStream(sock, tls_wrap=self._tls_wrap, cafile=self._cafile,
                              insecure=self._insecure)

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


_ERRORS: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
)


class VipernetTransport(httpx.BaseTransport):
    """An httpx transport: an httpcore connection pool on :class:`VipernetBackend`."""

    def __init__(self, *, connect: ConnectFn | None = None, tls_wrap: TLSWrapFn | None = None,
                 cafile: str | None = None, insecure: bool = False,
                 max_connections: int = 10) -> None:
        self.backend = VipernetBackend(connect=connect, tls_wrap=tls_wrap, cafile=cafile,
                                       insecure=insecure)
        self._pool = httpcore.ConnectionPool(network_backend=self.backend,
                                             max_connections=max_connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        try:
            resp = self._pool.handle_request(req)
        except Exception as exc:
            for ours, theirs in _ERRORS:
                if isinstance(exc, ours):
                    raise theirs(str(exc)) from exc
            raise
        assert isinstance(resp.stream, Iterable)
        return httpx.Response(status_code=resp.status, headers=resp.headers,
                              stream=_ResponseStream(resp.stream), extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()
