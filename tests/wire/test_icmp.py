"""ICMP: echo, errors with their quotes and MTU, other types kept whole."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vipernet.wire import (
    IcmpEcho,
    IcmpError,
    IcmpOther,
    IcmpType,
    IpProto,
    IPv4Header,
    UnreachableCode,
    WireError,
    build_icmp,
    build_ipv4,
    build_udp,
    parse_icmp,
)

SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")


def original_datagram() -> bytes:
    udp = build_udp(40000, 53, b"query-bytes", src=SRC, dst=DST)
    return build_ipv4(IPv4Header(src=SRC, dst=DST, proto=IpProto.UDP), udp)


def test_echo_request_checksum_matches_the_hand_computed_value() -> None:
    # 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364 = 0xDEFB (no carry); ~0xDEFB = 0x2104.
    echo = IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=0x1234, seq=1, payload=b"abcd")
    assert build_icmp(echo).hex() == "080021041234000161626364"
    assert parse_icmp(build_icmp(echo)) == echo


def test_echo_reply_round_trips_with_an_empty_payload() -> None:
    echo = IcmpEcho(type=IcmpType.ECHO_REPLY, ident=7, seq=65535)
    assert parse_icmp(build_icmp(echo)) == echo


def test_bad_checksum_is_refused_unless_verification_is_off() -> None:
    raw = bytearray(build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=1, seq=2)))
    raw[5] ^= 1
    with pytest.raises(WireError, match="icmp: checksum"):
        parse_icmp(bytes(raw))
    assert isinstance(parse_icmp(bytes(raw), verify_checksum=False), IcmpEcho)


def test_port_unreachable_quotes_the_ip_header_and_the_ports() -> None:
    original = original_datagram()
    error = IcmpError(
        type=IcmpType.DEST_UNREACHABLE, code=UnreachableCode.PORT, quoted=original[:28]
    )
    parsed = parse_icmp(build_icmp(error))
    assert parsed == error
    assert isinstance(parsed, IcmpError)
    header, start = parsed.quoted_ipv4()
    assert (header.src, header.dst, header.proto) == (SRC, DST, IpProto.UDP)
    assert int.from_bytes(start[0:2], "big") == 40000 and int.from_bytes(start[2:4], "big") == 53


def test_fragmentation_needed_carries_the_next_hop_mtu() -> None:
    error = IcmpError(
        type=IcmpType.DEST_UNREACHABLE,
        code=UnreachableCode.FRAGMENTATION_NEEDED,
        quoted=original_datagram()[:28],
        next_hop_mtu=1400,
    )
    raw = build_icmp(error)
    assert raw[6:8] == (1400).to_bytes(2, "big")
    assert parse_icmp(raw) == error


def test_time_exceeded_is_an_error_without_mtu() -> None:
    error = IcmpError(type=IcmpType.TIME_EXCEEDED, code=0, quoted=original_datagram())
    assert parse_icmp(build_icmp(error)) == error


def test_an_error_quoting_less_than_header_plus_8_bytes_is_refused() -> None:
    error = IcmpError(type=IcmpType.DEST_UNREACHABLE, code=3, quoted=original_datagram()[:27])
    with pytest.raises(WireError, match="quoted_length=27 violates quoted_length >= 28"):
        parse_icmp(build_icmp(error))


def test_an_error_quoting_garbage_is_refused() -> None:
    error = IcmpError(type=IcmpType.DEST_UNREACHABLE, code=3, quoted=bytes(28))
    with pytest.raises(WireError, match="ipv4: header_length=0"):
        parse_icmp(build_icmp(error))


def test_other_types_are_kept_whole() -> None:
    for kind in (IcmpType.TIMESTAMP, 42):
        other = IcmpOther(type=kind, code=1, rest=b"\x00\x01\x02\x03rest")
        assert parse_icmp(build_icmp(other)) == other


def test_next_hop_mtu_is_written_only_for_fragmentation_needed() -> None:
    error = IcmpError(
        type=IcmpType.DEST_UNREACHABLE,
        code=UnreachableCode.PORT,
        quoted=original_datagram()[:28],
        next_hop_mtu=1400,
    )
    raw = build_icmp(error)
    assert raw[4:8] == bytes(4)
    assert parse_icmp(raw) == IcmpError(type=error.type, code=error.code, quoted=error.quoted)
