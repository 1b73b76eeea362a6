"""A response whose body is read on demand, so a download never has to fit in memory.

``Client.request`` returns a :class:`Response` with the body already read; ``Client.stream``
returns one whose body is still on the wire: iterate :meth:`Response.iter_bytes`, or copy it
to a file with :meth:`Response.write_to`.  Reading the body to its end hands the connection
back to the pool for reuse; closing a response early closes its connection instead.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import BinaryIO

from vipernet.http.connection import HTTPConnection
from vipernet.http.errors import HTTPError, ResponseTooLarge
from vipernet.http.models import URL, Headers, InterimResponse


class StatusError(HTTPError):
    """Raised by :meth:`Response.raise_for_status` for a 4xx or 5xx status."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.status} {response.reason} for {response.url}")
        self.response = response


class Response:
    """Status, headers and a body stream; a context manager that releases the connection."""

    __slots__ = ("_conn", "_content", "_done", "_expected", "_headers", "_max_body", "_raw_headers",
                 "_raw_reason", "_raw_version", "_release", "bytes_read", "history",
                 "informational", "method", "status", "url")

    def __init__(self, *, status: int, reason: bytes, http_version: bytes,
                 raw_headers: Iterable[tuple[bytes, bytes]], url: URL, method: str,
                 conn: HTTPConnection | None, release: Callable[[HTTPConnection], None],
                 max_body: int | None,
                 informational: tuple[InterimResponse, ...] = ()) -> None:
        self.status = status
        # The 1xx heads (100 Continue, 103 Early Hints) the server sent before this one.
        self.informational = informational
        # Decoded on first use: most small responses are never asked for their headers.
        self._raw_reason = reason
        self._raw_version = http_version
        self._raw_headers = raw_headers
        self._headers: Headers | None = None
        self.url = url
        self.method = method
        self.history: list[Response] = []  # the redirect responses that led here, oldest first
        self.bytes_read = 0
        self._conn = conn
        self._release = release
        self._max_body = max_body
        self._content: bytes | None = None
        self._done = False
        self._expected = conn.expected_length if conn is not None else None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers.from_raw(self._raw_headers)
        return self._headers

    @property
    def reason(self) -> str:
        return self._raw_reason.decode("latin-1")

    @property
    def http_version(self) -> str:
        return self._raw_version.decode("ascii", "replace")

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def expected_length(self) -> int | None:
        """The announced Content-Length (None when chunked or close-delimited)."""
        return self._expected

    @property
    def complete(self) -> bool:
        """The whole body has been received."""
        return self._done

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body in the pieces it arrives in (up to 256 KiB each; bytes-like)."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        conn = self._conn
        if conn is None:
            raise HTTPError("the response body was already consumed or the response closed")
        try:
            while (chunk := conn.read_body()) is not None:
                self._count(chunk)
                yield chunk
        except BaseException:
            self.close()  # an unfinished body leaves the connection unusable
            raise
        self._body_ended(conn)
        self._content = b""  # consumed: later iterations yield nothing

    def read(self) -> bytes:
        """The whole body (kept, so calling again returns it again)."""
        if self._content is not None:
            if self._content == b"" and self.bytes_read:
                raise HTTPError("the response body was streamed already; it was not kept")
            return self._content
        conn = self._conn
        if conn is None:
            raise HTTPError("the response was closed before its body was read")
        first: bytes | None = None
        buf: io.BytesIO | None = None  # grows in place; pieces are freed as they are copied
        try:
            while (chunk := conn.read_body()) is not None:
                self._count(chunk)
                if first is None:
                    first = chunk
                    continue
                if buf is None:
                    buf = io.BytesIO()
                    buf.write(first)
                buf.write(chunk)
        except BaseException:
            self.close()
            raise
        self._body_ended(conn)
        body = buf.getvalue() if buf is not None else bytes(first) if first is not None else b""
        self._content = body
        return body

    def _count(self, chunk: bytes) -> None:
        """Account for one piece of body, enforcing ``max_body`` as the bytes arrive."""
        self.bytes_read += len(chunk)
        if self._max_body is not None and self.bytes_read > self._max_body:
            raise ResponseTooLarge(self._max_body)

    def _body_ended(self, conn: HTTPConnection) -> None:
        """The body arrived whole: the connection goes back to the pool for reuse."""
        self._conn = None
        self._done = True
        self._release(conn)

    @property
    def content(self) -> bytes:
        return self.read()

    def text(self, encoding: str | None = None) -> str:
        if encoding is None:
            ctype = self.headers.get("content-type", "") or ""
            encoding = "utf-8"
            for part in ctype.split(";")[1:]:
                key, _, value = part.strip().partition("=")
                if key.lower() == "charset" and value:
                    encoding = value.strip('"')
        return self.read().decode(encoding, errors="replace")

    def write_to(self, out: BinaryIO, progress: Callable[[int], None] | None = None) -> int:
        """Copy the body into ``out`` as it arrives; returns the number of bytes written."""
        total = 0
        for chunk in self.iter_bytes():
            out.write(chunk)
            total += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return total

    def raise_for_status(self) -> Response:
        if self.status >= 400:
            raise StatusError(self)
        return self

    def close(self) -> None:
        """Release the connection: if the body was not fully read, the connection is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            self._release(conn)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} {self.url}>"
