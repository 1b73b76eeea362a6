"""Hostile input for the IPv6 readers: only WireError escapes, and parse(build(x)) == x.

Every reader gets random bytes, valid messages with one byte changed, and every prefix of
a valid message; then hypothesis builds random valid messages and checks they come back
equal.  A parser that raised IndexError, struct.error or ValueError (from an enum or
ipaddress) on one frame would take the stack down with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    ChainVerdict,
    ExtensionChain,
    Icmpv6Echo,
    Icmpv6Error,
    Icmpv6Type,
    IPv6Header,
    MldQuery,
    MldV2Report,
    MulticastAddressRecord,
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    WireError,
    build_icmpv6_message,
    build_ipv6_packet,
    build_mld,
    build_ndp,
    parse_ethernet,
    parse_icmpv6,
    parse_ipv6,
    parse_mld,
    parse_ndp,
    parse_quoted_ipv6,
    walk_extension_headers,
)
from vipernet.wire.ipv6_ext import (
    build_fragment_header,
    build_options_header,
    build_router_alert_header,
    build_routing_header,
)
from vipernet.wire.ndp import NdpMessage
from vipernet.wire.ndp_options import (
    MtuOption,
    NdpOption,
    PrefixInformation,
    RawNdpOption,
    RecursiveDnsServer,
    RedirectedHeader,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    parse_ndp_options,
)

A, B = IPv6Address("fd01::1"), IPv6Address("fd01::2")
LL_A, LL_B = IPv6Address("fe80::1"), IPv6Address("fe80::2")
Parser = Callable[[bytes], object]


def ip(frame: bytes) -> bytes:
    return bytes(parse_ethernet(frame)[1])


def body(frame: bytes) -> bytes:
    """The ICMPv6 body (after the checksum) of a captured frame without extension headers."""
    return ip(frame)[44:]


def walk(packet: bytes) -> object:
    header, payload = parse_ipv6(packet)
    return walk_extension_headers(header, payload)


CHAIN = build_ipv6_packet(
    IPv6Header(src=A, dst=B, next_header=0),
    build_router_alert_header(60)
    + build_options_header(43, ((0x1E, b"abc"), (0x9E, b"")))
    + build_routing_header(44, 0, 0)
    + build_fragment_header(17, 8, True, 0xDEADBEEF)
    + bytes(16),
)
MLD_QUERY = build_mld(
    MldQuery(
        max_response_code=0x8123,
        multicast_address=IPv6Address("ff02::1:ff00:2"),
        sources=(A, B),
        qrv=2,
        qqic=0x90,
    ),
    LL_A,
    B,
)[4:]
PARSERS: dict[str, tuple[Parser, bytes]] = {
    "ipv6": (parse_ipv6, ip(cap.ECHO_REQUEST)),
    "quoted_ipv6": (parse_quoted_ipv6, ip(cap.UDP)),
    "extension_chain": (walk, CHAIN),
    "extension_chain_mld": (walk, ip(cap.MLD_REPORT)),
    "icmpv6_echo": (lambda d: parse_icmpv6(d, A, B), ip(cap.ECHO_REQUEST)[40:]),
    "icmpv6_error": (
        lambda d: parse_icmpv6(d, B, A, verify_checksum=False),
        ip(cap.PORT_UNREACHABLE)[40:],
    ),
    "icmpv6_ndp": (lambda d: parse_icmpv6(d, A, B, verify_checksum=False), ip(cap.NS)[40:]),
    "ndp_rs": (lambda d: parse_ndp(133, d, LL_B, A), body(cap.RS)),
    "ndp_ra": (lambda d: parse_ndp(134, d, LL_B, A), body(cap.RA)),
    "ndp_ns": (lambda d: parse_ndp(135, d, A, IPv6Address("ff02::1:ff00:2")), body(cap.NS)),
    "ndp_dad": (
        lambda d: parse_ndp(135, d, IPv6Address("::"), IPv6Address("ff02::1:ff00:1")),
        body(cap.DAD_NS),
    ),
    "ndp_na": (lambda d: parse_ndp(136, d, B, A), body(cap.NA)),
    "ndp_redirect": (
        lambda d: parse_ndp(137, d, LL_A, B),
        build_ndp(
            Redirect(target=LL_B, destination=A, options=(RedirectedHeader(quoted=bytes(40)),)),
            LL_A,
            B,
        )[4:],
    ),
    "ndp_options": (parse_ndp_options, body(cap.RA)[12:]),
    "mld_query": (lambda d: parse_mld(130, d), MLD_QUERY),
    "mld_report": (lambda d: parse_mld(143, d), ip(cap.MLD_REPORT)[52:]),
}


def _only_wire_errors(parse: Parser, data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse(data)


@pytest.mark.parametrize("name", PARSERS)
def test_the_valid_input_parses_and_every_prefix_gives_a_result_or_wire_error(name: str) -> None:
    parse, whole = PARSERS[name]
    parse(whole)
    for cut in range(len(whole)):
        _only_wire_errors(parse, whole[:cut])


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=160))
def test_random_bytes_give_a_result_or_wire_error(name: str, data: bytes) -> None:
    _only_wire_errors(PARSERS[name][0], data)


@pytest.mark.parametrize("name", PARSERS)
@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=2000), value=st.integers(0, 255))
def test_one_corrupted_byte_gives_a_result_or_wire_error(
    name: str, position: int, value: int
) -> None:
    parse, whole = PARSERS[name]
    raw = bytearray(whole)
    raw[position % len(raw)] = value
    _only_wire_errors(parse, bytes(raw))


# Random valid messages.

addresses = st.integers(0, (1 << 128) - 1).map(IPv6Address)
unicast = addresses.filter(lambda a: not a.is_multicast)
u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF_FFFF)
blocks = st.integers(0, 4).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))

options: st.SearchStrategy[NdpOption] = st.one_of(
    st.builds(SourceLinkLayerAddress, address=st.binary(min_size=6, max_size=6)),
    st.builds(TargetLinkLayerAddress, address=st.binary(min_size=14, max_size=14)),
    st.builds(
        PrefixInformation,
        prefix_length=st.integers(0, 128),
        on_link=st.booleans(),
        autonomous=st.booleans(),
        valid_lifetime=u32,
        preferred_lifetime=u32,
        prefix=addresses,
        other_flags=st.integers(0, 0x3F),
    ),
    st.builds(RedirectedHeader, quoted=blocks),
    st.builds(MtuOption, mtu=u32),
    st.builds(
        RecursiveDnsServer,
        lifetime=u32,
        servers=st.lists(addresses, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(
        RawNdpOption,
        type=st.sampled_from([14, 31, 200]),
        data=st.integers(0, 3).flatmap(lambda n: st.binary(min_size=8 * n + 6, max_size=8 * n + 6)),
    ),
)
option_lists = st.lists(options, max_size=4).map(tuple)


@st.composite
def ndp_messages(draw: st.DrawFn) -> tuple[NdpMessage, IPv6Address, IPv6Address]:
    kind = draw(st.sampled_from(["rs", "ra", "ns", "na", "redirect"]))
    opts = draw(option_lists)
    if kind == "rs":
        return RouterSolicitation(options=opts), A, LL_B
    if kind == "ra":
        ra = RouterAdvertisement(
            cur_hop_limit=draw(u8),
            managed=draw(st.booleans()),
            other_config=draw(st.booleans()),
            router_lifetime=draw(u16),
            reachable_time=draw(u32),
            retrans_timer=draw(u32),
            other_flags=draw(st.integers(0, 0x3F)),
            options=opts,
        )
        return ra, LL_A, IPv6Address("ff02::1")
    if kind == "ns":
        return NeighborSolicitation(target=draw(unicast), options=opts), A, B
    if kind == "na":
        na = NeighborAdvertisement(
            target=draw(unicast),
            router=draw(st.booleans()),
            solicited=draw(st.booleans()),
            override=draw(st.booleans()),
            options=opts,
        )
        return na, A, B
    destination = draw(unicast)
    return Redirect(target=destination, destination=destination, options=opts), LL_A, B


@settings(max_examples=300, deadline=None)
@given(ndp_messages())
def test_ndp_parse_of_build_is_identity(case: tuple[NdpMessage, IPv6Address, IPv6Address]) -> None:
    message, src, dst = case
    raw = build_ndp(message, src, dst)
    icmp = parse_icmpv6(raw, src, dst)
    assert icmp.type == message.TYPE
    assert parse_ndp(message.TYPE, raw[4:], src, dst) == message


records = st.builds(
    MulticastAddressRecord,
    record_type=st.integers(1, 6),
    multicast_address=addresses,
    sources=st.lists(addresses, max_size=3).map(tuple),
    aux_data=st.integers(0, 2).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
)
mld_messages = st.one_of(
    st.builds(MldV2Report, records=st.lists(records, max_size=4).map(tuple)),
    st.builds(
        MldQuery,
        max_response_code=u16,
        multicast_address=st.one_of(
            st.just(IPv6Address("::")), addresses.filter(lambda a: a.is_multicast)
        ),
        version=st.just(2),
        suppress=st.booleans(),
        qrv=st.integers(0, 7),
        qqic=u8,
        sources=st.lists(addresses, max_size=3).map(tuple),
    ),
    st.builds(
        MldQuery,
        max_response_code=u16,
        multicast_address=st.just(IPv6Address("ff02::1")),
        version=st.just(1),
    ),
)


@settings(max_examples=300, deadline=None)
@given(mld_messages)
def test_mld_parse_of_build_is_identity(message: MldV2Report | MldQuery) -> None:
    raw = build_mld(message, LL_A, B)
    assert parse_mld(raw[0], raw[4:]) == message


icmp_messages = st.one_of(
    st.builds(
        Icmpv6Echo,
        type=st.sampled_from([Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY]),
        code=u8,
        ident=u16,
        seq=u16,
        payload=st.binary(max_size=64),
    ),
    st.builds(
        lambda t, code, tail, word: Icmpv6Error(
            type=t,
            code=code,
            quoted=b"\x60" + bytes(39) + tail,
            mtu=word if t == Icmpv6Type.PACKET_TOO_BIG else 0,
            pointer=word if t == Icmpv6Type.PARAMETER_PROBLEM else 0,
        ),
        st.sampled_from([Icmpv6Type(t) for t in (1, 2, 3, 4)]),
        u8,
        st.binary(max_size=32),
        u32,
    ),
)


@settings(max_examples=300, deadline=None)
@given(icmp_messages, addresses, addresses)
def test_icmpv6_parse_of_build_is_identity(
    message: Icmpv6Echo | Icmpv6Error, src: IPv6Address, dst: IPv6Address
) -> None:
    assert parse_icmpv6(build_icmpv6_message(message, src, dst), src, dst) == message


skippable = st.tuples(st.integers(2, 0x3F), st.binary(max_size=12))  # action 00, not PadN


@settings(max_examples=300, deadline=None)
@given(
    hop_by_hop=st.booleans(),
    destination=st.lists(st.lists(skippable, max_size=3), max_size=3),
    routing=st.booleans(),
    upper=st.sampled_from([6, 17, 58, 200]),
    data=st.binary(max_size=40),
)
def test_a_chain_of_skippable_headers_reaches_the_upper_layer(
    hop_by_hop: bool,
    destination: list[list[tuple[int, bytes]]],
    routing: bool,
    upper: int,
    data: bytes,
) -> None:
    kinds = ([0] if hop_by_hop else []) + [60] * len(destination) + ([43] if routing else [])
    parts: list[bytes] = []
    for i, kind in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else upper
        if kind == 0:
            parts.append(build_router_alert_header(nxt, 7))
        elif kind == 60:
            parts.append(build_options_header(nxt, destination[i - hop_by_hop]))
        else:
            parts.append(build_routing_header(nxt, 0, 0))
    chain = b"".join(parts)
    first = kinds[0] if kinds else upper
    header, payload = parse_ipv6(
        build_ipv6_packet(IPv6Header(src=A, dst=B, next_header=first), chain + data)
    )
    result = walk_extension_headers(header, payload)
    assert result.verdict is ChainVerdict.OK
    assert (result.upper_protocol, result.upper_offset) == (upper, len(chain))
    assert result.headers == tuple(kinds)
    assert result.router_alert == (7 if hop_by_hop else None)


@settings(max_examples=1000, deadline=None)
@given(
    first=st.sampled_from([0, 43, 44, 59, 60, 17]),
    chain=st.binary(max_size=96),
    dst=st.sampled_from([B, IPv6Address("ff02::1")]),
)
def test_random_bytes_behind_a_valid_header_walk_to_a_verdict_or_wire_error(
    first: int, chain: bytes, dst: IPv6Address
) -> None:
    packet = build_ipv6_packet(IPv6Header(src=A, dst=dst, next_header=first), chain)
    with contextlib.suppress(WireError):
        result = walk(packet)
        assert isinstance(result, ExtensionChain)
        assert 0 <= result.upper_offset <= len(chain)
        if result.verdict is ChainVerdict.PARAMETER_PROBLEM:
            assert 0 <= result.icmp_pointer < 40 + len(chain)
