"""ICMPv6: echo and errors against the kernel's own, checksums over the pseudo-header."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    Icmpv6Echo,
    Icmpv6Error,
    Icmpv6Other,
    Icmpv6ParamProblemCode,
    Icmpv6Type,
    Icmpv6UnreachableCode,
    IPv6Header,
    WireError,
    WireUsageError,
    build_icmpv6,
    build_icmpv6_error,
    build_icmpv6_message,
    build_ipv6_packet,
    parse_ethernet,
    parse_icmpv6,
    parse_ipv6,
)
from vipernet.wire.icmpv6 import (
    MAX_ERROR_QUOTE,
    build_echo_reply,
    build_echo_request,
    is_error_type,
)

A, B = IPv6Address("fd01::1"), IPv6Address("fd01::2")
QUOTE = b"\x60" + bytes(47)


def icmp_of(frame: bytes) -> tuple[IPv6Header, bytes]:
    header, payload = parse_ipv6(parse_ethernet(frame)[1])
    return header, bytes(payload)


def test_the_kernels_echo_request_parses_and_rebuilds_byte_for_byte() -> None:
    header, data = icmp_of(cap.ECHO_REQUEST)
    echo = parse_icmpv6(data, header.src, header.dst)
    assert isinstance(echo, Icmpv6Echo)
    assert (echo.type, echo.code, echo.ident, echo.seq) == (Icmpv6Type.ECHO_REQUEST, 0, 0x42CB, 1)
    assert len(echo.payload) == 16
    assert build_echo_request(echo.ident, echo.seq, echo.payload, A, B) == data


def test_our_echo_reply_is_the_kernels_echo_reply() -> None:
    request_header, request = icmp_of(cap.ECHO_REQUEST)
    echo = parse_icmpv6(request, request_header.src, request_header.dst)
    assert isinstance(echo, Icmpv6Echo)
    _, reply = icmp_of(cap.ECHO_REPLY)
    assert build_echo_reply(echo.ident, echo.seq, echo.payload, B, A) == reply


def test_the_checksum_covers_the_pseudo_header() -> None:
    _, data = icmp_of(cap.ECHO_REQUEST)
    with pytest.raises(WireError) as info:
        parse_icmpv6(data, A, IPv6Address("fd01::3"))  # same bytes, another destination
    assert (info.value.layer, info.value.field) == ("icmpv6", "checksum")
    assert isinstance(parse_icmpv6(data, A, A, verify_checksum=False), Icmpv6Echo)


def test_a_flipped_bit_fails_the_checksum() -> None:
    _, data = icmp_of(cap.ECHO_REQUEST)
    broken = bytearray(data)
    broken[10] ^= 0x40
    with pytest.raises(WireError, match="checksum"):
        parse_icmpv6(bytes(broken), A, B)


def test_the_kernels_port_unreachable_quotes_our_datagram() -> None:
    header, data = icmp_of(cap.PORT_UNREACHABLE)
    error = parse_icmpv6(data, header.src, header.dst)
    assert isinstance(error, Icmpv6Error)
    assert (error.type, error.code) == (Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT)
    _, udp = icmp_of(cap.UDP)
    assert error.quoted == bytes(parse_ethernet(cap.UDP)[1])
    quoted, start = error.quoted_ipv6()
    assert (quoted.src, quoted.dst) == (A, B) and bytes(start) == udp
    assert build_icmpv6_error(1, 4, error.quoted, B, A) == data


def test_packet_too_big_carries_the_mtu_and_parameter_problem_the_pointer() -> None:
    invoking = build_ipv6_packet(IPv6Header(src=A, dst=B, next_header=17), bytes(16))
    too_big = parse_icmpv6(build_icmpv6_error(2, 0, invoking, B, A, mtu=1280), B, A)
    assert isinstance(too_big, Icmpv6Error) and too_big.mtu == 1280 and too_big.pointer == 0
    problem = build_icmpv6_error(
        4, Icmpv6ParamProblemCode.NEXT_HEADER, invoking, B, A, pointer=6, mtu=1500
    )
    parsed = parse_icmpv6(problem, B, A)
    assert isinstance(parsed, Icmpv6Error) and (parsed.pointer, parsed.mtu) == (6, 0)
    assert problem[4:8] == b"\x00\x00\x00\x06"


def test_time_exceeded_leaves_the_unused_word_zero() -> None:
    invoking = build_ipv6_packet(IPv6Header(src=A, dst=B, next_header=17), bytes(8))
    raw = build_icmpv6_error(3, 0, invoking, B, A, mtu=9000, pointer=9)
    assert raw[4:8] == bytes(4)


def test_an_error_quotes_only_what_fits_in_the_minimum_mtu() -> None:
    invoking = build_ipv6_packet(IPv6Header(src=A, dst=B, next_header=17), bytes(3000))
    raw = build_icmpv6_error(1, 4, invoking, B, A)
    assert 40 + len(raw) == 1280
    parsed = parse_icmpv6(raw, B, A)
    assert isinstance(parsed, Icmpv6Error) and len(parsed.quoted) == MAX_ERROR_QUOTE == 1232


def test_an_error_whose_quote_cannot_hold_an_ipv6_header_is_refused() -> None:
    raw = build_icmpv6(1, 4, bytes(4) + bytes(39), B, A)
    with pytest.raises(WireError) as info:
        parse_icmpv6(raw, B, A)
    assert (info.value.field, info.value.value) == ("quoted_length", 39)
    raw = build_icmpv6(1, 4, bytes(4) + b"\x45" + bytes(39), B, A)  # an IPv4 header
    with pytest.raises(WireError, match="version"):
        parse_icmpv6(raw, B, A)


@pytest.mark.parametrize("length", [0, 3])
def test_a_message_shorter_than_its_header_is_refused(length: int) -> None:
    with pytest.raises(WireError) as info:
        parse_icmpv6(bytes(length), A, B, verify_checksum=False)
    assert info.value.field == "length"


@pytest.mark.parametrize("icmp_type", [1, 128])
def test_echo_and_errors_need_their_second_word(icmp_type: int) -> None:
    raw = build_icmpv6(icmp_type, 0, b"\x00\x01", A, B)
    with pytest.raises(WireError) as info:
        parse_icmpv6(raw, A, B)
    assert (info.value.field, info.value.value) == ("length", 6)


def test_ndp_mld_and_unknown_types_are_kept_whole() -> None:
    for icmp_type in (133, 143, 200, 99):
        raw = build_icmpv6(icmp_type, 7, b"body-bytes", A, B)
        other = parse_icmpv6(raw, A, B)
        assert other == Icmpv6Other(type=icmp_type, code=7, body=b"body-bytes")
        assert build_icmpv6_message(other, A, B) == raw
    assert is_error_type(99) and not is_error_type(133)


@pytest.mark.parametrize(
    "message",
    [
        Icmpv6Echo(type=Icmpv6Type.ECHO_REPLY, ident=65535, seq=0, payload=b"\xff" * 33),
        Icmpv6Error(type=Icmpv6Type.PACKET_TOO_BIG, code=0, quoted=QUOTE, mtu=1 << 31),
        Icmpv6Error(type=Icmpv6Type.PARAMETER_PROBLEM, code=2, quoted=QUOTE[:40], pointer=43),
        Icmpv6Error(type=Icmpv6Type.TIME_EXCEEDED, code=1, quoted=QUOTE),
    ],
)
def test_messages_round_trip(message: Icmpv6Echo | Icmpv6Error) -> None:
    assert parse_icmpv6(build_icmpv6_message(message, A, B), A, B) == message


def test_builders_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(WireUsageError):
        build_icmpv6(256, 0, b"", A, B)
    with pytest.raises(WireUsageError):
        build_echo_request(65536, 0, b"", A, B)
    with pytest.raises(WireUsageError):
        build_icmpv6_error(128, 0, bytes(40), A, B)
    with pytest.raises(WireUsageError):
        build_icmpv6(1, 0, bytes(65532), A, B)
