"""A bounded TTL cache of answers and of NXDOMAIN (RFC 2308), on an injected clock.

Entries expire at ``stored_at + ttl`` by the caller's clock; nothing here reads time.
The cache holds at most ``max_entries``; when full, the entry that expires first goes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A successful resolution: the addresses of the end of the CNAME chain."""

    name: str  # as asked, lower case, without the trailing dot
    canonical_name: str  # the end of the CNAME chain (== name without CNAMEs)
    rdtype: int  # dns.rdatatype value (1 = A, 28 = AAAA)
    addresses: tuple[str, ...]
    ttl: int  # the smallest TTL along the chain, seconds


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    answer: Answer | None  # None = cached NXDOMAIN


class DnsCache:
    """Answers and negative answers keyed by (name, rdtype)."""

    def __init__(self, max_entries: int = 512, max_ttl: int = 86400) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._entries: dict[tuple[str, int], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, rdtype: int, now: float) -> _Entry | None:
        """The live entry for the key (``entry.answer is None`` means NXDOMAIN), or None."""
        key = (name.lower().rstrip("."), rdtype)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[key]
            return None
        return entry

    def put_answer(self, answer: Answer, now: float) -> None:
        self._put((answer.name, answer.rdtype), answer.ttl, answer, now)

    def put_nxdomain(self, name: str, rdtype: int, ttl: int, now: float) -> None:
        self._put((name.lower().rstrip("."), rdtype), ttl, None, now)

    def clear(self) -> None:
        self._entries.clear()

    def _put(self, key: tuple[str, int], ttl: int, answer: Answer | None, now: float) -> None:
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0 or self.max_entries <= 0:
            return  # TTL 0 means "use once, do not cache" (RFC 1035 3.2.1)
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._evict(now)
        self._entries[key] = _Entry(expires=now + ttl, answer=answer)

    def _evict(self, now: float) -> None:
        expired = [k for k, e in self._entries.items() if now >= e.expires]
        for key in expired:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            soonest = min(self._entries, key=lambda k: self._entries[k].expires)
            del self._entries[soonest]
