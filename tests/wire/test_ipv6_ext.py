"""IPv6 extension-header chains: verdicts, Parameter Problem pointers, fragments, caps."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    ChainVerdict,
    IPv6Header,
    NextHeader,
    WireError,
    WireUsageError,
    build_ipv6_packet,
    parse_ethernet,
    parse_ipv6,
    walk_extension_headers,
)
from vipernet.wire.ipv6_ext import (
    ExtensionChain,
    build_fragment_header,
    build_options_header,
    build_router_alert_header,
    build_routing_header,
)

A, B = IPv6Address("fd01::1"), IPv6Address("fd01::2")
GROUP = IPv6Address("ff02::1")
HBH, DST, RT, FRAG = 0, 60, 43, 44
UDP, ICMPV6 = 17, 58


def walk(first: int, chain: bytes, dst: IPv6Address = B) -> ExtensionChain:
    packet = build_ipv6_packet(IPv6Header(src=A, dst=dst, next_header=first), chain)
    header, payload = parse_ipv6(packet)
    return walk_extension_headers(header, payload)


def test_no_extension_headers_is_ok_at_offset_zero() -> None:
    chain = walk(UDP, b"u" * 8)
    assert chain.verdict is ChainVerdict.OK
    assert (chain.upper_protocol, chain.upper_offset, chain.next_header_field) == (UDP, 0, 6)
    assert chain.headers == () and chain.fragment is None


def test_the_kernels_mld_report_carries_a_router_alert_in_hop_by_hop() -> None:
    header, payload = parse_ipv6(parse_ethernet(cap.MLD_REPORT)[1])
    chain = walk_extension_headers(header, payload)
    assert chain.verdict is ChainVerdict.OK
    assert chain.headers == (NextHeader.HOP_BY_HOP,)
    assert (chain.upper_protocol, chain.upper_offset, chain.router_alert) == (ICMPV6, 8, 0)
    assert chain.next_header_field == 40
    assert bytes(payload[:8]) == build_router_alert_header(ICMPV6)


def test_hop_by_hop_after_another_header_is_an_unrecognized_next_header() -> None:
    chain = walk(DST, build_options_header(HBH) + build_options_header(UDP) + bytes(8))
    assert chain.verdict is ChainVerdict.PARAMETER_PROBLEM
    # Code 1, pointing at the Destination Options header's Next Header octet.
    assert (chain.icmp_code, chain.icmp_pointer) == (1, 40)


def test_destination_options_then_routing_with_no_segments_left_reach_the_upper_layer() -> None:
    chain = walk(
        HBH,
        build_options_header(DST)
        + build_options_header(RT, ((0x1E, b"ab"),))
        + build_routing_header(UDP, 0, 0)
        + b"u" * 8,
    )
    assert chain.verdict is ChainVerdict.OK
    assert chain.headers == (HBH, DST, RT)
    assert (chain.upper_protocol, chain.upper_offset, chain.next_header_field) == (UDP, 24, 56)


@pytest.mark.parametrize("routing_type", [0, 2, 3, 4, 253])
def test_routing_with_segments_left_points_at_the_routing_type(routing_type: int) -> None:
    chain = walk(DST, build_options_header(RT) + build_routing_header(UDP, routing_type, 1))
    assert chain.verdict is ChainVerdict.PARAMETER_PROBLEM
    assert (chain.icmp_code, chain.icmp_pointer) == (0, 40 + 8 + 2)
    assert ("deprecated" in chain.reason) == (routing_type == 0)


@pytest.mark.parametrize(
    ("option", "dst", "verdict", "code"),
    [
        (0x1E, B, ChainVerdict.OK, 0),  # 00: skip
        (0x5E, B, ChainVerdict.DROP, 0),  # 01: discard silently
        (0x9E, B, ChainVerdict.PARAMETER_PROBLEM, 2),  # 10: discard + problem
        (0x9E, GROUP, ChainVerdict.PARAMETER_PROBLEM, 2),  # 10: even to multicast
        (0xDE, B, ChainVerdict.PARAMETER_PROBLEM, 2),  # 11: problem if unicast
        (0xDE, GROUP, ChainVerdict.DROP, 0),  # 11: silent if multicast
        (0xC2, B, ChainVerdict.PARAMETER_PROBLEM, 2),  # Jumbo Payload: not supported
    ],
)
def test_unrecognized_options_follow_their_two_high_bits(
    option: int, dst: IPv6Address, verdict: ChainVerdict, code: int
) -> None:
    # Pad1 first, so the option type sits at payload offset 3 (2 + the Pad1).
    header = bytes((UDP, 0, 0, option, 2, 0, 0, 0))
    chain = walk(DST, header + b"u" * 8, dst)
    assert chain.verdict is verdict
    assert chain.icmp_code == code
    if verdict is ChainVerdict.PARAMETER_PROBLEM:
        assert chain.icmp_pointer == 40 + 3
    if verdict is ChainVerdict.OK:
        assert chain.upper_offset == 8


def test_options_header_pads_to_eight_with_pad1_and_padn() -> None:
    assert build_options_header(UDP) == bytes((UDP, 0, 1, 4, 0, 0, 0, 0))
    assert build_options_header(UDP, ((0x1E, b"abc"),)) == bytes((UDP, 0, 0x1E, 3)) + b"abc\x00"
    assert len(build_options_header(UDP, ((0x1E, bytes(20)),))) == 24


def test_no_next_header_is_a_silent_drop_not_an_unknown_protocol() -> None:
    chain = walk(DST, build_options_header(NextHeader.NO_NEXT_HEADER) + b"ignored!")
    assert chain.verdict is ChainVerdict.DROP
    assert chain.upper_protocol == NextHeader.NO_NEXT_HEADER


def test_the_kernels_fragments_report_offset_more_ident_and_where_the_data_starts() -> None:
    first_header, first = parse_ipv6(parse_ethernet(cap.FRAGMENT_FIRST)[1])
    last_header, last = parse_ipv6(parse_ethernet(cap.FRAGMENT_LAST)[1])
    one = walk_extension_headers(first_header, first)
    two = walk_extension_headers(last_header, last)
    assert one.verdict is two.verdict is ChainVerdict.OK
    assert one.fragment is not None and two.fragment is not None
    assert (one.fragment.offset, one.fragment.more, one.fragment.ident) == (0, True, 0x38659270)
    assert (two.fragment.offset, two.fragment.more, two.fragment.ident) == (1448, False, 0x38659270)
    assert one.fragment.header_offset == 0 and one.fragment.unfragmentable_length == 0
    assert one.fragment.next_header_field == 6 and one.fragment.next_header == ICMPV6
    assert (one.upper_protocol, one.upper_offset) == (ICMPV6, 8)
    assert len(first) - one.upper_offset == 1448  # a multiple of 8, as RFC 8200 requires
    assert bytes(first[:8]) == build_fragment_header(ICMPV6, 0, True, 0x38659270)


def test_a_fragment_after_hop_by_hop_keeps_it_in_the_unfragmentable_part() -> None:
    fragment = build_fragment_header(UDP, 8, True, 7)
    chain = walk(HBH, build_options_header(FRAG) + fragment + bytes(16))
    assert chain.fragment is not None
    assert chain.fragment.unfragmentable_length == 8
    assert chain.fragment.data_offset == 16
    assert chain.fragment.next_header_field == 40  # patched to UDP on reassembly
    assert chain.headers == (HBH, FRAG)


def test_a_non_last_fragment_not_a_multiple_of_eight_points_at_payload_length() -> None:
    chain = walk(FRAG, build_fragment_header(UDP, 0, True, 1) + bytes(13))
    assert chain.verdict is ChainVerdict.PARAMETER_PROBLEM
    assert (chain.icmp_code, chain.icmp_pointer) == (0, 4)


def test_a_fragment_ending_past_65535_points_at_its_offset_field() -> None:
    chain = walk(FRAG, build_fragment_header(UDP, 65528, False, 1) + bytes(16))
    assert chain.verdict is ChainVerdict.PARAMETER_PROBLEM
    assert (chain.icmp_code, chain.icmp_pointer) == (0, 42)


def test_more_than_eight_extension_headers_are_refused() -> None:
    chain = b"".join(build_options_header(DST) for _ in range(8)) + build_options_header(UDP)
    with pytest.raises(WireError) as info:
        walk(DST, chain)
    assert info.value.field == "header_count"
    assert walk(DST, chain[8:]).verdict is ChainVerdict.OK  # exactly eight pass


def test_a_header_running_past_the_payload_is_refused() -> None:
    with pytest.raises(WireError) as info:
        walk(DST, bytes((UDP, 1)) + bytes(6))  # says 16 bytes, has 8
    assert (info.value.field, info.value.value) == ("header_length", 16)
    with pytest.raises(WireError) as info:
        walk(DST, b"\x11")
    assert info.value.field == "length"


def test_an_option_running_past_its_header_is_refused() -> None:
    with pytest.raises(WireError) as info:
        walk(DST, bytes((UDP, 0, 0x1E, 9, 0, 0, 0, 0)))
    assert info.value.field == "option_length"


def test_a_router_alert_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(WireError) as info:
        walk(HBH, bytes((UDP, 0, 5, 1, 0, 1, 0, 0)))
    assert info.value.field == "router_alert_length"


def test_builders_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(WireUsageError):
        build_fragment_header(UDP, 12, False, 1)
    with pytest.raises(WireUsageError):
        build_fragment_header(UDP, 0, False, 1 << 32)
    with pytest.raises(WireUsageError):
        build_options_header(256)
    with pytest.raises(WireUsageError):
        build_options_header(UDP, ((1, bytes(256)),))
    with pytest.raises(WireUsageError):
        build_routing_header(UDP, 0, 0, bytes(5))
