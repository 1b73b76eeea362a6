"""UDP: checksums with the pseudo-header, the zero checksum, length checks."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vipernet.wire import WireError, WireUsageError, build_udp, parse_udp
from vipernet.wire.checksum import pseudo_header_sum

SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.3")


def test_datagram_matches_a_hand_computed_checksum() -> None:
    # pseudo: 0x0a00+0x020f+0x0a00+0x0203+0x0011+0x000a = 0x182D
    # header: 0x3039+0x0035+0x000a = 0x3078; payload "hi" = 0x6869
    # 0x182D + 0x3078 + 0x6869 = 0xB10E (no carry) -> checksum ~0xB10E = 0x4EF1
    raw = build_udp(12345, 53, b"hi", src=SRC, dst=DST)
    assert raw.hex() == "30390035000a4ef16869"
    header, payload = parse_udp(raw, src=SRC, dst=DST)
    assert (header.src_port, header.dst_port, header.length, header.checksum) == (
        12345,
        53,
        10,
        0x4EF1,
    )
    assert bytes(payload) == b"hi"


def test_checksum_depends_on_the_addresses() -> None:
    raw = build_udp(1, 2, b"data", src=SRC, dst=DST)
    with pytest.raises(WireError, match="udp: checksum"):
        parse_udp(raw, src=SRC, dst=IPv4Address("10.0.2.4"))


def test_zero_checksum_means_none_and_is_not_verified() -> None:
    raw = bytearray(build_udp(1, 2, b"data", src=SRC, dst=DST))
    raw[6:8] = b"\0\0"
    header, payload = parse_udp(bytes(raw), src=SRC, dst=IPv4Address("1.2.3.4"))
    assert header.checksum == 0 and bytes(payload) == b"data"


def test_a_computed_zero_checksum_is_sent_as_ffff() -> None:
    # Choose a payload that makes the sum 0xFFFF: the checksum would be 0.
    base = build_udp(1, 2, b"\0\0", src=SRC, dst=DST)
    needed = int.from_bytes(base[6:8], "big")  # the payload word that completes the sum
    raw = build_udp(1, 2, needed.to_bytes(2, "big"), src=SRC, dst=DST)
    assert raw[6:8] == b"\xff\xff"
    parse_udp(raw, src=SRC, dst=DST)


def test_payload_is_trimmed_to_the_udp_length() -> None:
    raw = build_udp(1, 2, b"abc", src=SRC, dst=DST) + b"padding"
    assert bytes(parse_udp(raw, src=SRC, dst=DST)[1]) == b"abc"


@pytest.mark.parametrize(
    ("length", "message"),
    [(7, "udp: length=7 violates length >= 8"), (12, "length=12 violates length <= ip_payload")],
)
def test_bad_length_field_is_refused(length: int, message: str) -> None:
    raw = bytearray(build_udp(1, 2, b"abc", src=SRC, dst=DST))
    raw[4:6] = length.to_bytes(2, "big")
    with pytest.raises(WireError, match=message):
        parse_udp(bytes(raw), src=SRC, dst=DST, verify_checksum=False)


def test_partial_checksum_holds_the_pseudo_header_sum() -> None:
    raw = build_udp(1, 2, b"abc", src=SRC, dst=DST, partial_checksum=True)
    assert int.from_bytes(raw[6:8], "big") == pseudo_header_sum(SRC, DST, 17, 11)


def test_build_refuses_bad_ports_and_oversized_payloads() -> None:
    with pytest.raises(WireUsageError):
        build_udp(70000, 2, b"", src=SRC, dst=DST)
    with pytest.raises(WireUsageError):
        build_udp(1, 2, bytes(65528), src=SRC, dst=DST)
