"""Ethernet II frames: destination MAC, source MAC, EtherType, payload.

The frame check sequence is never seen (the TAP device and QEMU strip it), and frames
shorter than 60 bytes are padded by whoever sends them; upper layers trim that padding by
their own length fields (IPv4 total length, ARP's fixed size), so it is ignored here.
802.1Q tags are not decoded: a tagged frame parses with ``ethertype == 0x8100`` and the
stack drops it as an unknown EtherType.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from vipernet.wire._construct import fast_constructor
from vipernet.wire.errors import WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

HEADER_LENGTH = 14
MIN_FRAME_LENGTH = 60  # without the FCS
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = bytes(6)

_HEADER = struct.Struct("!6s6sH")


class EtherType(enum.IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    IPV6 = 0x86DD


_ETHERTYPES: dict[int, EtherType] = {int(t): t for t in EtherType}


@dataclass(frozen=True, slots=True, kw_only=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: EtherType | int  # unknown values are kept as plain ints


_new_header = fast_constructor(EthernetHeader)


def parse_ethernet(frame: Bytes) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into its header and a zero-copy view of the payload."""
    if len(frame) < HEADER_LENGTH:
        raise truncated("ethernet", len(frame), HEADER_LENGTH)
    view = memoryview(frame)
    dst, src, ethertype = _HEADER.unpack_from(view)
    header: EthernetHeader = _new_header(dst, src, _ETHERTYPES.get(ethertype, ethertype))
    return header, view[HEADER_LENGTH:]


def build_ethernet(header: EthernetHeader, payload: Bytes) -> bytes:
    """Header + payload; the caller pads to 60 bytes only if its device does not."""
    if len(header.dst) != 6 or len(header.src) != 6:
        raise WireUsageError("ethernet: MAC addresses must be 6 bytes")
    if not 0 <= header.ethertype <= 0xFFFF:
        raise WireUsageError(f"ethernet: ethertype {header.ethertype} out of range")
    return b"".join((_HEADER.pack(header.dst, header.src, header.ethertype), payload))


def mac_to_str(mac: Bytes) -> str:
    """``b"\\x52\\x54\\0\\x12\\x34\\x56"`` -> ``"52:54:00:12:34:56"``."""
    return bytes(mac).hex(":")


def mac_from_str(text: str) -> bytes:
    """``"52:54:00:12:34:56"`` (or with ``-``) -> 6 bytes; ``WireUsageError`` otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise WireUsageError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise WireUsageError(f"not a MAC address: {text!r}") from None


def is_multicast(mac: Bytes) -> bool:
    """True for group addresses (broadcast included): the I/G bit of the first octet."""
    return bool(mac[0] & 1)
