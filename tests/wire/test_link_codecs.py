"""Ethernet and ARP: known vectors, round trips, sanity checks."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vipernet.wire import (
    BROADCAST_MAC,
    ArpOp,
    ArpPacket,
    EthernetHeader,
    EtherType,
    WireError,
    WireUsageError,
    build_arp,
    build_ethernet,
    mac_from_str,
    mac_to_str,
    parse_arp,
    parse_ethernet,
)

STACK_MAC = bytes.fromhex("525400123456")
GATEWAY_MAC = bytes.fromhex("5255 0a00 0202".replace(" ", ""))

# A "who has 10.0.2.2? tell 10.0.2.15" request, field by field.
ARP_REQUEST_HEX = (
    "0001"
    "0800"
    "06"
    "04"
    "0001"  # Ethernet, IPv4, 6, 4, request
    "525400123456"
    "0a00020f"  # sender MAC / IP
    "000000000000"
    "0a000202"  # target MAC / IP
)
ARP_REQUEST = ArpPacket(
    op=ArpOp.REQUEST,
    sender_mac=STACK_MAC,
    sender_ip=IPv4Address("10.0.2.15"),
    target_mac=bytes(6),
    target_ip=IPv4Address("10.0.2.2"),
)


def test_ethernet_header_splits_into_macs_ethertype_and_payload() -> None:
    frame = bytes.fromhex("ffffffffffff5254001234560806") + b"payload"
    header, payload = parse_ethernet(frame)
    assert header == EthernetHeader(dst=BROADCAST_MAC, src=STACK_MAC, ethertype=EtherType.ARP)
    assert bytes(payload) == b"payload"
    assert build_ethernet(header, payload) == frame


def test_unknown_ethertype_is_kept_as_an_int() -> None:
    header, _ = parse_ethernet(bytes(12) + b"\x88\xcc")
    assert header.ethertype == 0x88CC and not isinstance(header.ethertype, EtherType)


def test_short_ethernet_frame_names_the_length() -> None:
    with pytest.raises(WireError, match=r"ethernet: length=13 violates length >= 14"):
        parse_ethernet(bytes(13))


def test_build_ethernet_refuses_a_short_mac() -> None:
    with pytest.raises(WireUsageError):
        build_ethernet(EthernetHeader(dst=b"\x01", src=STACK_MAC, ethertype=EtherType.IPV4), b"")


def test_mac_strings_round_trip_and_bad_ones_are_refused() -> None:
    assert mac_to_str(STACK_MAC) == "52:54:00:12:34:56"
    assert mac_from_str("52:54:00:12:34:56") == STACK_MAC
    assert mac_from_str("52-54-00-12-34-56") == STACK_MAC
    for bad in ("52:54:00:12:34", "52:54:00:12:34:5g", "5254.0012.3456", ""):
        with pytest.raises(WireUsageError):
            mac_from_str(bad)


def test_arp_request_matches_its_known_encoding() -> None:
    assert build_arp(ARP_REQUEST).hex() == ARP_REQUEST_HEX
    assert parse_arp(bytes.fromhex(ARP_REQUEST_HEX)) == ARP_REQUEST


def test_arp_ignores_ethernet_padding() -> None:
    padded = bytes.fromhex(ARP_REQUEST_HEX) + bytes(18)
    assert parse_arp(padded) == ARP_REQUEST


def test_arp_reply_round_trips() -> None:
    reply = ArpPacket(
        op=ArpOp.REPLY,
        sender_mac=GATEWAY_MAC,
        sender_ip=IPv4Address("10.0.2.2"),
        target_mac=STACK_MAC,
        target_ip=IPv4Address("10.0.2.15"),
    )
    assert parse_arp(build_arp(reply)) == reply


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\x00\x06", "hardware_type=6 violates hardware_type == 1"),
        (2, b"\x86\xdd", "protocol_type=0x86dd violates protocol_type == 0x0800"),
        (4, b"\x08", "hardware_length=8 violates hardware_length == 6"),
        (5, b"\x10", "protocol_length=16 violates protocol_length == 4"),
        (6, b"\x00\x03", "operation=3 violates"),
    ],
)
def test_arp_for_other_hardware_or_protocols_is_refused(
    offset: int, value: bytes, message: str
) -> None:
    raw = bytearray.fromhex(ARP_REQUEST_HEX)
    raw[offset : offset + len(value)] = value
    with pytest.raises(WireError, match=message):
        parse_arp(bytes(raw))
