"""IPv4 receive-side reassembly (RFC 791) with bounded memory and safe overlaps (RFC 5722).

Fragments are keyed by (source, destination, protocol, identification).  What we hold is
capped three ways: ``reassembly_max_datagrams`` datagrams and ``reassembly_max_bytes``
payload bytes in total (the oldest datagram is evicted to make room, as Linux's frag
evictor does), and ``reassembly_max_fragments`` pieces per datagram (bounding the overlap
checks).  A datagram may not exceed 65535 bytes.

Overlaps, as Linux since the FragmentSmack fixes (4.19, "ip: discard IPv4 datagrams with
overlapping segments") and as RFC 5722 requires for IPv6: an exact duplicate of a
fragment we hold (same offset, same length, same bytes -- a duplicated frame is common on
real links) is dropped and the train kept (``ipv4.reasm.duplicate``); *any* other overlap,
even with identical bytes, drops the whole datagram (``ipv4.reasm.overlap_drop``, or
``ipv4.reasm.conflicting_overlap`` when the bytes differ).  No legitimate sender re-cuts a
datagram differently, and accepting overlaps is what teardrop-style and
overlapping-rewrite attacks rely on.  A dropped datagram's key stays poisoned until the
timeout, so later pieces cannot revive it.  Every outcome is counted under
``ipv4.reasm.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.wire.ipv4 import MAX_PACKET_LENGTH, IPv4Header

_Key = tuple[IPv4Address, IPv4Address, int, int]


@dataclass(slots=True)
class _Datagram:
    deadline: float
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, data)
    size: int = 0  # bytes held
    total: int | None = None  # payload length, known once the last fragment arrived
    first: IPv4Header | None = None  # header of the offset-0 fragment
    poisoned: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiredDatagram:
    """A datagram that timed out; with its first fragment we owe an ICMP time exceeded."""

    header: IPv4Header | None  # the offset-0 fragment's header, if it came
    head: bytes  # the start of its payload (for the ICMP quote)


class Reassembler:
    """Collects fragments; :meth:`add` returns the whole datagram once it is complete."""

    __slots__ = ("_config", "_counters", "_datagrams", "_held")

    def __init__(self, config: StackConfig, counters: Counters) -> None:
        self._config = config
        self._counters = counters
        self._datagrams: dict[_Key, _Datagram] = {}  # insertion order = age
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._datagrams)

    def add(self, header: IPv4Header, payload: bytes | memoryview, now: float
            ) -> tuple[IPv4Header, bytes] | None:
        count = self._counters.inc
        key = (header.src, header.dst, int(header.proto), header.ident)
        offset = header.fragment_offset
        end = offset + len(payload)
        count("ipv4.reasm.fragments")
        if header.more_fragments and len(payload) % 8:
            count("ipv4.reasm.bad_length")  # only the last fragment may be ragged
            return None
        if end + header.header_length > MAX_PACKET_LENGTH:
            count("ipv4.reasm.too_big")
            self._drop(key)
            return None
        dgram = self._datagrams.get(key)
        if dgram is None:
            dgram = self._make_room_and_create(key, now)
        if dgram.poisoned:
            count("ipv4.reasm.poisoned_drop")
            return None
        if not header.more_fragments:
            if dgram.total is not None and dgram.total != end:
                return self._poison(dgram, "ipv4.reasm.conflicting_end")
            dgram.total = end
        if dgram.total is not None and end > dgram.total:
            return self._poison(dgram, "ipv4.reasm.beyond_end")
        data = bytes(payload)
        # Overlap checks against every piece held (bounded by max_fragments).
        for p_off, p_data in dgram.pieces:
            lo = max(offset, p_off)
            hi = min(end, p_off + len(p_data))
            if lo >= hi:
                continue
            if data[lo - offset:hi - offset] != p_data[lo - p_off:hi - p_off]:
                return self._poison(dgram, "ipv4.reasm.conflicting_overlap")
            if offset == p_off and end == p_off + len(p_data):
                count("ipv4.reasm.duplicate")
                return None  # the same fragment again: nothing new
            return self._poison(dgram, "ipv4.reasm.overlap_drop")
        if len(dgram.pieces) >= self._config.reassembly_max_fragments:
            return self._poison(dgram, "ipv4.reasm.too_many_fragments")
        if self._held + len(data) > self._config.reassembly_max_bytes:
            self._evict_oldest(besides=key, need=len(data))
            if self._held + len(data) > self._config.reassembly_max_bytes:
                count("ipv4.reasm.memory_full")
                self._drop(key)
                return None
        dgram.pieces.append((offset, data))
        dgram.size += len(data)
        self._held += len(data)
        if offset == 0:
            dgram.first = header
        if dgram.total is None or dgram.first is None:
            return None
        return self._try_complete(key, dgram)

    def _try_complete(self, key: _Key, dgram: _Datagram) -> tuple[IPv4Header, bytes] | None:
        assert dgram.total is not None and dgram.first is not None
        covered = 0
        for p_off, p_data in sorted(dgram.pieces, key=lambda p: p[0]):
            if p_off > covered:
                return None  # a hole remains
            covered = max(covered, p_off + len(p_data))
        if covered < dgram.total:
            return None
        out = bytearray(dgram.total)
        for p_off, p_data in dgram.pieces:
            out[p_off:p_off + len(p_data)] = p_data
        self._drop(key)
        self._counters.inc("ipv4.reasm.complete")
        header = replace(dgram.first, more_fragments=False, fragment_offset=0,
                         total_length=dgram.first.header_length + dgram.total)
        return header, bytes(out)

    def _poison(self, dgram: _Datagram, reason: str) -> tuple[IPv4Header, bytes] | None:
        self._counters.inc(reason)
        self._held -= dgram.size
        dgram.pieces.clear()
        dgram.size = 0
        dgram.poisoned = True
        return None

    def _make_room_and_create(self, key: _Key, now: float) -> _Datagram:
        if len(self._datagrams) >= self._config.reassembly_max_datagrams:
            self._evict_oldest(besides=key, need=0, one=True)
        dgram = _Datagram(deadline=now + self._config.reassembly_timeout)
        self._datagrams[key] = dgram
        return dgram

    def _evict_oldest(self, *, besides: _Key, need: int, one: bool = False) -> None:
        limit = self._config.reassembly_max_bytes
        for key in list(self._datagrams):
            if key == besides:
                continue
            if not one and self._held + need <= limit:
                return
            self._drop(key)
            self._counters.inc("ipv4.reasm.evicted")
            if one:
                return

    def _drop(self, key: _Key) -> None:
        dgram = self._datagrams.pop(key, None)
        if dgram is not None:
            self._held -= dgram.size

    def poll(self, now: float) -> list[ExpiredDatagram]:
        expired: list[ExpiredDatagram] = []
        for key, dgram in list(self._datagrams.items()):
            if now < dgram.deadline:
                continue
            head = b""
            if dgram.first is not None and not dgram.poisoned:
                head = next((d for o, d in dgram.pieces if o == 0), b"")
                self._counters.inc("ipv4.reasm.timeout")
            elif not dgram.poisoned:
                self._counters.inc("ipv4.reasm.timeout")
            expired.append(ExpiredDatagram(
                header=None if dgram.poisoned else dgram.first, head=head[:8]))
            self._drop(key)
        return expired

    def next_deadline(self) -> float | None:
        if not self._datagrams:
            return None
        # Insertion order is creation order and every datagram gets the same timeout.
        return next(iter(self._datagrams.values())).deadline
