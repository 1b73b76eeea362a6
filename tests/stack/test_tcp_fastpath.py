"""The IP layer's TCP fast path must accept exactly what the general path accepts.

A recording TCP handler is registered twice: once offering ``receive_segment`` (so the
fast path may use it) and once without it (so every packet takes the general path).  The
same packet, well-formed or mutated by hypothesis, must be delivered the same way by both —
same source, destination and payload bytes — and leave the same counters.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.stack.helpers import make_stack
from vipernet.link.frame import Offload
from vipernet.stack import Stack
from vipernet.wire.checksum import internet_checksum

OUR_IP = IPv4Address("10.0.2.15").packed
PEER_IP = IPv4Address("10.0.2.2").packed


class GeneralOnly:
    def __init__(self) -> None:
        self.got: list[tuple[int, int, bytes]] = []

    def receive(self, ip_header: Any, payload: memoryview, offload: Offload | None,
                now: float) -> None:
        self.got.append((int(ip_header.src), int(ip_header.dst), bytes(payload)))


class WithFastPath(GeneralOnly):
    def __init__(self) -> None:
        super().__init__()
        self.fast_calls = 0

    def receive_segment(self, src: int, dst: int, payload: memoryview,
                        offload: Offload | None, now: float) -> None:
        self.fast_calls += 1
        self.got.append((src, dst, bytes(payload)))


def _packet(*, src: bytes = PEER_IP, dst: bytes = OUR_IP, payload: bytes = b"\0" * 32,
            flags_frag: int = 0x4000, proto: int = 6, padding: bytes = b"") -> bytearray:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1,
                                   flags_frag, 64, proto, 0, src, dst))
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return header + payload + padding


def _run(handler: GeneralOnly, packet: bytes) -> tuple[list[tuple[int, int, bytes]],
                                                       dict[str, int]]:
    stack: Stack = make_stack()
    stack.register_protocol(6, handler)
    stack.ipv4.receive(memoryview(packet), None, 0.0)
    return handler.got, stack.counters.snapshot()


def _same(packet: bytes) -> WithFastPath:
    fast = WithFastPath()
    assert _run(fast, packet) == _run(GeneralOnly(), packet)
    return fast


def test_an_ordinary_segment_takes_the_fast_path_and_arrives_as_the_general_path_delivers_it(
) -> None:
    fast = _same(bytes(_packet(payload=bytes(range(40)), padding=b"\0" * 6)))
    assert fast.fast_calls == 1
    assert fast.got == [(int(IPv4Address(PEER_IP)), int(IPv4Address(OUR_IP)),
                         bytes(range(40)))]  # Ethernet padding trimmed by total length


def test_a_bad_header_checksum_is_dropped_and_counted_as_on_the_general_path() -> None:
    packet = _packet()
    packet[10] ^= 0xFF
    fast = _same(bytes(packet))
    assert fast.got == [] and fast.fast_calls == 0


def test_martian_sources_fragments_and_other_destinations_leave_the_fast_path() -> None:
    for packet in (_packet(src=OUR_IP), _packet(src=b"\x0a\x00\x02\xff"),
                   _packet(src=b"\0\0\0\0"), _packet(src=b"\xe0\0\0\1"),
                   _packet(src=b"\xf0\0\0\1"), _packet(dst=b"\x0a\x00\x02\xff"),
                   _packet(flags_frag=0x2000), _packet(flags_frag=0x0001),
                   _packet(flags_frag=0x8000)):
        fast = _same(bytes(packet))
        assert fast.fast_calls == 0


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 59), st.integers(0, 255), st.integers(-30, 10))
def test_any_mutated_header_is_treated_alike_by_both_paths(index: int, value: int,
                                                            cut: int) -> None:
    packet = _packet(payload=b"\x11" * 40)
    packet[index] = value
    if cut < 0:
        packet = packet[:cut]
    _same(bytes(packet))
