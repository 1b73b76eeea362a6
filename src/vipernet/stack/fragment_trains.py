"""Fragment trains: the bounded, overlap-safe reassembly core IPv4 and IPv6 share.

A *train* is the set of fragments of one datagram, under a key the IP layer chooses
((src, dst, protocol, ident) for IPv4; (src, dst, ident) for IPv6).  The IP layer checks
its own header rules and hands each fragment's offset, "more fragments" flag and bytes here;
what comes back is the datagram's whole payload once every byte from 0 to the end has
arrived.  The rules are the same for both versions, so they live once:

* memory is capped three ways: ``reassembly_max_datagrams`` trains and
  ``reassembly_max_bytes`` payload bytes in total (the oldest train is evicted to make room,
  as Linux's frag evictor does), and ``reassembly_max_fragments`` pieces per train (which
  bounds the overlap checks);
* overlaps, as Linux since the FragmentSmack fixes and as RFC 5722 requires for IPv6: an
  exact duplicate (same offset, length and bytes — a duplicated frame is common on real
  links) is dropped and the train kept (``<prefix>.duplicate``); *any* other overlap, even
  with identical bytes, drops the train (``<prefix>.overlap_drop``, or
  ``<prefix>.conflicting_overlap`` when the bytes differ).  No legitimate sender re-cuts a
  datagram differently, and accepting overlaps is what teardrop-style and overlapping-
  rewrite attacks rely on.  A dropped train's key stays poisoned until its timeout, so
  later pieces cannot revive it;
* each train has its own deadline; :meth:`FragmentTrains.poll` hands back the ones that
  expired with the *first-fragment context* the IP layer stored (its header, for the ICMP
  time-exceeded it owes) and the start of the first fragment's payload.

Every outcome is counted under the prefix given (``ipv4.reasm``, ``ipv6.reasm``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters

First = TypeVar("First")  # what the IP layer keeps from the offset-0 fragment


@dataclass(slots=True)
class _Train(Generic[First]):
    deadline: float
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, data)
    size: int = 0  # bytes held
    total: int | None = None  # payload length, known once the last fragment arrived
    first: First | None = None  # context of the offset-0 fragment
    poisoned: bool = False


@dataclass(frozen=True, slots=True)
class ExpiredTrain(Generic[First]):
    """A train that timed out; with its first fragment the sender is owed an ICMP error."""

    first: First | None  # the offset-0 fragment's context, if it came (None if poisoned)
    head: bytes  # the start of the first fragment's payload


@dataclass(frozen=True, slots=True)
class Completed(Generic[First]):
    first: First  # the offset-0 fragment's context
    payload: bytes  # the whole reassembled payload


class FragmentTrains(Generic[First]):
    """Trains keyed by the IP layer; :meth:`add` returns :class:`Completed` at the end."""

    __slots__ = ("_config", "_count", "_held", "_max_payload", "_prefix", "_trains")

    def __init__(self, config: StackConfig, counters: Counters, *, prefix: str,
                 max_payload: int) -> None:
        self._config = config
        self._count = counters.inc
        self._prefix = prefix
        self._max_payload = max_payload
        self._trains: dict[Hashable, _Train[First]] = {}  # insertion order = age
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._trains)

    def add(self, key: Hashable, offset: int, more: bool, payload: bytes | memoryview,
            first: First, now: float) -> Completed[First] | None:
        """One fragment; ``first`` is kept if ``offset`` is 0.  The caller has counted it
        and checked that a non-final fragment's length is a multiple of 8."""
        count = self._count
        prefix = self._prefix
        end = offset + len(payload)
        if end > self._max_payload:
            count(f"{prefix}.too_big")
            self.discard(key)
            return None
        train = self._trains.get(key)
        if train is None:
            train = self._make_room_and_create(key, now)
        if train.poisoned:
            count(f"{prefix}.poisoned_drop")
            return None
        if not more:
            if train.total is not None and train.total != end:
                self._poison(train, "conflicting_end")
                return None
            train.total = end
        if train.total is not None and end > train.total:
            self._poison(train, "beyond_end")
            return None
        data = bytes(payload)
        for p_off, p_data in train.pieces:  # bounded by max_fragments
            lo = max(offset, p_off)
            hi = min(end, p_off + len(p_data))
            if lo >= hi:
                continue
            if data[lo - offset:hi - offset] != p_data[lo - p_off:hi - p_off]:
                self._poison(train, "conflicting_overlap")
                return None
            if offset == p_off and end == p_off + len(p_data):
                count(f"{prefix}.duplicate")
                return None  # the same fragment again: nothing new
            self._poison(train, "overlap_drop")
            return None
        if len(train.pieces) >= self._config.reassembly_max_fragments:
            self._poison(train, "too_many_fragments")
            return None
        if self._held + len(data) > self._config.reassembly_max_bytes:
            self._evict_oldest(besides=key, need=len(data))
            if self._held + len(data) > self._config.reassembly_max_bytes:
                count(f"{prefix}.memory_full")
                self._drop(key)
                return None
        train.pieces.append((offset, data))
        train.size += len(data)
        self._held += len(data)
        if offset == 0:
            train.first = first
        if train.total is None or train.first is None:
            return None
        return self._try_complete(key, train)

    def _try_complete(self, key: Hashable, train: _Train[First]) -> Completed[First] | None:
        assert train.total is not None and train.first is not None
        covered = 0
        for p_off, p_data in sorted(train.pieces, key=lambda p: p[0]):
            if p_off > covered:
                return None  # a hole remains
            covered = max(covered, p_off + len(p_data))
        if covered < train.total:
            return None
        out = bytearray(train.total)
        for p_off, p_data in train.pieces:
            out[p_off:p_off + len(p_data)] = p_data
        self._drop(key)
        self._count(f"{self._prefix}.complete")
        return Completed(train.first, bytes(out))

    def _poison(self, train: _Train[First], reason: str) -> None:
        self._count(f"{self._prefix}.{reason}")
        self._held -= train.size
        train.pieces.clear()
        train.size = 0
        train.poisoned = True

    def _make_room_and_create(self, key: Hashable, now: float) -> _Train[First]:
        if len(self._trains) >= self._config.reassembly_max_datagrams:
            self._evict_oldest(besides=key, need=0, one=True)
        train: _Train[First] = _Train(deadline=now + self._config.reassembly_timeout)
        self._trains[key] = train
        return train

    def _evict_oldest(self, *, besides: Hashable, need: int, one: bool = False) -> None:
        limit = self._config.reassembly_max_bytes
        for key in list(self._trains):
            if key == besides:
                continue
            if not one and self._held + need <= limit:
                return
            self._drop(key)
            self._count(f"{self._prefix}.evicted")
            if one:
                return

    def discard(self, key: Hashable) -> None:
        """Forget a train (the IP layer found one of its fragments unacceptable)."""
        self._drop(key)

    def _drop(self, key: Hashable) -> None:
        train = self._trains.pop(key, None)
        if train is not None:
            self._held -= train.size

    def poll(self, now: float) -> list[ExpiredTrain[First]]:
        expired: list[ExpiredTrain[First]] = []
        for key, train in list(self._trains.items()):
            if now < train.deadline:
                continue
            head = b""
            if not train.poisoned:
                self._count(f"{self._prefix}.timeout")
                if train.first is not None:
                    head = next((d for o, d in train.pieces if o == 0), b"")
            expired.append(ExpiredTrain(None if train.poisoned else train.first, head))
            self._drop(key)
        return expired

    def next_deadline(self) -> float | None:
        if not self._trains:
            return None
        # Insertion order is creation order and every train gets the same timeout.
        return next(iter(self._trains.values())).deadline
