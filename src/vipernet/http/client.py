"""The HTTP/1.1 client: request building, redirects, retries on stale connections.

    with Client() as client:
        r = client.get("http://10.0.2.2/")            # body read into r.content
        with client.stream("GET", url) as r:          # body left on the wire
            r.write_to(open("out", "wb"))
        client.stats                                  # connections opened / reused ...

Requests carry ``Host``, ``User-Agent: vipernet/<version>``, ``Accept: */*`` and
``Accept-Encoding: identity`` (we do not decode compressed bodies, so we do not ask for
them) unless the caller sets them.  Bodies are bytes (sent with Content-Length), a binary
file (Content-Length when its size is known, else chunked) or an iterable of bytes
(chunked).  No ``Expect: 100-continue`` is sent; a 1xx the server sends anyway is not the
response, but is kept in ``Response.informational`` (``vipernet fetch -i`` shows it).

Redirects (301, 302, 303, 307, 308) are followed up to ``max_redirects``: 303, and 301/302
after a POST, become a GET without a body (what browsers and curl do); 307/308 repeat the
method and body, which must then be replayable (bytes or a seekable file).  Credentials
(``Authorization``, ``Cookie``, ``Proxy-Authorization``) are dropped when a redirect
leaves the original host or downgrades https to http.

A request that fails on a *reused* connection before any response byte arrived (the server
closed the idle connection under us) is retried once on a new connection if its body can
be replayed.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, BinaryIO

from vipernet.http.connection import RECV_SIZE, HTTPConnection
from vipernet.http.errors import (
    ConnectionClosed,
    HTTPError,
    InvalidRequest,
    RequestBodyNotReplayable,
    TooManyRedirects,
)
from vipernet.http.models import URL, Headers, PoolStats, Timeouts
from vipernet.http.pool import (
    ConnectFn,
    ConnectionPool,
    TLSWrapFn,
    default_connect,
    default_tls_wrap,
)
from vipernet.http.response import Response

try:
    from importlib.metadata import version as _pkg_version

    USER_AGENT = f"vipernet/{_pkg_version('vipernet')}"
except Exception:  # running from a source tree without metadata
    USER_AGENT = "vipernet/0.1"

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
BODY_HEADERS = ("content-length", "content-type", "transfer-encoding", "content-encoding")
# A redirect's own body is read (to keep the connection) only if it is at most this big.
DRAIN_LIMIT = 64 * 1024
FILE_CHUNK = 256 * 1024

RequestHook = Callable[[str, URL, tuple[tuple[str, str], ...], bool], None]
Body = bytes | bytearray | memoryview | str | BinaryIO | Iterable[bytes] | None


class _PreparedBody:
    """A request body in a form we can send, and resend if it is replayable."""

    def __init__(self, body: Body) -> None:
        self.length: int | None = None
        self.replayable = True
        self._data: bytes | None = None
        self._file: BinaryIO | None = None
        self._file_start = 0
        self._iterable: Iterable[bytes] | None = None
        self._used = False
        if body is None:
            return
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes | bytearray | memoryview):
            self._data = bytes(body)
            self.length = len(self._data)
        elif hasattr(body, "read"):
            self._file = body  # type: ignore[assignment]
            self.length, self.replayable = self._file_size(body)  # type: ignore[arg-type]
        else:
            self._iterable = body
            self.replayable = False

    @property
    def present(self) -> bool:
        return self._data is not None or self._file is not None or self._iterable is not None

    @staticmethod
    def _file_size(f: BinaryIO) -> tuple[int | None, bool]:
        try:
            start = f.tell()
            seekable = f.seekable()
        except (OSError, AttributeError, io.UnsupportedOperation):
            return None, False
        try:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                return max(st.st_size - start, 0), seekable
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass
        if seekable:
            end = f.seek(0, io.SEEK_END)
            f.seek(start)
            return end - start, True
        return None, False

    def source(self) -> bytes | Iterable[bytes] | None:
        if self._used and not self.replayable:
            raise RequestBodyNotReplayable("the request body was a one-shot stream")
        first = not self._used
        self._used = True
        if self._data is not None:
            return self._data
        if self._file is not None:
            if not self.replayable:
                pass  # a pipe or socket: read it once, from where it is
            elif first:
                self._file_start = self._file.tell()
            else:
                self._file.seek(self._file_start)
            return self._read_file(self._file)
        return self._iterable

    @staticmethod
    def _read_file(f: BinaryIO) -> Iterator[bytes]:
        while True:
            chunk = f.read(FILE_CHUNK)
            if not chunk:
                return
            yield chunk


_NO_BODY = _PreparedBody(None)  # shared: an absent body has no state to consume


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_NO_HEADERS = Headers()


@functools.lru_cache(maxsize=256)
def _parse_url(text: str) -> URL:
    return URL.parse(text)


class Client:
    """An HTTP/1.1 client with a keep-alive pool; close it (or use ``with``) when done."""

    def __init__(self, *, connect: ConnectFn | None = None, tls_wrap: TLSWrapFn | None = None,
                 timeouts: Timeouts | None = None, follow_redirects: bool = True,
                 max_redirects: int = 10, cafile: str | None = None, insecure: bool = False,
                 resolve: Mapping[tuple[str, int], str] | None = None,
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                 user_agent: str = USER_AGENT, max_header_bytes: int = 64 * 1024,
                 max_body_size: int | None = None, max_idle_per_origin: int = 8,
                 recv_size: int = RECV_SIZE, clock: Callable[[], float] = time.monotonic,
                 on_request: RequestHook | None = None,
                 on_response: Callable[[Response], None] | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.max_body_size = max_body_size
        self.stats = PoolStats()
        # Observers for tools like ``vipernet fetch -v``: the head as sent (and whether the
        # connection was reused), and each response as its head arrives.
        self.on_request = on_request
        self.on_response = on_response
        self._clock = clock
        self._fields_cache: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
        self._user_agent = user_agent
        self._headers = Headers.of(headers if not isinstance(headers, Mapping) else
                                   dict(headers))
        self._pool = ConnectionPool(
            connect=connect or default_connect, tls_wrap=tls_wrap or default_tls_wrap,
            stats=self.stats, resolve=resolve, cafile=cafile, insecure=insecure,
            max_idle_per_origin=max_idle_per_origin, max_header_bytes=max_header_bytes,
            recv_size=recv_size)

    # -- public API -------------------------------------------------------------------------

    def request(self, method: str, url: str | URL, *,
                headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                body: Body = None, stream: bool = False, follow_redirects: bool | None = None,
                timeouts: Timeouts | None = None, max_body_size: int | None = None) -> Response:
        """Send a request; the body is read unless ``stream`` (then close the response)."""
        if method not in _KNOWN_METHODS:
            method = method.upper()
            if not method.isascii() or not method.isalpha():
                raise InvalidRequest(f"bad method {method!r}")
        target = url if isinstance(url, URL) else _parse_url(url)
        user = _NO_HEADERS if headers is None else Headers.of(
            dict(headers) if isinstance(headers, Mapping) else headers)
        limits = timeouts or self.timeouts
        deadline = None if limits.total is None else self._clock() + limits.total
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        cap = self.max_body_size if max_body_size is None else max_body_size
        prepared = _NO_BODY if body is None else _PreparedBody(body)
        history: list[Response] = []
        original_host = target.host
        credentials = True
        while True:
            response = self._exchange(method, target, user, prepared, limits, deadline, cap,
                                      credentials)
            if not (follow and response.status in REDIRECT_STATUSES):
                break
            location = response.headers.get("location")
            if not location:
                break
            if len(history) >= self.max_redirects:
                response.close()
                raise TooManyRedirects(self.max_redirects, location)
            self._drain(response)
            history.append(response)
            self.stats.redirects += 1
            new = target.join(location)
            if new.host != original_host or (target.scheme == "https" and new.scheme == "http"):
                credentials = False
                user = user.without(*CREDENTIAL_HEADERS)
            if (response.status == 303 and method != "HEAD") or \
                    (response.status in (301, 302) and method == "POST"):
                method = "GET"
                prepared = _NO_BODY
                user = user.without(*BODY_HEADERS)
            elif prepared.present and not prepared.replayable:
                raise RequestBodyNotReplayable(
                    f"{response.status} redirect needs the request body again")
            target = new
        response.history = history
        if not stream:
            try:
                response.read()
            finally:
                response.close()
        return response

    @contextlib.contextmanager
    def stream(self, method: str, url: str | URL, **kwargs: Any) -> Iterator[Response]:
        """``request(..., stream=True)`` as a context manager that closes the response."""
        response = self.request(method, url, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def get(self, url: str | URL, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str | URL, **kwargs: Any) -> Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str | URL, body: Body = None, **kwargs: Any) -> Response:
        return self.request("POST", url, body=body, **kwargs)

    def put(self, url: str | URL, body: Body = None, **kwargs: Any) -> Response:
        return self.request("PUT", url, body=body, **kwargs)

    def delete(self, url: str | URL, **kwargs: Any) -> Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _head_fields(self, method: str, url: URL, user: Headers, body: _PreparedBody,
                     credentials: bool) -> tuple[tuple[str, str], ...]:
        # Memoised: a client usually repeats the same few request heads, and building and
        # validating them is a noticeable part of a small request's cost.
        key = (method, url.host_header, url.userinfo, user, body.length, body.present,
               credentials)
        fields = self._fields_cache.get(key)
        if fields is None:
            if len(self._fields_cache) >= 256:
                self._fields_cache.clear()
            fields = self._fields_cache[key] = self._build_head_fields(
                method, url, user, body, credentials)
        return fields

    def _build_head_fields(self, method: str, url: URL, user: Headers, body: _PreparedBody,
                           credentials: bool) -> tuple[tuple[str, str], ...]:
        fields: list[tuple[str, str]] = []
        names: set[str] = set()
        for key, value in (*self._headers.fields, *user.fields):
            fields.append((key, value))
            names.add(key.lower())
        if "host" not in names:
            fields.insert(0, ("Host", url.host_header))
        for key, value in (("User-Agent", self._user_agent), ("Accept", "*/*"),
                           ("Accept-Encoding", "identity")):
            if key.lower() not in names:
                fields.append((key, value))
        if credentials and url.userinfo and "authorization" not in names:
            token = base64.b64encode(url.userinfo.encode("utf-8")).decode("ascii")
            fields.append(("Authorization", f"Basic {token}"))
        if "content-length" not in names and "transfer-encoding" not in names:
            if body.length is not None:
                fields.append(("Content-Length", str(body.length)))
            elif body.present:
                fields.append(("Transfer-Encoding", "chunked"))
            elif method in ("POST", "PUT", "PATCH"):
                fields.append(("Content-Length", "0"))
        return tuple(fields)

    def _exchange(self, method: str, url: URL, user: Headers, body: _PreparedBody,
                  limits: Timeouts, deadline: float | None, cap: int | None,
                  credentials: bool) -> Response:
        fields = self._head_fields(method, url, user, body, credentials)
        while True:
            conn, reused = self._pool.acquire(url, self._connect_timeout(limits, deadline),
                                              replayable=body.replayable)
            conn.begin(read_timeout=limits.read, deadline=deadline, total=limits.total)
            self.stats.requests += 1
            if self.on_request is not None:
                self.on_request(method, url, fields, reused)
            try:
                try:
                    conn.send_request(method, url.target, fields, body.source())
                except ConnectionClosed as send_error:
                    if reused and not conn.response_started and body.replayable:
                        raise  # a stale pooled connection: retried below
                    head = self._early_response(conn, send_error)
                else:
                    head = conn.receive_head()
            except ConnectionClosed:
                conn.close()
                if reused and not conn.response_started and body.replayable:
                    self.stats.retries += 1
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            response = Response(
                status=head.status_code, reason=head.reason, http_version=head.http_version,
                raw_headers=conn.head_items, url=url, method=method, conn=conn,
                release=self._pool.release, max_body=cap,
                informational=tuple(conn.interim))
            if self.on_response is not None:
                self.on_response(response)
            return response

    @staticmethod
    def _early_response(conn: HTTPConnection, send_error: ConnectionClosed) -> Any:
        """The response a server sent before it stopped reading our body, if any."""
        try:
            return conn.receive_head()
        except HTTPError:
            conn.close()
            raise send_error from None

    def _connect_timeout(self, limits: Timeouts, deadline: float | None) -> float | None:
        timeout = limits.connect
        if deadline is not None:
            remaining = max(deadline - self._clock(), 0.001)
            timeout = remaining if timeout is None else min(timeout, remaining)
        return timeout

    @staticmethod
    def _drain(response: Response) -> None:
        """Read a redirect's small body so its connection can be reused; else close it."""
        length = response.expected_length
        if length is not None and length <= DRAIN_LIMIT:
            with contextlib.suppress(HTTPError):
                response.read()
        response.close()


def fetch(url: str, **kwargs: Any) -> Response:
    """One GET with a throwaway client (convenience for scripts)."""
    with Client(**kwargs) as client:
        return client.get(url)
