"""Neighbor Discovery: the kernel's RS/NS/NA and dnsmasq's RA, options, RFC 4861 checks."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    Icmpv6Other,
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    WireError,
    WireUsageError,
    build_icmpv6,
    build_ndp,
    parse_ethernet,
    parse_icmpv6,
    parse_ipv6,
    parse_ndp,
)
from vipernet.wire.ndp import (
    NdpMessage,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_router_advertisement,
    build_router_solicitation,
    ndp_message_valid,
)
from vipernet.wire.ndp_options import (
    MtuOption,
    NdpOptionType,
    PrefixInformation,
    RawNdpOption,
    RecursiveDnsServer,
    RedirectedHeader,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    build_ndp_option,
    first_option,
    parse_ndp_options,
)

A, B = IPv6Address("fd01::1"), IPv6Address("fd01::2")
MAC_A, MAC_B = bytes.fromhex("525400123456"), bytes.fromhex("52550a000202")
LL_A, LL_B = IPv6Address("fe80::5054:ff:fe12:3456"), IPv6Address("fe80::5055:aff:fe00:202")
UNSPECIFIED = IPv6Address("::")


def decode(frame: bytes) -> tuple[int, NdpMessage, bytes, IPv6Address, IPv6Address]:
    header, payload = parse_ipv6(parse_ethernet(frame)[1])
    assert ndp_message_valid(header.hop_limit, payload[1])
    message = parse_icmpv6(payload, header.src, header.dst)
    assert isinstance(message, Icmpv6Other)
    ndp = parse_ndp(message.type, message.body, header.src, header.dst)
    return message.type, ndp, bytes(payload), header.src, header.dst


def test_the_kernels_router_solicitation_is_what_we_build() -> None:
    _, rs, raw, src, dst = decode(cap.RS)
    assert rs == RouterSolicitation(options=(SourceLinkLayerAddress(address=MAC_B),))
    assert build_router_solicitation(src, MAC_B, dst) == raw
    assert len(build_router_solicitation(UNSPECIFIED, MAC_B)) == 8  # no SLLA from ::


def test_the_kernels_neighbor_solicitation_is_what_we_build() -> None:
    _, ns, raw, src, dst = decode(cap.NS)
    assert ns == NeighborSolicitation(target=B, options=(SourceLinkLayerAddress(address=MAC_A),))
    assert (src, dst) == (A, IPv6Address("ff02::1:ff00:2"))
    assert build_neighbor_solicitation(B, A, MAC_A) == raw


def test_the_kernels_dad_probe_carries_only_a_nonce() -> None:
    _, ns, _, src, dst = decode(cap.DAD_NS)
    assert src == UNSPECIFIED and isinstance(ns, NeighborSolicitation)
    assert ns.target == LL_B
    assert [type(o) for o in ns.options] == [RawNdpOption]
    assert isinstance(ns.options[0], RawNdpOption)
    assert ns.options[0].type == NdpOptionType.NONCE
    ours = build_neighbor_solicitation(LL_B, UNSPECIFIED, MAC_B)
    assert len(ours) == 24  # ours: no SLLA and no nonce
    parsed = parse_icmpv6(ours, UNSPECIFIED, dst)
    assert isinstance(parsed, Icmpv6Other)
    expected = NeighborSolicitation(target=LL_B)
    assert parse_ndp(parsed.type, parsed.body, UNSPECIFIED, dst) == expected


def test_the_kernels_neighbor_advertisements_are_what_we_build() -> None:
    _, na, raw, src, dst = decode(cap.NA)
    assert na == NeighborAdvertisement(
        target=B, solicited=True, override=True, options=(TargetLinkLayerAddress(address=MAC_B),)
    )
    assert build_neighbor_advertisement(B, src, dst, MAC_B) == raw
    _, na, raw, src, dst = decode(cap.NA_UNICAST_NO_TLLA)
    assert na == NeighborAdvertisement(target=A, solicited=True)
    assert build_neighbor_advertisement(A, src, dst, None, override=False) == raw


def test_dnsmasqs_router_advertisement_decodes_and_rebuilds_byte_for_byte() -> None:
    _, ra, raw, src, dst = decode(cap.RA)
    assert isinstance(ra, RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.managed, ra.other_config, ra.router_lifetime) == (
        64,
        False,
        False,
        1800,
    )
    prefix = first_option(ra.options, PrefixInformation)
    assert prefix is not None and prefix.network == IPv6Network("fd01::/64")
    assert prefix.on_link and prefix.autonomous and prefix.valid_lifetime == 3600
    assert first_option(ra.options, MtuOption) == MtuOption(mtu=1500)
    assert first_option(ra.options, SourceLinkLayerAddress) == SourceLinkLayerAddress(address=MAC_B)
    assert first_option(ra.options, RecursiveDnsServer) == RecursiveDnsServer(
        lifetime=3600, servers=(IPv6Address("fd01::53"),)
    )
    assert first_option(ra.options, RedirectedHeader) is None
    assert build_router_advertisement(ra, src, dst) == raw


def test_router_advertisement_flags_round_trip() -> None:
    ra = RouterAdvertisement(
        cur_hop_limit=255,
        managed=True,
        other_config=True,
        router_lifetime=65535,
        reachable_time=30000,
        retrans_timer=1000,
        other_flags=0x18,  # RFC 4191 preference "low"
        options=(RawNdpOption(type=NdpOptionType.DNSSL, data=bytes(14)),),
    )
    raw = build_ndp(ra, LL_B, LL_A)
    assert raw[5] == 0x80 | 0x40 | 0x18
    body = raw[4:]
    assert parse_ndp(134, body, LL_B, LL_A) == ra


def test_redirect_round_trips_with_a_redirected_header() -> None:
    redirect = Redirect(
        target=LL_B,
        destination=IPv6Address("2001:db8::1"),
        options=(
            TargetLinkLayerAddress(address=MAC_B),
            RedirectedHeader(quoted=b"\x60" + bytes(47)),
        ),
    )
    raw = build_ndp(redirect, LL_A, A)
    assert parse_ndp(137, raw[4:], LL_A, A) == redirect
    on_link = Redirect(target=B, destination=B)
    assert parse_ndp(137, build_ndp(on_link, LL_A, A)[4:], LL_A, A) == on_link


def test_hop_limit_and_code_are_checked_by_the_helper() -> None:
    assert ndp_message_valid(255, 0)
    assert not ndp_message_valid(254, 0) and not ndp_message_valid(255, 1)


def body(message: NdpMessage, src: IPv6Address, dst: IPv6Address) -> bytes:
    return build_ndp(message, src, dst)[4:]


@pytest.mark.parametrize(
    ("icmp_type", "raw", "src", "dst", "field"),
    [
        (135, bytes(19), A, B, "length"),  # NS shorter than 24
        (136, bytes(4) + IPv6Address("ff02::1").packed, A, B, "target"),
        (135, bytes(4) + IPv6Address("ff02::1").packed, A, B, "target"),
        (135, bytes(4) + B.packed, UNSPECIFIED, B, "dst"),  # DAD not to solicited-node
        (
            135,
            bytes(4) + B.packed + b"\x01\x01" + MAC_A,
            UNSPECIFIED,
            IPv6Address("ff02::1:ff00:2"),
            "source_link_layer_address",
        ),
        (
            133,
            bytes(4) + b"\x01\x01" + MAC_A,
            UNSPECIFIED,
            IPv6Address("ff02::2"),
            "source_link_layer_address",
        ),
        (136, b"\x40" + bytes(3) + B.packed, B, IPv6Address("ff02::1"), "solicited"),
        (134, bytes(12), A, IPv6Address("ff02::1"), "src"),  # RA not from link-local
        (134, bytes(11), LL_B, IPv6Address("ff02::1"), "length"),
        (137, bytes(4) + LL_B.packed + A.packed, A, B, "src"),
        (137, bytes(4) + LL_B.packed + IPv6Address("ff02::1").packed, LL_A, B, "destination"),
        (137, bytes(4) + A.packed + B.packed, LL_A, B, "target"),
        (137, bytes(35), LL_A, B, "length"),
        (138, bytes(20), A, B, "type"),
    ],
)
def test_rfc4861_validity_checks_raise_wire_error_naming_the_field(
    icmp_type: int, raw: bytes, src: IPv6Address, dst: IPv6Address, field: str
) -> None:
    with pytest.raises(WireError) as info:
        parse_ndp(icmp_type, raw, src, dst)
    assert info.value.layer == "ndp" and info.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (b"\x01\x00" + bytes(6), "option_length"),  # length 0 (RFC 4861 4.6)
        (b"\x01\x02" + bytes(6), "option_length"),  # runs past the end
        (b"\x01", "option_length"),  # a lone type octet
        (b"\x03\x01" + bytes(6), "prefix_information_length"),
        (b"\x05\x02" + bytes(14), "mtu_length"),
        (b"\x19\x02" + bytes(14), "rdnss_length"),
        (b"\x19\x01" + bytes(6), "rdnss_length"),
        (bytes((3, 4, 129)) + bytes(29), "prefix_length"),
    ],
)
def test_malformed_options_make_the_message_invalid(options: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_ndp(135, bytes(4) + B.packed + options, A, B)
    assert info.value.field == field


def test_every_option_round_trips() -> None:
    options = (
        SourceLinkLayerAddress(address=MAC_A),
        TargetLinkLayerAddress(address=bytes(14)),
        PrefixInformation(
            prefix_length=48,
            on_link=False,
            autonomous=True,
            valid_lifetime=0xFFFFFFFF,
            preferred_lifetime=0,
            prefix=IPv6Address("2001:db8::"),
            other_flags=0x20,
        ),
        RedirectedHeader(quoted=bytes(16)),
        MtuOption(mtu=9000),
        RecursiveDnsServer(lifetime=1, servers=(A, B, LL_A)),
        RawNdpOption(type=200, data=bytes(6)),
    )
    raw = b"".join(build_ndp_option(option) for option in options)
    assert parse_ndp_options(raw) == options


def test_option_builders_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(WireUsageError):
        build_ndp_option(SourceLinkLayerAddress(address=bytes(5)))
    with pytest.raises(WireUsageError):
        build_ndp_option(RecursiveDnsServer(lifetime=1, servers=()))
    with pytest.raises(WireUsageError):
        build_ndp_option(MtuOption(mtu=1 << 32))
    with pytest.raises(WireUsageError):
        build_ndp(RouterAdvertisement(cur_hop_limit=256), LL_A, A)


def test_a_redirected_header_is_padded_to_eight() -> None:
    raw = build_ndp_option(RedirectedHeader(quoted=b"abc"))
    assert raw == bytes((4, 2)) + bytes(6) + b"abc" + bytes(5)


def test_icmpv6_hands_ndp_its_body() -> None:
    raw = build_icmpv6(133, 0, bytes(4), LL_A, IPv6Address("ff02::2"))
    message = parse_icmpv6(raw, LL_A, IPv6Address("ff02::2"))
    assert isinstance(message, Icmpv6Other)
    assert parse_ndp(message.type, message.body, LL_A, IPv6Address("ff02::2")) == (
        RouterSolicitation()
    )
    assert body(RouterSolicitation(), LL_A, A) == bytes(4)
