"""A response whose body is read on demand, so a download never has to fit in memory.

``Client.request`` returns a :class:`Response` with the body already read; ``Client.stream``
returns one whose body is still on the wire: iterate :meth:`Response.iter_bytes`, fill your
own buffer with :meth:`Response.readinto`, or copy it to a file (or a descriptor) with
:meth:`Response.write_to`.  Reading the body to its end hands the connection back to the
pool for reuse; closing a response early closes its connection instead.

``readinto`` is the fast path: for a Content-Length body the bytes go from the socket
straight into the caller's buffer (``recv_into``), past h11 (see ``connection.py``);
``write_to`` is ``readinto`` into one reusable buffer plus writes of ``memoryview`` slices
of it, so a download is one copy in and one write out per piece.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Protocol

from vipernet.http.connection import HTTPConnection
from vipernet.http.errors import HTTPError, ResponseTooLarge
from vipernet.http.models import URL, Headers, InterimResponse

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


# write_to's buffer: one readinto (one recv_into on the fast path) per this many bytes
COPY_BUFFER = 1024 * 1024


class Writable(Protocol):
    """Where :meth:`Response.write_to` can write: anything with ``write(bytes-like)``.

    It must not keep the object it is given: the buffer behind it is reused.  A returned
    int less than the length means a partial write (the rest is written next); None or
    anything else means all of it was taken.
    """

    def write(self, data: memoryview, /) -> object: ...


class StatusError(HTTPError):
    """Raised by :meth:`Response.raise_for_status` for a 4xx or 5xx status."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.status} {response.reason} for {response.url}")
        self.response = response


class Response:
    """Status, headers and a body stream; a context manager that releases the connection."""

    __slots__ = ("_conn", "_content", "_done", "_expected", "_headers", "_max_body", "_position",
                 "_raw_headers", "_raw_reason", "_raw_version", "_release", "bytes_read",
                 "history", "informational", "method", "status", "url")

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
        self._position = 0  # how much of a kept ``_content`` readinto() has handed out
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
        """Yield the body in the pieces it arrives in (up to 1 MiB each; bytes-like)."""
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
        if self.bytes_read:
            # what is left on the wire is not the whole body any more
            raise HTTPError("part of the response body was streamed already; it was not kept")
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

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read the next body bytes into ``buffer`` (any writable bytes-like object).

        Returns how many bytes were put at its start, and 0 once the whole body has been
        read (or if ``buffer`` is empty).  Like ``io.RawIOBase.readinto`` it may return
        fewer bytes than fit.  For a Content-Length body the bytes after those h11 had
        buffered with the head are received straight into ``buffer`` (``recv_into``, at
        most the bytes still announced); a chunked or close-delimited body goes through h11
        and is copied in.  Errors are those of :meth:`read`: a body cut short raises
        :class:`IncompleteBody`.  The connection returns to the pool as soon as the last
        byte arrived.  Over ``vipernet.tls`` the decrypted bytes are copied in from the TLS
        layer's buffer (its ``recv_into``); the h11 copies are skipped all the same.
        """
        view = memoryview(buffer)
        if view.readonly:
            raise TypeError("readinto() needs a writable buffer")
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if not view.nbytes:
            return 0
        if self._content is not None:  # the body is in memory (read(), or already streamed)
            start = self._position
            piece = self._content[start:start + len(view)]
            view[:len(piece)] = piece
            self._position = start + len(piece)
            return len(piece)
        conn = self._conn
        if conn is None:
            raise HTTPError("the response was closed before its body was read")
        try:
            n = conn.readinto_body(view)
            if n:
                self.bytes_read += n
                if self._max_body is not None and self.bytes_read > self._max_body:
                    raise ResponseTooLarge(self._max_body)
        except BaseException:
            self.close()  # an unfinished body leaves the connection unusable
            raise
        if conn.body_done:
            self._body_ended(conn)
            self._content = b""  # consumed: later reads give nothing
        return n

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

    def write_to(self, out: BinaryIO | Writable | int,
                 progress: Callable[[int], None] | None = None, *,
                 buffer_size: int = COPY_BUFFER) -> int:
        """Copy the body into ``out`` as it arrives; returns the number of bytes written.

        ``out`` is a binary file (or anything :class:`Writable`) or a file descriptor
        (written with ``os.write``).  The body is read with :meth:`readinto` into one
        ``buffer_size`` buffer and written as ``memoryview`` slices of it: no per-piece
        ``bytes`` objects, partial writes continued.  ``progress(n)`` is called after each
        piece is written.
        """
        write: Callable[[memoryview], object]
        if isinstance(out, int):
            fd = out
            write = lambda data: os.write(fd, data)  # noqa: E731
        else:
            write = out.write
        view = memoryview(bytearray(max(buffer_size, 1)))
        total = 0
        try:
            while n := self.readinto(view):
                piece = view[:n]
                while True:
                    written = write(piece)
                    if not isinstance(written, int) or written >= len(piece):
                        break
                    if written <= 0:
                        raise OSError(f"write of {len(piece)} bytes wrote nothing")
                    piece = piece[written:]  # a partial write: the rest goes next
                total += n
                if progress is not None:
                    progress(n)
        except BaseException:
            self.close()
            raise
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
