"""The Internet checksum: known vectors and agreement with a word-by-word reference."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum


def reference_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 the slow way: add 16-bit words, fold the carries."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


# (data hex, folded sum) - the RFC 1071 section 3 example and edge cases of the fold.
VECTORS = [
    ("0001f203f4f5f6f7", 0xDDF2),
    ("", 0x0000),
    ("0000", 0x0000),
    ("ffff", 0xFFFF),
    ("ffff0001", 0x0001),
    ("fffe0001", 0xFFFF),
    ("01", 0x0100),
    ("0102ff", 0x0003),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_ones_complement_sum_matches_known_vectors(data: str, expected: int) -> None:
    assert ones_complement_sum(bytes.fromhex(data)) == expected


def test_ipv4_header_checksum_matches_the_textbook_example() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    filled = header[:10] + b"\xb8\x61" + header[12:]
    assert internet_checksum(filled) == 0


def test_checksum_accepts_memoryview_and_bytearray() -> None:
    data = bytes(range(256)) * 3
    assert ones_complement_sum(memoryview(data)) == ones_complement_sum(bytearray(data))
    assert ones_complement_sum(memoryview(data)[1:]) == reference_sum(data[1:])


def test_initial_chains_sums_over_pieces() -> None:
    data = bytes(range(200)) + b"\x07"
    assert ones_complement_sum(data[100:], ones_complement_sum(data[:100])) == reference_sum(data)


def test_pseudo_header_sum_adds_addresses_proto_and_length() -> None:
    src, dst = IPv4Address("10.0.2.15"), IPv4Address("192.168.255.255")
    raw = src.packed + dst.packed + bytes((0, 6)) + (1234).to_bytes(2, "big")
    assert pseudo_header_sum(src, dst, 6, 1234) == reference_sum(raw)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=0xFFFF))
def test_sum_agrees_with_the_word_by_word_reference(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data, initial) == reference_sum(data, initial)


@pytest.mark.parametrize("size", [1499, 1500, 65535, 65536])
def test_sum_of_all_ones_and_all_zeros_folds_like_the_reference(size: int) -> None:
    for data in (b"\xff" * size, bytes(size)):
        assert ones_complement_sum(data) == reference_sum(data)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=4000, max_size=20000), st.integers(min_value=0, max_value=0xFFFF))
def test_sum_of_large_buffers_in_pieces_agrees_with_the_reference(
    data: bytes, initial: int
) -> None:
    assert ones_complement_sum(data, initial) == reference_sum(data, initial)
    assert ones_complement_sum(memoryview(data)[1:]) == reference_sum(data[1:])


@pytest.mark.parametrize("size", [4095, 4096, 4097, 8191, 8192, 8193, 12289])
def test_sum_around_piece_boundaries_agrees_with_the_reference(size: int) -> None:
    data = bytes((i * 131 + 17) & 0xFF for i in range(size))
    assert ones_complement_sum(data) == reference_sum(data)
