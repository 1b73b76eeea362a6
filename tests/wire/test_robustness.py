"""Hostile input: every reader, given any prefix or random bytes, returns or raises WireError.

Never IndexError, struct.error, ValueError from an enum, or anything else: a stack that
gets these from a parser would crash on one bad frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.wire import (
    ArpOp,
    ArpPacket,
    EthernetHeader,
    EtherType,
    IcmpEcho,
    IcmpError,
    IcmpType,
    IpProto,
    IPv4Header,
    TcpFlags,
    TcpHeader,
    TcpOptions,
    WireError,
    build_arp,
    build_ethernet,
    build_icmp,
    build_ipv4,
    build_tcp,
    build_udp,
    parse_arp,
    parse_ethernet,
    parse_icmp,
    parse_ipv4,
    parse_quoted_ipv4,
    parse_tcp,
    parse_udp,
)
from vipernet.wire.tcp import parse_tcp_options

SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")
Parser = Callable[[bytes | bytearray | memoryview], object]

IP_PACKET = build_ipv4(
    IPv4Header(src=SRC, dst=DST, proto=IpProto.TCP, options=b"\x01\x01\x01\x00"), b"x" * 12
)
TCP_SEGMENT = build_tcp(
    TcpHeader(
        src_port=1,
        dst_port=2,
        seq=3,
        ack=4,
        flags=TcpFlags.SYN | TcpFlags.ACK,
        window=5,
        options=TcpOptions(
            mss=1460, sack_permitted=True, timestamps=(1, 2), window_scale=7, sack_blocks=((1, 2),)
        ),
    ),
    b"payload",
    src=SRC,
    dst=DST,
)
PARSERS: dict[str, tuple[Parser, bytes, int]] = {
    # name: (parser, a valid input, the shortest prefix that parses)
    "ethernet": (
        parse_ethernet,
        build_ethernet(EthernetHeader(dst=bytes(6), src=bytes(6), ethertype=EtherType.ARP), b""),
        14,
    ),
    "arp": (
        parse_arp,
        build_arp(
            ArpPacket(
                op=ArpOp.REPLY,
                sender_mac=bytes(6),
                sender_ip=SRC,
                target_mac=bytes(6),
                target_ip=DST,
            )
        ),
        28,
    ),
    "ipv4": (parse_ipv4, IP_PACKET, len(IP_PACKET)),
    "ipv4_unverified": (
        lambda d: parse_ipv4(d, verify_checksum=False),
        IP_PACKET,
        len(IP_PACKET),
    ),
    "quoted_ipv4": (parse_quoted_ipv4, IP_PACKET, 24),
    "icmp_echo": (
        parse_icmp,
        build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=1, seq=2, payload=b"abc")),
        -1,  # every prefix fails the checksum (or the length) except the whole
    ),
    "icmp_error": (
        lambda d: parse_icmp(d, verify_checksum=False),
        build_icmp(IcmpError(type=IcmpType.DEST_UNREACHABLE, code=3, quoted=IP_PACKET[:32])),
        36,
    ),
    "udp": (
        lambda d: parse_udp(d, src=SRC, dst=DST),
        build_udp(1, 2, b"data", src=SRC, dst=DST),
        12,
    ),
    "udp_unverified": (
        lambda d: parse_udp(d, src=SRC, dst=DST, verify_checksum=False),
        build_udp(1, 2, b"data", src=SRC, dst=DST),
        12,
    ),
    "tcp": (lambda d: parse_tcp(d, src=SRC, dst=DST), TCP_SEGMENT, len(TCP_SEGMENT)),
    "tcp_unverified": (
        lambda d: parse_tcp(d, src=SRC, dst=DST, verify_checksum=False),
        TCP_SEGMENT,
        len(TCP_SEGMENT) - len(b"payload"),
    ),
}


@pytest.mark.parametrize("name", PARSERS)
def test_every_truncation_raises_wire_error_and_the_whole_parses(name: str) -> None:
    parse, whole, shortest = PARSERS[name]
    parse(whole)
    parse(memoryview(whole))
    parse(bytearray(whole))
    if shortest < 0:
        shortest = len(whole)
    for cut in range(len(whole)):
        if cut >= shortest:
            parse(whole[:cut])
        else:
            with pytest.raises(WireError):
                parse(whole[:cut])


@pytest.mark.parametrize("name", PARSERS)
def test_trailing_bytes_are_padding_or_fail_only_the_checksum(name: str) -> None:
    parse, whole, _ = PARSERS[name]
    padded = whole + b"\x00\xff" * 7
    if name in ("tcp", "icmp_echo"):  # no length field: the tail is data the checksum covers
        with pytest.raises(WireError, match="checksum"):
            parse(padded)
    else:
        parse(padded)


def _only_wire_errors(parse: Parser, data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse(data)


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes_give_a_result_or_wire_error(name: str, data: bytes) -> None:
    _only_wire_errors(PARSERS[name][0], data)


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=200), value=st.integers(0, 255))
def test_one_corrupted_byte_gives_a_result_or_wire_error(
    name: str, position: int, value: int
) -> None:
    parse, whole, _ = PARSERS[name]
    raw = bytearray(whole)
    raw[position % len(raw)] = value
    _only_wire_errors(parse, bytes(raw))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_random_option_bytes_give_options_or_wire_error(data: bytes) -> None:
    _only_wire_errors(parse_tcp_options, data)
