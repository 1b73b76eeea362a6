"""DHCP message codec: round trips, known bytes, and hostile input as typed errors."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.dhcp.codec import (
    MAGIC_COOKIE,
    DhcpFormatError,
    DhcpMessage,
    DhcpUsageError,
    MessageType,
    Op,
    OptionCode,
    build_dhcp,
    parse_dhcp,
)
from vipernet.dhcp.frames import build_frame, is_dhcp_reply_frame, parse_frame
from vipernet.errors import ProtocolError
from vipernet.link.frame import Frame

MAC = bytes.fromhex("525400123456")


def discover() -> DhcpMessage:
    return DhcpMessage(op=Op.BOOTREQUEST, xid=0x12345678, chaddr=MAC, secs=3, flags=0x8000,
                       options=((OptionCode.MESSAGE_TYPE, b"\x01"), (OptionCode.CLIENT_ID,
                                                                     b"\x01" + MAC),
                                (200, b"unknown kept")))


def test_a_message_survives_a_round_trip_with_unknown_options_kept() -> None:
    message = discover()
    assert parse_dhcp(build_dhcp(message)) == message


def test_the_fixed_part_lands_at_the_rfc_offsets() -> None:
    data = build_dhcp(discover())
    assert len(data) == 300  # padded to the BOOTP minimum
    assert data[0] == 1 and data[1] == 1 and data[2] == 6  # op, htype, hlen
    assert data[4:8] == bytes.fromhex("12345678")
    assert data[8:10] == b"\x00\x03" and data[10:12] == b"\x80\x00"
    assert data[28:34] == MAC
    assert data[236:240] == MAGIC_COOKIE
    assert data[240:243] == bytes((53, 1, 1))


def test_accessors_decode_addresses_lists_and_seconds() -> None:
    message = DhcpMessage(op=Op.BOOTREPLY, xid=1, chaddr=MAC, options=(
        (OptionCode.MESSAGE_TYPE, b"\x05"),
        (OptionCode.DNS_SERVERS, bytes((1, 1, 1, 1, 8, 8, 8, 8))),
        (OptionCode.LEASE_TIME, (3600).to_bytes(4, "big")), (OptionCode.SERVER_ID, b"\x0a\0\2\2")))
    assert message.message_type == MessageType.ACK
    assert message.address_list_option(OptionCode.DNS_SERVERS) == (
        IPv4Address("1.1.1.1"), IPv4Address("8.8.8.8"))
    assert message.seconds_option(OptionCode.LEASE_TIME) == 3600
    assert message.address_option(OptionCode.SERVER_ID) == IPv4Address("10.0.2.2")
    assert message.address_option(OptionCode.ROUTER) is None


def test_pad_options_are_skipped() -> None:
    raw = bytearray(build_dhcp(discover(), pad_to=0))
    raw[240:240] = b"\0\0\0"
    assert parse_dhcp(bytes(raw)).options == discover().options


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b[:200], "length"),
    (lambda b: b"\x03" + b[1:], "op"),
    (lambda b: b[:2] + b"\x11" + b[3:], "hlen"),
    (lambda b: b[:236] + b"\0\0\0\0" + b[240:], "cookie"),
    (lambda b: b[:240] + bytes((53, 9, 1)), "option[53].length"),
    (lambda b: b[:240] + bytes((53,)), "option"),
    (lambda b: b[:240] + bytes((53, 1, 1)), "options"),
])
def test_malformed_messages_raise_a_typed_error_naming_the_field(mutate, field) -> None:  # type: ignore[no-untyped-def]
    raw = build_dhcp(discover(), pad_to=0)
    with pytest.raises(DhcpFormatError) as info:
        parse_dhcp(mutate(raw))
    assert info.value.field == field
    assert isinstance(info.value, ProtocolError)


def test_unencodable_messages_are_usage_errors() -> None:
    with pytest.raises(DhcpUsageError):
        build_dhcp(DhcpMessage(op=Op.BOOTREQUEST, xid=1, chaddr=bytes(17)))
    with pytest.raises(DhcpUsageError):
        build_dhcp(DhcpMessage(op=Op.BOOTREQUEST, xid=1, chaddr=MAC, options=((5, bytes(256)),)))
    with pytest.raises(DhcpUsageError):
        build_dhcp(DhcpMessage(op=Op.BOOTREQUEST, xid=2**32, chaddr=MAC))


def test_a_client_frame_goes_from_port_68_to_67_and_is_not_mistaken_for_a_reply() -> None:
    frame = build_frame(discover(), src_mac=MAC)
    assert frame[0:6] == b"\xff" * 6 and frame[6:12] == MAC
    assert frame[14 + 20:14 + 24] == bytes((0, 68, 0, 67))
    assert not is_dhcp_reply_frame(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_a_dhcp_error(data: bytes) -> None:
    with contextlib.suppress(DhcpFormatError):
        parse_dhcp(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=240, max_value=299), st.binary(min_size=1, max_size=8))
def test_corrupted_real_messages_parse_or_raise_a_dhcp_error(at: int, junk: bytes) -> None:
    raw = bytearray(build_dhcp(discover()))
    raw[at:at + len(junk)] = junk
    try:
        message = parse_dhcp(bytes(raw))
    except DhcpFormatError:
        return
    assert message.xid == 0x12345678


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_any_frame_to_port_68_parses_or_raises_a_protocol_error(tail: bytes) -> None:
    frame = build_frame(discover(), src_mac=MAC)
    data = frame[:14 + 20 + 8] + tail
    with contextlib.suppress(ProtocolError, ValueError):
        parse_frame(Frame(data))
