"""The errors :mod:`vipernet.http` raises, all rooted in :class:`HTTPError`.

Each class says who is to blame: the peer broke HTTP (:class:`ProtocolError` and its
children), the network failed (:class:`TransportError`), a limit we set was hit
(:class:`Timeout`, :class:`ResponseTooLarge`, :class:`TooManyRedirects`), or the caller asked
for something impossible (:class:`InvalidURL`, :class:`RequestBodyNotReplayable`).  The CLI
maps each class to one curl-compatible exit code (see ``docs/http.md``).
"""

from __future__ import annotations

from vipernet import errors as _root

# Bytes from the peer shown in a message: at most this many, the rest elided.
QUOTE_LIMIT = 64
_ESCAPES = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x22: '\\"', 0x5C: "\\\\"}


def quote_bytes(data: bytes, limit: int = QUOTE_LIMIT) -> str:
    """``data`` as a double-quoted, printable string: ``"zz\\x00"``, never a Python repr.

    Printable ASCII stays as it is; CR, LF, TAB, quote and backslash get C escapes and
    every other byte ``\\xNN``, so a hostile peer cannot put control characters on the
    user's terminal.  Past ``limit`` bytes the text ends in ``...`` and the full length.
    """
    shown = bytes(data[:limit])
    text = "".join(_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
                   for b in shown)
    more = f"... ({len(data)} bytes)" if len(data) > limit else ""
    return f'"{text}"{more}'


class HTTPError(_root.VipernetError):
    """Base class for every error the HTTP client raises on purpose."""


class InvalidURL(HTTPError, _root.UsageError):
    """The URL cannot be fetched: unparsable, an unsupported scheme or no host."""


class InvalidRequest(HTTPError, _root.UsageError):
    """The request cannot be sent as given (a bad header name or value, a bad method)."""


class RequestBodyNotReplayable(HTTPError, _root.UsageError):
    """A redirect or retry needs the request body again, but it was a one-shot stream."""


class TransportError(HTTPError):
    """The connection failed underneath HTTP (resolve, connect, TLS, reset, EOF)."""


class ResolveError(TransportError):
    """The host name could not be resolved to an address."""


class ConnectError(TransportError):
    """The TCP connection could not be established."""


class TLSError(TransportError):
    """The TLS handshake or a TLS record failed (certificate, alert, ...).

    ``certificate`` is true when the server's certificate was refused (curl's exit 60).
    """

    def __init__(self, message: str, *, certificate: bool = False) -> None:
        super().__init__(message)
        self.certificate = certificate


class ConnectionClosed(TransportError):
    """The peer closed or reset the connection before the response head was complete."""


class Timeout(HTTPError):
    """A deadline passed.  ``phase`` is ``"connect"``, ``"read"``, ``"write"`` or ``"total"``."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"{phase} timeout after {seconds:g} s")
        self.phase = phase
        self.seconds = seconds


class ProtocolError(HTTPError, _root.ProtocolError):
    """The server's response breaks HTTP/1.1 (malformed head, conflicting lengths, ...)."""


class MalformedChunk(ProtocolError):
    """A chunked body broke its own framing: a chunk-size line that is not hex, chunk data
    not followed by CRLF, a size line or trailer too long.  ``data`` is the offending bytes
    (empty when there are none to show).  curl reports this as a receive failure (56).
    """

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


class HeadersTooLarge(ProtocolError):
    """The response head (status line plus header fields) is over the configured cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response head larger than {limit} bytes")
        self.limit = limit


class ResponseTooLarge(HTTPError):
    """The response body is over the caller's ``max_body_size``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit


class IncompleteBody(ProtocolError):
    """The connection ended before the whole body arrived.

    ``received`` bytes of body were delivered; ``expected`` is the announced length, or None
    for a chunked body whose terminating chunk never came.
    """

    def __init__(self, received: int, expected: int | None) -> None:
        want = f"of {expected}" if expected is not None else "of a chunked body"
        super().__init__(f"connection closed after {received} bytes {want}")
        self.received = received
        self.expected = expected


class TooManyRedirects(HTTPError):
    """More than ``max_redirects`` redirects were followed (a loop, most likely)."""

    def __init__(self, limit: int, url: str) -> None:
        super().__init__(f"more than {limit} redirects (last location {url})")
        self.limit = limit
        self.url = url
