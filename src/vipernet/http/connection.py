"""One HTTP/1.1 connection: a stream socket plus an ``h11`` state machine.

h11 does all message framing (request serialisation, status line and header parsing,
Content-Length / chunked / close-delimited bodies, trailers); this class only moves bytes
between it and the socket, enforces the deadlines and caps, and turns h11's complaints into
our typed errors.  The socket is anything with ``sendall``, ``recv`` and ``settimeout``
(a stdlib socket, a vipernet socket, or a ``vipernet.tls`` connection); ``recv_into`` is
used when it has one.

Why it is shaped like this (speed): a body is read with large ``recv`` calls (1 MiB) so h11
sees few, large events; the request head and a small body go out in a single ``sendall``
(no Nagle stall between them); timeouts are re-armed only when they change.

The identity fast path: once h11 has parsed the head of a Content-Length response and
handed over the body bytes it already had buffered, it asks for more data (NEED_DATA with
an empty buffer).  From there the rest of the body is read from the socket directly —
``recv_into`` the caller's buffer (:meth:`HTTPConnection.readinto_body`) or one ``recv`` per
piece (:meth:`HTTPConnection.read_body`) — never more than the bytes still announced, so
bytes past the Content-Length stay on the socket and are not body.  h11 never sees those
bytes; when the last one arrives the exchange ends as h11's would: if both sides would be
DONE (keep-alive), a fresh ``h11.Connection`` takes the old one's place, exactly the state
``start_next_cycle`` leaves (both IDLE, nothing buffered); otherwise the old one stays,
its peer side short of DONE, so :attr:`HTTPConnection.reusable` is false and the pool
closes the connection.  A body that ends early raises :class:`IncompleteBody`, as on the
h11 path.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import h11

from vipernet.errors import VipernetError
from vipernet.http.errors import (
    ConnectionClosed,
    HeadersTooLarge,
    HTTPError,
    IncompleteBody,
    InvalidRequest,
    MalformedChunk,
    ProtocolError,
    Timeout,
    TLSError,
    quote_bytes,
)
from vipernet.http.models import Headers, InterimResponse

RECV_SIZE = 256 * 1024  # reads while waiting for a response head
BODY_RECV_SIZE = 1024 * 1024  # reads of a body (h11 path, and recv() on the fast path)
_END = h11.EndOfMessage()  # immutable: one instance serves every request
# A request head and body up to this size are joined into one write.
COALESCE_LIMIT = 64 * 1024
# A server may send any number of 1xx responses before the final one; we accept this many.
MAX_INFORMATIONAL = 16
_UNSET = object()
# h11 puts the peer's bytes into its messages as Python reprs ("bytearray(b'zz\\r\\n')");
# these find them so they can be shown as quote_bytes() text instead.
_BYTES_LITERAL = r"b'(?:[^'\\]|\\.)*'" + "|" + r'b"(?:[^"\\]|\\.)*"'
_BYTES_REPR = re.compile(rf"bytearray\(({_BYTES_LITERAL})\)|({_BYTES_LITERAL})")
_CHUNK_HEADER = re.compile(rf"illegal chunk header: (?:{_BYTES_REPR.pattern})", re.S)
_CHUNK_FOOTER = re.compile(rf"malformed chunk footer: (?:{_BYTES_REPR.pattern}) \(expected",
                           re.S)


def _literal_bytes(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        value = ast.literal_eval(text)  # only ever a bytes literal, matched above
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, bytes) else None


def readable_h11_error(text: str) -> str:
    """h11's message with every bytes repr in it shown as a quoted, escaped string."""
    def quote(match: re.Match[str]) -> str:
        data = _literal_bytes(match.group(1) or match.group(2))
        return match.group(0) if data is None else quote_bytes(data)
    return _BYTES_REPR.sub(quote, text)


def chunk_error(text: str, max_line: int) -> MalformedChunk | None:
    """The :class:`MalformedChunk` an h11 complaint about a chunked body stands for, if any."""
    if text == "Receive buffer too long":  # in a body only a chunk line can be incomplete
        return MalformedChunk(f"chunk-size line or trailer longer than {max_line} bytes")
    header = _CHUNK_HEADER.match(text)
    if header is not None:
        data = _literal_bytes(header.group(1) or header.group(2))
        if data is not None:
            line = data.removesuffix(b"\r\n")  # the line's end is not the problem
            return MalformedChunk(f"illegal chunk header {quote_bytes(line)}", line)
    footer = _CHUNK_FOOTER.match(text)
    if footer is not None:
        data = _literal_bytes(footer.group(1) or footer.group(2))
        if data is not None:
            return MalformedChunk(
                f"chunk data not followed by CRLF: got {quote_bytes(data)}", data)
    if "chunk" in text:
        return MalformedChunk(f"malformed chunked body: {readable_h11_error(text)}")
    return None


@functools.lru_cache(maxsize=256)
def request_event(method: str, target: str, headers: tuple[tuple[str, str], ...]) -> h11.Request:
    """The h11 event for a request head; h11 events are immutable, so repeats share one.

    Constructing the event is where h11 validates every header, a fifth of its per-request
    cost; a client fetching the same URL over and over pays it once.
    """
    return h11.Request(method=method, target=target, headers=list(headers))


class StreamSocket(Protocol):
    """The part of the socket interface the HTTP client uses."""

    def sendall(self, data: bytes, /) -> Any: ...
    def recv(self, bufsize: int, /) -> bytes: ...
    # optional: ``recv_into(buffer, nbytes) -> int`` is used when present
    def settimeout(self, value: float | None, /) -> None: ...
    def close(self) -> None: ...


class HTTPConnection:
    """A connection that carries one request/response exchange at a time."""

    def __init__(self, sock: StreamSocket, *, origin: tuple[str, str, int],
                 max_header_bytes: int = 64 * 1024, recv_size: int = RECV_SIZE,
                 body_recv_size: int = BODY_RECV_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.origin = origin
        self.max_header_bytes = max_header_bytes
        self.requests_served = 0
        self.closed = False
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self._recv_size = recv_size
        self._body_recv_size = body_recv_size
        # None: copy out of recv() instead (a socket-like object without recv_into)
        self._recv_into: Callable[[memoryview, int], int] | None = getattr(
            sock, "recv_into", None)
        self._clock = clock
        self._armed: object = _UNSET  # the timeout currently set on the socket
        self._read_timeout: float | None = None
        self._deadline: float | None = None
        self._total: float | None = None
        self._eof = False
        self._bytes_in = 0  # bytes received for the current exchange
        self.body_received = 0
        self.expected_length: int | None = None
        self.body_done = False  # the current response's body arrived whole
        self._raw_left = 0  # > 0: identity body bytes still on the socket, h11 bypassed
        self._leftover: memoryview | None = None  # h11 body bytes readinto had no room for
        self.head_items: list[tuple[bytes, bytes]] = []
        self.interim: list[InterimResponse] = []  # the 1xx heads before the current head
        self.idle_since = 0.0  # clock() when the last exchange ended

    # -- one exchange -----------------------------------------------------------------------

    def begin(self, *, read_timeout: float | None, deadline: float | None,
              total: float | None) -> None:
        """Set the limits for the next exchange (``deadline`` is a ``clock()`` value)."""
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._total = total
        self._bytes_in = 0
        self.body_received = 0
        self.expected_length = None
        self.body_done = False
        self._raw_left = 0
        self._leftover = None
        self.interim = []

    @property
    def response_started(self) -> bool:
        """Whether any byte of a response arrived (a failed resend must not be retried)."""
        return self._bytes_in > 0

    def send_request(self, method: str, target: str, headers: tuple[tuple[str, str], ...],
                     body: bytes | Iterable[bytes] | None) -> None:
        """Send the request head and its body (bytes, or an iterable of chunks)."""
        try:
            head = self._h11.send(request_event(method, target, headers)) or b""
        except (h11.LocalProtocolError, UnicodeError, TypeError, ValueError) as exc:
            # h11 refuses CR/LF and other illegal bytes; non-ASCII text fails to encode
            raise InvalidRequest(f"cannot send this request: {exc}") from None
        if body is None:
            self._sendall(head + self._end())
        elif isinstance(body, bytes | bytearray | memoryview):
            body = bytes(body) if not isinstance(body, bytes) else body
            if len(body) <= COALESCE_LIMIT:
                self._sendall(head + self._data(body) + self._end())
            else:
                self._sendall(head)
                self._sendall(self._data(body))
                self._sendall(self._end())
        else:
            self._sendall(head)
            for chunk in body:
                if chunk:
                    for piece in self._data_pieces(bytes(chunk) if not isinstance(chunk, bytes)
                                                   else chunk):
                        self._sendall(piece)
            self._sendall(self._end())

    def _data(self, data: bytes) -> bytes:
        return b"".join(self._data_pieces(data))

    def _data_pieces(self, data: bytes) -> list[bytes]:
        try:
            pieces = self._h11.send_with_data_passthrough(h11.Data(data=data))
        except h11.LocalProtocolError as exc:
            # e.g. more bytes than the Content-Length the caller promised
            raise InvalidRequest(f"request body does not match its framing: {exc}") from None
        return [bytes(p) for p in pieces] if pieces else []

    def _end(self) -> bytes:
        try:
            out = self._h11.send(_END)
        except h11.LocalProtocolError as exc:
            raise InvalidRequest(f"request body shorter than its Content-Length: {exc}") from None
        return out or b""

    def receive_head(self) -> h11.Response:
        """Wait for the final response head; 1xx interim heads go to :attr:`interim`."""
        informational = 0
        if not self._h11.trailing_data[0]:
            self._recv()  # nothing buffered: asking h11 first would only say NEED_DATA
        while True:
            event = self._next_event(in_body=False)
            if event is h11.NEED_DATA:
                self._recv()
                continue
            if isinstance(event, h11.InformationalResponse):
                informational += 1
                if informational > MAX_INFORMATIONAL:
                    raise ProtocolError(f"more than {MAX_INFORMATIONAL} 1xx responses")
                self._check_head_size(event)
                self.interim.append(InterimResponse(
                    status=event.status_code, reason=event.reason.decode("latin-1"),
                    http_version=event.http_version.decode("ascii", "replace"),
                    headers=Headers.from_raw(event.headers.raw_items())))
                continue
            if isinstance(event, h11.Response):
                self._check_head_size(event)
                self._check_framing(event)
                return event
            raise ProtocolError(f"unexpected {type(event).__name__} before the response head")

    def read_body(self) -> bytes | None:
        """The next piece of body (may be a ``bytearray``), or None once the body is complete."""
        if self._raw_left:
            return self._raw_recv()
        if self._leftover is not None:  # only after a readinto_body() with a small buffer
            rest, self._leftover = self._leftover, None
            return bytes(rest)
        if self.body_done:
            return None
        while True:
            event = self._next_event(in_body=True)
            if type(event) is h11.Data:
                data: bytes = event.data
                self.body_received += len(data)
                return data
            if event is h11.NEED_DATA:
                if self._enter_raw():
                    return self._raw_recv()
                self._recv(self._body_recv_size)
                continue
            if type(event) is h11.EndOfMessage:
                self._end_of_message()
                return None
            raise ProtocolError(f"unexpected {type(event).__name__} in the response body")

    def readinto_body(self, view: memoryview) -> int:
        """Put the next body bytes into ``view`` (a non-empty, writable, byte-format view);
        the number of bytes, 0 once the body is complete (see :attr:`body_done`)."""
        if self._raw_left:
            return self._raw_recv_into(view)
        leftover = self._leftover
        if leftover is None:
            if self.body_done:
                return 0
            while True:
                event = self._next_event(in_body=True)
                if type(event) is h11.Data:
                    if not event.data:
                        continue  # 0 must only ever mean the end of the body
                    self.body_received += len(event.data)
                    leftover = memoryview(event.data)
                    break
                if event is h11.NEED_DATA:
                    if self._enter_raw():
                        return self._raw_recv_into(view)
                    self._recv(self._body_recv_size)
                    continue
                if type(event) is h11.EndOfMessage:
                    self._end_of_message()
                    return 0
                raise ProtocolError(f"unexpected {type(event).__name__} in the response body")
        n = min(len(view), len(leftover))
        view[:n] = leftover[:n]
        self._leftover = leftover[n:] if n < len(leftover) else None
        return n

    @property
    def reusable(self) -> bool:
        return not self.closed and self._h11.our_state is h11.IDLE and \
            self._h11.their_state is h11.IDLE

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # closing a broken socket must not mask the real error
            with contextlib.suppress(Exception):
                self.sock.close()

    # -- internals --------------------------------------------------------------------------

    def _end_of_message(self) -> None:
        # Trailer fields (EndOfMessage.headers) are deliberately ignored: nothing we do
        # depends on them and they must not override the head.
        self.body_done = True
        self._finish_exchange()

    def _enter_raw(self) -> bool:
        """On NEED_DATA in a Content-Length body: switch to reading the socket directly.

        NEED_DATA while h11 reads a Content-Length body means its buffer is empty, so every
        body byte still to come is on the socket.  HEAD, 204 and 304 responses never get
        here (h11 ends them without data); a chunked or close-delimited body has no
        ``expected_length`` and stays on h11.
        """
        if self.expected_length is None or self._h11.their_state is not h11.SEND_BODY:
            return False
        left = self.expected_length - self.body_received
        if left <= 0:
            return False
        self._raw_left = left
        return True

    def _raw_recv(self) -> bytes:
        data: bytes = self._receive(self.sock.recv, min(self._raw_left, self._body_recv_size))
        self._raw_got(len(data))
        return data

    def _raw_recv_into(self, view: memoryview) -> int:
        want = min(len(view), self._raw_left)
        if self._recv_into is not None:
            n: int = self._receive(self._recv_into, view, want)
        else:
            data = self._receive(self.sock.recv, want)
            n = len(data)
            view[:n] = data
        self._raw_got(n)
        return n

    def _raw_got(self, n: int) -> None:
        if not n:
            self._eof = True
            self._raw_left = 0
            self.close()
            raise IncompleteBody(self.body_received, self.expected_length)
        self._bytes_in += n
        self.body_received += n
        self._raw_left -= n
        if self._raw_left:
            return
        # The body is whole.  h11 did not see it: end the exchange the way h11 would.
        if self._h11.our_state is h11.DONE:
            # Our request was sent whole and neither side asked to close (h11 turns DONE
            # into MUST_CLOSE for "Connection: close" or HTTP/1.0), so h11 would now go
            # DONE/DONE -> start_next_cycle(): a new machine is that state.
            self._h11 = h11.Connection(h11.CLIENT,
                                       max_incomplete_event_size=self.max_header_bytes)
        # else: the old machine stays with the server side in SEND_BODY, never IDLE, so
        # the connection is not reusable and the pool closes it.
        self._end_of_message()

    def _finish_exchange(self) -> None:
        self.requests_served += 1
        self.idle_since = self._clock()
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()

    def _next_event(self, *, in_body: bool) -> Any:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            self.close()
            text = str(exc)
            if self._eof:
                if in_body:
                    raise IncompleteBody(self.body_received, self.expected_length) from None
                what = "without a response" if self._bytes_in == 0 else "mid-way through the head"
                raise ConnectionClosed(f"server closed the connection {what}") from None
            if in_body:
                bad_chunk = chunk_error(text, self.max_header_bytes)
                if bad_chunk is not None:
                    raise bad_chunk from None
            if text == "Receive buffer too long":
                raise HeadersTooLarge(self.max_header_bytes) from None
            raise ProtocolError(f"malformed response: {readable_h11_error(text)}") from None

    def _check_head_size(self, event: h11.Response | h11.InformationalResponse) -> None:
        # h11 bounds a head that arrives in pieces; one that arrives in a single read is
        # measured here instead, so the cap holds either way.  (Fewer bytes received than
        # the cap cannot make a head over it: skip the count.)
        if self._bytes_in <= self.max_header_bytes:
            return
        size = 16 + len(event.reason) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if size > self.max_header_bytes:
            self.close()
            raise HeadersTooLarge(self.max_header_bytes)

    def _check_framing(self, event: h11.Response) -> None:
        items = event.headers.raw_items()  # one list, names as the server spelled them
        self.head_items = items
        length: bytes | None = None
        chunked = False
        for name, value in items:
            low = name.lower()
            if low == b"content-length":
                length = value
            elif low == b"transfer-encoding":
                chunked = True
        if length is not None and chunked:
            # RFC 9112 section 6.3: such a message "ought to be handled as an error"; it is
            # the classic response-splitting shape, fatal on a reused connection.
            self.close()
            raise ProtocolError("response has both Transfer-Encoding and Content-Length")
        if length is not None:
            self.expected_length = int(length.split(b",")[0])

    def _recv(self, size: int = 0) -> None:
        data: bytes = self._receive(self.sock.recv, size or self._recv_size)
        if not data:
            self._eof = True
        self._bytes_in += len(data)
        self._h11.receive_data(data)

    def _receive(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a socket read) under the read timeout and the total deadline,
        its failures turned into our typed errors."""
        timeout = self._read_timeout
        phase = "read"
        if self._deadline is not None:
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                self.close()
                raise Timeout("total", self._total or 0.0)
            if timeout is None or remaining < timeout:
                timeout, phase = remaining, "total"
        if timeout != self._armed:
            self.sock.settimeout(timeout)
            self._armed = timeout
        try:
            return fn(*args)
        except TimeoutError:
            self.close()
            raise Timeout(phase, (self._total if phase == "total" else timeout) or 0.0) from None
        except OSError as exc:
            self.close()
            raise ConnectionClosed(f"receive failed: {exc}") from None
        except HTTPError:
            raise
        except VipernetError as exc:  # a TLS record error from vipernet.tls
            self.close()
            raise TLSError(f"TLS failure while receiving: {exc}") from None

    def _sendall(self, data: bytes) -> None:
        timeout = self._read_timeout
        if self._deadline is not None:
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                self.close()
                raise Timeout("total", self._total or 0.0)
            timeout = remaining if timeout is None else min(timeout, remaining)
        if timeout != self._armed:
            self.sock.settimeout(timeout)
            self._armed = timeout
        try:
            self.sock.sendall(data)
        except TimeoutError:
            self.close()
            raise Timeout("write", timeout or 0.0) from None
        except OSError as exc:
            # Left open: a server that refuses an upload often answers (413, 401) and
            # closes before reading it all; the caller may still read that early answer.
            raise ConnectionClosed(f"send failed: {exc}") from None
        except HTTPError:
            raise
        except VipernetError as exc:
            self.close()
            raise TLSError(f"TLS failure while sending: {exc}") from None
