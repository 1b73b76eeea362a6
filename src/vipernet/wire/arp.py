"""ARP for IPv4 over Ethernet (RFC 826): the only hardware/protocol pair we speak.

Parsing checks integrity (at least 28 bytes; trailing Ethernet padding is ignored) and
then sanity: hardware type 1 with 6-byte addresses, protocol type 0x0800 with 4-byte
addresses, and an operation we know (request or reply).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from vipernet.wire.errors import WireError, WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

PACKET_LENGTH = 28
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800

_PACKET = struct.Struct("!HHBBH6sI6sI")


class ArpOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ArpPacket:
    op: ArpOp
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address


def parse_arp(data: Bytes) -> ArpPacket:
    if len(data) < PACKET_LENGTH:
        raise truncated("arp", len(data), PACKET_LENGTH)
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(data)
    if htype != HTYPE_ETHERNET:
        raise WireError("arp", "hardware_type", htype, f"hardware_type == {HTYPE_ETHERNET}")
    if ptype != PTYPE_IPV4:
        raise WireError("arp", "protocol_type", hex(ptype), f"protocol_type == {PTYPE_IPV4:#06x}")
    if hlen != 6:
        raise WireError("arp", "hardware_length", hlen, "hardware_length == 6")
    if plen != 4:
        raise WireError("arp", "protocol_length", plen, "protocol_length == 4")
    if op not in (1, 2):
        raise WireError("arp", "operation", op, "operation in (1 request, 2 reply)")
    return ArpPacket(
        op=ArpOp(op),
        sender_mac=sha,
        sender_ip=IPv4Address(spa),
        target_mac=tha,
        target_ip=IPv4Address(tpa),
    )


def build_arp(packet: ArpPacket) -> bytes:
    """The 28-byte ARP packet (Ethernet pads the frame to 60 bytes, not us)."""
    if len(packet.sender_mac) != 6 or len(packet.target_mac) != 6:
        raise WireUsageError("arp: MAC addresses must be 6 bytes")
    return _PACKET.pack(
        HTYPE_ETHERNET,
        PTYPE_IPV4,
        6,
        4,
        packet.op,
        packet.sender_mac,
        int(packet.sender_ip),
        packet.target_mac,
        int(packet.target_ip),
    )
