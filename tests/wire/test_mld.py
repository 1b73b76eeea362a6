"""MLD: the kernel's MLDv2 reports, queries of both versions, the float encodings."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.wire import ipv6_captures as cap
from vipernet.wire import (
    Icmpv6Other,
    Icmpv6Type,
    MldQuery,
    MldV2Report,
    MulticastAddressRecord,
    WireError,
    WireUsageError,
    build_mld,
    parse_ethernet,
    parse_icmpv6,
    parse_ipv6,
    parse_mld,
    walk_extension_headers,
)
from vipernet.wire.mld import (
    MldV1Message,
    RecordType,
    build_mld_report,
    decode_max_response_code,
    decode_qqic,
    encode_max_response_code,
    encode_qqic,
)

ROUTER = IPv6Address("fe80::1")
LL_B = IPv6Address("fe80::5055:aff:fe00:202")
ALL_NODES, MLDV2_ROUTERS = IPv6Address("ff02::1"), IPv6Address("ff02::16")
GROUP = IPv6Address("ff02::1:ff00:2")


def test_the_kernels_mldv2_report_decodes_and_rebuilds_byte_for_byte() -> None:
    header, payload = parse_ipv6(parse_ethernet(cap.MLD_REPORT)[1])
    assert header.hop_limit == 1
    chain = walk_extension_headers(header, payload)
    icmp = bytes(payload[chain.upper_offset :])
    message = parse_icmpv6(icmp, header.src, header.dst)
    assert isinstance(message, Icmpv6Other) and message.type == Icmpv6Type.MLDV2_REPORT
    report = parse_mld(message.type, message.body)
    assert report == MldV2Report(
        records=(
            MulticastAddressRecord(
                record_type=RecordType.CHANGE_TO_EXCLUDE, multicast_address=GROUP
            ),
            MulticastAddressRecord(
                record_type=RecordType.CHANGE_TO_EXCLUDE,
                multicast_address=IPv6Address("ff02::1:ff00:202"),
            ),
        )
    )
    assert isinstance(report, MldV2Report)
    assert build_mld_report(report.records, LL_B) == icmp


def test_a_general_mldv2_query_has_the_rfc3810_layout() -> None:
    query = MldQuery(max_response_code=10000, multicast_address=IPv6Address("::"), qrv=2, qqic=125)
    raw = build_mld(query, ROUTER, ALL_NODES)
    assert len(raw) == 28
    assert raw[4:].hex() == "27100000" + "00" * 16 + "027d0000"
    parsed = parse_mld(130, raw[4:])
    assert parsed == query
    assert isinstance(parsed, MldQuery) and parsed.is_general and parsed.max_response_ms == 10000


def test_an_mldv1_query_is_told_apart_by_its_24_byte_length() -> None:
    query = MldQuery(max_response_code=1000, multicast_address=GROUP, version=1)
    raw = build_mld(query, ROUTER, GROUP)
    assert len(raw) == 24
    parsed = parse_mld(130, raw[4:])
    assert parsed == query
    assert isinstance(parsed, MldQuery) and parsed.max_response_ms == 1000


def test_a_source_specific_query_round_trips_with_the_s_flag() -> None:
    sources = (IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"))
    query = MldQuery(
        max_response_code=0xFFFF,
        multicast_address=IPv6Address("ff0e::101"),
        suppress=True,
        qrv=7,
        qqic=0xFF,
        sources=sources,
    )
    raw = build_mld(query, ROUTER, query.multicast_address)
    assert raw[24] == 0x0F and len(raw) == 28 + 32
    assert parse_mld(130, raw[4:]) == query


@pytest.mark.parametrize("length", [21, 22, 23, 0, 19])
def test_a_query_of_neither_length_is_refused(length: int) -> None:
    with pytest.raises(WireError) as info:
        parse_mld(130, bytes(length))
    assert info.value.layer == "mld" and info.value.field == "length"


def test_a_query_promising_more_sources_than_it_holds_is_refused() -> None:
    raw = bytes(20) + b"\x02\x7d\x00\x02" + bytes(16)
    with pytest.raises(WireError) as info:
        parse_mld(130, raw)
    assert (info.value.field, info.value.value) == ("sources", 2)


def test_a_query_for_a_unicast_group_is_refused() -> None:
    raw = bytes(4) + IPv6Address("fd01::1").packed
    with pytest.raises(WireError) as info:
        parse_mld(130, raw)
    assert info.value.field == "multicast_address"


def test_mldv1_report_and_done_parse() -> None:
    for icmp_type in (Icmpv6Type.MLD_REPORT, Icmpv6Type.MLD_DONE):
        message = MldV1Message(type=icmp_type, multicast_address=GROUP)
        raw = build_mld(message, LL_B, GROUP)
        assert parse_mld(icmp_type, raw[4:]) == message
    with pytest.raises(WireError):
        parse_mld(131, bytes(19))


def test_report_records_with_sources_and_aux_data_round_trip() -> None:
    report = MldV2Report(
        records=(
            MulticastAddressRecord(
                record_type=RecordType.ALLOW_NEW_SOURCES,
                multicast_address=IPv6Address("ff3e::8000:1"),
                sources=(IPv6Address("2001:db8::5"),),
                aux_data=b"abcd",
            ),
            MulticastAddressRecord(record_type=99, multicast_address=GROUP),
        )
    )
    assert parse_mld(143, build_mld(report, LL_B, MLDV2_ROUTERS)[4:]) == report


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\x00\x00\x00\x01" + bytes(19), "records"),
        (b"\x00\x00\x00\x01\x04\x00\x00\x01" + bytes(16), "record_length"),
        (b"\x00\x00\x00\x01\x04\x01\x00\x00" + bytes(19), "record_length"),
        (b"\x00\x00", "length"),
    ],
)
def test_a_report_whose_records_do_not_fit_is_refused(raw: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_mld(143, raw)
    assert info.value.field == field


def test_other_types_are_not_mld() -> None:
    with pytest.raises(WireError) as info:
        parse_mld(133, bytes(24))
    assert info.value.field == "type"


def test_builders_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(WireUsageError):
        build_mld(MldQuery(max_response_code=1, multicast_address=GROUP, qrv=8), ROUTER, GROUP)
    with pytest.raises(WireUsageError):
        build_mld(MldQuery(max_response_code=1 << 16, multicast_address=GROUP), ROUTER, GROUP)
    record = MulticastAddressRecord(record_type=1, multicast_address=GROUP, aux_data=b"abc")
    with pytest.raises(WireUsageError):
        build_mld_report([record], LL_B)


def test_the_floating_point_codes_decode_as_rfc3810_says() -> None:
    assert decode_max_response_code(32767) == 32767
    assert decode_max_response_code(0x8000) == 0x1000 << 3 == 32768
    assert decode_max_response_code(0xFFFF) == 0x1FFF << 10 == 8387584
    assert decode_qqic(127) == 127
    assert decode_qqic(0x80) == 0x10 << 3 == 128
    assert decode_qqic(0xFF) == 0x1F << 10 == 31744


@given(st.integers(0, 0xFFFF))
def test_max_response_codes_survive_decode_then_encode(code: int) -> None:
    assert encode_max_response_code(decode_max_response_code(code)) == code


@given(st.integers(0, 10_000_000))
def test_encoding_a_delay_rounds_it_down_to_a_representable_one(ms: int) -> None:
    value = decode_max_response_code(encode_max_response_code(ms))
    assert value <= ms or ms > 8387584
    assert value >= min(ms, 8387584) * 0.999


@given(st.integers(0, 0xFF))
def test_qqic_codes_survive_decode_then_encode(code: int) -> None:
    assert encode_qqic(decode_qqic(code)) == code
