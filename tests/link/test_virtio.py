"""The virtio-net header codec."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.link.frame import GsoType, Offload
from vipernet.link.virtio import VnetHeaderError, build_vnet_hdr, parse_vnet_hdr

VECTORS = [
    (None, "00000000000000000000"),
    (Offload(needs_csum=True, csum_start=34, csum_offset=16), "01000000000022001000"),
    (Offload(needs_csum=True, csum_start=34, csum_offset=16, gso_type=GsoType.TCPV4,
             gso_size=1448, hdr_len=66), "01014200a80522001000"),
    (Offload(data_valid=True), "02000000000000000000"),
]


@pytest.mark.parametrize(("offload", "hex_"), VECTORS)
def test_header_encodes_and_decodes_known_vectors(offload: Offload | None, hex_: str) -> None:
    assert build_vnet_hdr(offload).hex() == hex_
    assert parse_vnet_hdr(bytes.fromhex(hex_)) == offload


def test_twelve_byte_header_carries_one_buffer() -> None:
    assert build_vnet_hdr(None, 12).hex() == "000000000000000000000100"
    assert build_vnet_hdr(VECTORS[1][0], 12)[10:] == b"\x01\x00"


def test_ecn_bit_is_ignored_and_unknown_gso_type_is_refused() -> None:
    assert parse_vnet_hdr(bytes.fromhex("00810000000000000000")) == Offload(
        gso_type=GsoType.TCPV4)
    with pytest.raises(VnetHeaderError):
        parse_vnet_hdr(bytes.fromhex("00070000000000000000"))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=10, max_size=10))
def test_any_header_parses_or_raises_vnet_header_error(raw: bytes) -> None:
    with contextlib.suppress(VnetHeaderError):
        parse_vnet_hdr(raw)
