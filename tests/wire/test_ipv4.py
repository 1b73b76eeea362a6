"""IPv4 headers: the textbook vector, lengths, flags, options and checksums."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from vipernet.wire import IpProto, IPv4Header, WireError, WireUsageError, build_ipv4, parse_ipv4
from vipernet.wire.ipv4 import build_ipv4_header, parse_quoted_ipv4

# The classic example: a UDP packet 192.168.0.1 -> 192.168.0.199, checksum 0xb861.
TEXTBOOK_HEX = "45000073000040004011b861c0a80001c0a800c7"
TEXTBOOK = IPv4Header(
    src=IPv4Address("192.168.0.1"),
    dst=IPv4Address("192.168.0.199"),
    proto=IpProto.UDP,
    ttl=64,
    dont_fragment=True,
    total_length=0x73,
)
SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")


def packet(payload: bytes = b"abcd", **fields: Any) -> bytes:
    header = IPv4Header(src=SRC, dst=DST, proto=IpProto.TCP, **fields)
    return build_ipv4(header, payload)


def test_textbook_header_builds_with_its_known_checksum() -> None:
    assert build_ipv4_header(TEXTBOOK, 0x73 - 20).hex() == TEXTBOOK_HEX


def test_textbook_header_parses_back() -> None:
    raw = bytes.fromhex(TEXTBOOK_HEX) + bytes(0x73 - 20)
    header, payload = parse_ipv4(raw)
    assert header == TEXTBOOK
    assert len(payload) == 0x73 - 20


def test_payload_is_trimmed_to_total_length_ignoring_ethernet_padding() -> None:
    raw = packet(b"xy") + bytes(24)
    header, payload = parse_ipv4(raw)
    assert header.total_length == 22 and bytes(payload) == b"xy"


def test_fragment_fields_round_trip_with_offset_in_bytes() -> None:
    raw = packet(b"z" * 8, ident=0x1234, more_fragments=True, fragment_offset=1480)
    header, _ = parse_ipv4(raw)
    assert header.more_fragments and not header.dont_fragment
    assert header.fragment_offset == 1480 and header.ident == 0x1234 and header.is_fragment
    assert raw[6:8] == bytes.fromhex("20b9")  # MF | 1480/8 = 185


def test_options_are_kept_raw_and_counted_in_the_header_length() -> None:
    options = bytes.fromhex("94040000")  # router alert
    header, payload = parse_ipv4(packet(b"p", options=options))
    assert header.options == options and header.header_length == 24 and bytes(payload) == b"p"


def test_unknown_protocol_is_kept_as_an_int() -> None:
    header, _ = parse_ipv4(build_ipv4(IPv4Header(src=SRC, dst=DST, proto=47), b""))
    assert header.proto == 47 and not isinstance(header.proto, IpProto)


def corrupt(raw: bytes, offset: int, value: bytes, *, fix_checksum: bool = True) -> bytes:
    out = bytearray(raw)
    out[offset : offset + len(value)] = value
    if fix_checksum:
        from vipernet.wire.checksum import internet_checksum

        hlen = (out[0] & 0x0F) * 4
        out[10:12] = b"\0\0"
        out[10:12] = internet_checksum(bytes(out[: max(hlen, 20)])).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\x43", "ipv4: header_length=3 violates header_length >= 5"),
        (0, b"\x4f", "header_length=60 violates header_length <= length"),
        (0, b"\x65", "version=6 violates version == 4"),
        (2, b"\x00\x13", "total_length=19 violates total_length >= header_length"),
        (2, b"\x00\x19", "total_length=25 violates total_length <= length"),
        (6, b"\x80\x00", "reserved flag bit == 0"),
    ],
)
def test_malformed_headers_name_the_violated_condition(
    offset: int, value: bytes, message: str
) -> None:
    with pytest.raises(WireError, match=message):
        parse_ipv4(corrupt(packet(), offset, value))


def test_a_flipped_bit_fails_the_checksum_unless_told_not_to_verify() -> None:
    raw = corrupt(packet(), 8, b"\x3f", fix_checksum=False)  # TTL 64 -> 63
    with pytest.raises(WireError, match="checksum") as info:
        parse_ipv4(raw)
    assert info.value.layer == "ipv4" and info.value.field == "checksum"
    assert parse_ipv4(raw, verify_checksum=False)[0].ttl == 63


def test_quoted_header_may_promise_more_than_the_quote_holds() -> None:
    raw = packet(b"x" * 100)[:28]
    with pytest.raises(WireError):
        parse_ipv4(raw)
    header, rest = parse_quoted_ipv4(raw)
    assert header.total_length == 120 and bytes(rest) == b"x" * 8


@pytest.mark.parametrize(
    "fields",
    [
        {"options": b"\x01"},
        {"options": bytes(44)},
        {"fragment_offset": 3},
        {"ttl": 256},
    ],
)
def test_build_refuses_unencodable_headers(fields: dict[str, Any]) -> None:
    with pytest.raises(WireUsageError):
        packet(**fields)


def test_build_refuses_a_payload_beyond_64k() -> None:
    with pytest.raises(WireUsageError):
        packet(bytes(65516))
