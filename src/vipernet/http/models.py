"""The values the HTTP client passes around: URLs, header lists, 1xx heads, timeouts,
counters.

All are frozen, slotted, keyword-only dataclasses except :class:`PoolStats`, which is the
client's live counter set (read it, or take a :meth:`PoolStats.snapshot`).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterable, Iterator

from vipernet.http.errors import InvalidURL

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class URL:
    """An absolute http(s) URL split into the parts a request needs."""

    scheme: str  # "http" or "https"
    host: str  # lower-case; IPv6 literals without brackets
    port: int
    target: str  # path and query, as sent on the request line ("/" at least)
    userinfo: str = ""  # "user:password" if the URL carried one (sent as Basic auth)

    @classmethod
    def parse(cls, text: str) -> URL:
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"{text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidURL(f"{text!r}: scheme must be http or https, not {parts.scheme!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidURL(f"{text!r}: no host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise InvalidURL(f"{text!r}: bad host name: {exc}") from None
        if any(ch in host for ch in " \r\n\t/\\@"):
            raise InvalidURL(f"{text!r}: bad host name")
        # Quote what is not allowed on a request line but keep what is already escaped.
        path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        query = urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        target = path + ("?" + query if query else "")
        userinfo = ""
        if parts.username is not None:
            userinfo = urllib.parse.unquote(parts.username)
            if parts.password is not None:
                userinfo += ":" + urllib.parse.unquote(parts.password)
        return cls(scheme=scheme, host=host,
                   port=port if port is not None else DEFAULT_PORTS[scheme], target=target,
                   userinfo=userinfo)

    @property
    def origin(self) -> tuple[str, str, int]:
        """What the pool keys connections by, and what decides "cross-host" for redirects."""
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS[self.scheme]:
            host += f":{self.port}"
        return host

    def join(self, location: str) -> URL:
        """Resolve a ``Location`` header value against this URL (RFC 3986 section 5)."""
        return URL.parse(urllib.parse.urljoin(str(self), location.strip()))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    """An ordered list of header fields; name lookups ignore case, duplicates are kept."""

    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]] | dict[str, str] | Headers | None) -> Headers:
        if items is None:
            return cls()
        if isinstance(items, Headers):
            return items
        pairs = items.items() if isinstance(items, dict) else items
        return cls(fields=tuple((str(k), str(v)) for k, v in pairs))

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        # h11 hands names lower-cased; values are opaque octets, decoded losslessly.
        return cls(fields=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        low = name.lower()
        for key, value in self.fields:
            if key.lower() == low:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [value for key, value in self.fields if key.lower() == low]

    def without(self, *names: str) -> Headers:
        drop = {n.lower() for n in names}
        return Headers(fields=tuple(f for f in self.fields if f[0].lower() not in drop))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InterimResponse:
    """A 1xx head (100 Continue, 103 Early Hints, ...) that came before the final response.

    Kept so tools can show it (``vipernet fetch -i`` prints it as curl does); it never
    changes the final response.
    """

    status: int
    reason: str
    http_version: str
    headers: Headers


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds allowed for each phase; None means no limit for that phase.

    ``connect`` bounds the TCP (and TLS) handshake, ``read`` bounds every wait for bytes
    from the server (and every send), ``total`` bounds the whole exchange including
    redirects and reading the body, so a server trickling one byte a second cannot keep a
    request alive forever.
    """

    connect: float | None = 10.0
    read: float | None = 30.0
    total: float | None = None


@dataclasses.dataclass(slots=True)
class PoolStats:
    """Live counters of the client's connection pool."""

    connections_opened: int = 0
    connections_reused: int = 0
    requests: int = 0
    retries: int = 0  # requests resent on a fresh connection after a stale pooled one failed
    redirects: int = 0

    def snapshot(self) -> PoolStats:
        return dataclasses.replace(self)
