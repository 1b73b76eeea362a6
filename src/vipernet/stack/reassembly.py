"""IPv4 receive-side reassembly (RFC 791) with bounded memory and safe overlaps (RFC 5722).

The IPv4 rules (the key, a ragged non-final fragment, the 65,535-byte limit counted with
this fragment's header) are here; the trains themselves, their caps and the overlap rule
are :mod:`vipernet.stack.fragment_trains`, shared with IPv6.

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

from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.fragment_trains import FragmentTrains
from vipernet.wire.ipv4 import MAX_PACKET_LENGTH, MIN_HEADER_LENGTH, IPv4Header

_Key = tuple[IPv4Address, IPv4Address, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiredDatagram:
    """A datagram that timed out; with its first fragment we owe an ICMP time exceeded."""

    header: IPv4Header | None  # the offset-0 fragment's header, if it came
    head: bytes  # the start of its payload (for the ICMP quote)


class Reassembler:
    """Collects fragments; :meth:`add` returns the whole datagram once it is complete."""

    __slots__ = ("_counters", "_trains")

    def __init__(self, config: StackConfig, counters: Counters) -> None:
        self._counters = counters
        self._trains: FragmentTrains[IPv4Header] = FragmentTrains(
            config, counters, prefix="ipv4.reasm",
            max_payload=MAX_PACKET_LENGTH - MIN_HEADER_LENGTH)

    @property
    def held_bytes(self) -> int:
        return self._trains.held_bytes

    def __len__(self) -> int:
        return len(self._trains)

    def add(self, header: IPv4Header, payload: bytes | memoryview, now: float
            ) -> tuple[IPv4Header, bytes] | None:
        count = self._counters.inc
        key: _Key = (header.src, header.dst, int(header.proto), header.ident)
        count("ipv4.reasm.fragments")
        if header.more_fragments and len(payload) % 8:
            count("ipv4.reasm.bad_length")  # only the last fragment may be ragged
            return None
        if header.fragment_offset + len(payload) + header.header_length > MAX_PACKET_LENGTH:
            count("ipv4.reasm.too_big")
            self._trains.discard(key)
            return None
        done = self._trains.add(key, header.fragment_offset, header.more_fragments, payload,
                                header, now)
        if done is None:
            return None
        first = done.first
        whole = replace(first, more_fragments=False, fragment_offset=0,
                        total_length=first.header_length + len(done.payload))
        return whole, done.payload

    def poll(self, now: float) -> list[ExpiredDatagram]:
        return [ExpiredDatagram(header=e.first, head=e.head[:8])
                for e in self._trains.poll(now)]

    def next_deadline(self) -> float | None:
        return self._trains.next_deadline()
