"""vipernet.http: an HTTP/1.1 client over any stream socket, https via ``vipernet.tls``.

Message framing is done by ``h11``; this package adds the connection handling around it:
a keep-alive pool (:class:`Client`, counters in ``Client.stats``), request bodies from
bytes, files or iterators, streaming responses (:meth:`Response.iter_bytes`,
:meth:`Response.write_to`), redirects, connect/read/total timeouts and a typed error tree
rooted in :class:`HTTPError`.  The socket comes from an injected ``connect(host, port,
timeout)`` callable (default: the CLI transport, netd unless ``VIPERNET_TRANSPORT=os``).
See ``docs/http.md``.
"""

from vipernet.http.client import USER_AGENT, Client, fetch
from vipernet.http.errors import (
    ConnectError,
    ConnectionClosed,
    HeadersTooLarge,
    HTTPError,
    IncompleteBody,
    InvalidRequest,
    InvalidURL,
    MalformedChunk,
    ProtocolError,
    RequestBodyNotReplayable,
    ResolveError,
    ResponseTooLarge,
    Timeout,
    TLSError,
    TooManyRedirects,
    TransportError,
)
from vipernet.http.models import URL, Headers, InterimResponse, PoolStats, Timeouts
from vipernet.http.response import Response, StatusError

__all__ = [
    "URL",
    "USER_AGENT",
    "Client",
    "ConnectError",
    "ConnectionClosed",
    "HTTPError",
    "Headers",
    "HeadersTooLarge",
    "IncompleteBody",
    "InterimResponse",
    "InvalidRequest",
    "InvalidURL",
    "MalformedChunk",
    "PoolStats",
    "ProtocolError",
    "RequestBodyNotReplayable",
    "ResolveError",
    "Response",
    "ResponseTooLarge",
    "StatusError",
    "TLSError",
    "Timeout",
    "Timeouts",
    "TooManyRedirects",
    "TransportError",
    "fetch",
]
