"""IPv6 fixed header, the derived addresses, and the IPv6 pseudo-header sum."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    IPv6Header,
    NextHeader,
    WireError,
    WireUsageError,
    build_ipv6,
    build_ipv6_packet,
    internet_checksum,
    link_local_from_mac,
    multicast_mac,
    ones_complement_sum,
    parse_ethernet,
    parse_ipv6,
    parse_quoted_ipv6,
    pseudo_header_sum_v6,
    solicited_node,
)
from vipernet.wire.ipv6 import (
    address_from_prefix,
    eui64_interface_id,
    is_solicited_node,
    multicast_scope,
)

A, B = IPv6Address("fd01::1"), IPv6Address("fd01::2")
MAC_A, MAC_B = bytes.fromhex("525400123456"), bytes.fromhex("52550a000202")


def ip_of(frame: bytes) -> bytes:
    return bytes(parse_ethernet(frame)[1])


def test_kernel_echo_request_header_parses_to_its_fields() -> None:
    header, payload = parse_ipv6(ip_of(cap.ECHO_REQUEST))
    assert header == IPv6Header(
        src=A,
        dst=B,
        next_header=NextHeader.ICMPV6,
        hop_limit=64,
        traffic_class=0,
        flow_label=0xDDC43,
        payload_length=24,
    )
    assert len(payload) == 24 and payload[0] == 128


def test_build_gives_back_the_kernel_header_byte_for_byte() -> None:
    packet = ip_of(cap.ECHO_REQUEST)
    header, payload = parse_ipv6(packet)
    assert build_ipv6(header, len(payload)) == packet[:40]
    assert build_ipv6_packet(header, payload) == packet


def test_round_trip_with_traffic_class_and_flow_label() -> None:
    header = IPv6Header(
        src=A, dst=B, next_header=200, hop_limit=1, traffic_class=0xB8, flow_label=0xFFFFF
    )
    parsed, payload = parse_ipv6(build_ipv6_packet(header, b"xyz"))
    assert parsed == IPv6Header(
        src=A,
        dst=B,
        next_header=200,
        hop_limit=1,
        traffic_class=0xB8,
        flow_label=0xFFFFF,
        payload_length=3,
    )
    assert bytes(payload) == b"xyz"


def test_ethernet_padding_past_the_payload_length_is_cut_off() -> None:
    packet = build_ipv6_packet(IPv6Header(src=A, dst=B, next_header=17), b"abc")
    _, payload = parse_ipv6(packet + bytes(20))
    assert bytes(payload) == b"abc"


def test_a_buffer_shorter_than_the_fixed_header_is_refused() -> None:
    with pytest.raises(WireError) as info:
        parse_ipv6(bytes(39))
    assert (info.value.layer, info.value.field, info.value.value) == ("ipv6", "length", 39)


def test_a_version_other_than_6_is_refused() -> None:
    packet = bytearray(build_ipv6(IPv6Header(src=A, dst=B, next_header=59), 0))
    packet[0] = 0x45
    with pytest.raises(WireError) as info:
        parse_ipv6(bytes(packet))
    assert (info.value.field, info.value.value) == ("version", 4)


def test_a_payload_length_past_the_buffer_is_refused() -> None:
    packet = build_ipv6(IPv6Header(src=A, dst=B, next_header=17), 8) + bytes(7)
    with pytest.raises(WireError) as info:
        parse_ipv6(packet)
    assert (info.value.field, info.value.value) == ("payload_length", 8)


def test_a_jumbogram_is_refused_by_name() -> None:
    packet = build_ipv6(IPv6Header(src=A, dst=B, next_header=NextHeader.HOP_BY_HOP), 0)
    with pytest.raises(WireError, match="jumbogram") as info:
        parse_ipv6(packet + bytes(16))
    assert info.value.field == "payload_length"


def test_an_empty_payload_without_hop_by_hop_is_just_empty() -> None:
    packet = build_ipv6(IPv6Header(src=A, dst=B, next_header=NextHeader.NO_NEXT_HEADER), 0)
    header, payload = parse_ipv6(packet)
    assert header.payload_length == 0 and len(payload) == 0


def test_a_quoted_header_may_promise_more_payload_than_was_quoted() -> None:
    packet = build_ipv6(IPv6Header(src=A, dst=B, next_header=17), 1000) + b"12345678"
    header, payload = parse_quoted_ipv6(packet)
    assert header.payload_length == 1000 and bytes(payload) == b"12345678"
    with pytest.raises(WireError):
        parse_ipv6(packet)


def test_the_kernel_quote_in_its_port_unreachable_parses() -> None:
    _, payload = parse_ipv6(ip_of(cap.PORT_UNREACHABLE))
    quoted, start = parse_quoted_ipv6(bytes(payload[8:]))
    assert (quoted.src, quoted.dst, quoted.next_header) == (A, B, NextHeader.UDP)
    assert bytes(start[2:4]) == b"\x00\x09"  # the closed port


@pytest.mark.parametrize(
    ("field", "value"), [("traffic_class", 256), ("flow_label", 1 << 20), ("hop_limit", 256)]
)
def test_build_refuses_fields_out_of_range(field: str, value: int) -> None:
    header = IPv6Header(src=A, dst=B, next_header=17, **{field: value})
    with pytest.raises(WireUsageError):
        build_ipv6(header, 0)


def test_build_refuses_a_payload_length_over_65535() -> None:
    with pytest.raises(WireUsageError):
        build_ipv6(IPv6Header(src=A, dst=B, next_header=17), 65536)


def test_solicited_node_group_matches_the_kernels_ns_destination() -> None:
    header, _ = parse_ipv6(ip_of(cap.NS))
    assert solicited_node(B) == header.dst == IPv6Address("ff02::1:ff00:2")
    assert solicited_node(IPv6Address("fe80::5054:ff:fe12:3456")) == IPv6Address(
        "ff02::1:ff12:3456"
    )
    assert is_solicited_node(header.dst) and not is_solicited_node(B)


def test_multicast_mac_matches_the_kernels_ethernet_destination() -> None:
    eth, payload = parse_ethernet(cap.NS)
    header, _ = parse_ipv6(payload)
    assert multicast_mac(header.dst) == eth.dst == bytes.fromhex("3333ff000002")
    assert multicast_mac(IPv6Address("ff02::16")) == bytes.fromhex("333300000016")
    with pytest.raises(WireUsageError):
        multicast_mac(A)


def test_link_local_from_mac_is_the_kernels_modified_eui64_address() -> None:
    assert link_local_from_mac(MAC_A) == IPv6Address("fe80::5054:ff:fe12:3456")
    assert link_local_from_mac(MAC_B) == IPv6Address("fe80::5055:aff:fe00:202")
    # RFC 4291 appendix A: the universal/local bit is inverted, both ways.
    assert eui64_interface_id(bytes.fromhex("020000000001")) == 0x000000FFFE000001
    with pytest.raises(WireUsageError):
        eui64_interface_id(b"12345")


def test_slaac_address_is_the_prefix_plus_the_interface_id() -> None:
    assert address_from_prefix(IPv6Network("fd01::/64"), MAC_A) == IPv6Address(
        "fd01::5054:ff:fe12:3456"
    )
    with pytest.raises(WireUsageError):
        address_from_prefix(IPv6Network("fd01::/48"), MAC_A)


def test_multicast_scope_is_the_low_nibble_of_the_second_octet() -> None:
    assert multicast_scope(IPv6Address("ff02::1")) == 2
    assert multicast_scope(IPv6Address("ff0e::1")) == 14
    with pytest.raises(WireUsageError):
        multicast_scope(A)


def test_pseudo_header_sum_v6_is_what_the_kernel_leaves_in_a_partial_udp_checksum() -> None:
    # Over veth Linux leaves the UDP checksum partial: the field holds the folded
    # pseudo-header sum for the device to complete (as on lo for IPv4).
    header, payload = parse_ipv6(ip_of(cap.UDP))
    pseudo = pseudo_header_sum_v6(header.src, header.dst, 17, len(payload))
    assert int.from_bytes(payload[6:8], "big") == pseudo == 0xFA24


def test_pseudo_header_sum_v6_verifies_the_kernels_icmpv6_checksum() -> None:
    header, payload = parse_ipv6(ip_of(cap.PORT_UNREACHABLE))
    pseudo = pseudo_header_sum_v6(header.src, header.dst, 58, len(payload))
    assert internet_checksum(payload, pseudo) == 0


addresses = st.integers(0, (1 << 128) - 1).map(IPv6Address)


@given(addresses, addresses, st.integers(0, 255), st.integers(0, (1 << 32) - 1))
def test_pseudo_header_sum_v6_equals_the_sum_of_the_explicit_pseudo_header(
    src: IPv6Address, dst: IPv6Address, next_header: int, length: int
) -> None:
    explicit = src.packed + dst.packed + length.to_bytes(4, "big") + bytes(3)
    explicit += bytes((next_header,))
    assert pseudo_header_sum_v6(src, dst, next_header, length) == ones_complement_sum(explicit)


@given(
    addresses,
    addresses,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, (1 << 20) - 1),
    st.binary(max_size=64),
)
def test_parse_of_build_is_identity(
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    hop_limit: int,
    traffic_class: int,
    flow_label: int,
    payload: bytes,
) -> None:
    header = IPv6Header(
        src=src,
        dst=dst,
        next_header=next_header,
        hop_limit=hop_limit,
        traffic_class=traffic_class,
        flow_label=flow_label,
        payload_length=len(payload),
    )
    if next_header == 0 and not payload:
        return  # a jumbogram's marker, refused on purpose
    parsed, body = parse_ipv6(build_ipv6_packet(header, payload))
    assert parsed == header and bytes(body) == payload
