"""UDP (RFC 768) over IPv4 and IPv6, with the pseudo-header checksum.

The length field must cover at least the 8-byte header and at most the IP payload;
bytes past it are ignored.  Over IPv4 a checksum of 0 means the sender computed none;
otherwise it must verify.  Over IPv6 the checksum is mandatory (RFC 8200 8.1), so a zero
one is an error.  A computed checksum of 0 is sent as 0xFFFF (the same value in one's
complement) so that it does not read as "none".  The addresses' type picks the
pseudo-header (RFC 768's or RFC 8200 8.1's).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from vipernet.wire._construct import fast_constructor
from vipernet.wire.checksum import (
    internet_checksum,
    ones_complement_sum,
    pseudo_header_sum,
    pseudo_header_sum_v6,
)
from vipernet.wire.errors import WireError, WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

HEADER_LENGTH = 8
PROTO_UDP = 17
CHECKSUM_OFFSET = 6

_HEADER = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int = 0  # header + payload; filled in by parse
    checksum: int = 0  # as received; 0 means none was sent


_new_header = fast_constructor(UdpHeader)

IpAddress = IPv4Address | IPv6Address


def _pseudo(src: IpAddress, dst: IpAddress, length: int) -> int:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return pseudo_header_sum(src, dst, PROTO_UDP, length)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return pseudo_header_sum_v6(src, dst, PROTO_UDP, length)
    raise WireUsageError(f"udp: addresses of two families ({src}, {dst})")


def parse_udp(
    data: Bytes, *, src: IpAddress, dst: IpAddress, verify_checksum: bool = True
) -> tuple[UdpHeader, memoryview]:
    """Header and a view of the payload (trimmed to the UDP length).  ``src``/``dst`` are
    both IPv4 or both IPv6 addresses."""
    have = len(data)
    if have < HEADER_LENGTH:
        raise truncated("udp", have, HEADER_LENGTH)
    view = memoryview(data)
    sport, dport, length, csum = _HEADER.unpack_from(view)
    if length < HEADER_LENGTH:
        raise WireError("udp", "length", length, f"length >= {HEADER_LENGTH}")
    if length > have:
        raise WireError("udp", "length", length, f"length <= ip_payload_length ({have})")
    view = view[:length]
    if csum == 0 and src.version == 6:
        raise WireError("udp", "checksum", "0x0", "a checksum over IPv6 (RFC 8200 8.1)")
    if verify_checksum and csum != 0 and internet_checksum(view, _pseudo(src, dst, length)):
        raise WireError("udp", "checksum", hex(csum), "checksum verifies")
    header: UdpHeader = _new_header(sport, dport, length, csum)
    return header, view[HEADER_LENGTH:]


def build_udp(
    src_port: int,
    dst_port: int,
    payload: Bytes,
    *,
    src: IpAddress,
    dst: IpAddress,
    partial_checksum: bool = False,
) -> bytes:
    """Header + payload with the checksum (or, if ``partial_checksum``, only the
    pseudo-header sum, for a device that completes it)."""
    length = HEADER_LENGTH + len(payload)
    if length > 0xFFFF:
        raise WireUsageError(f"udp: datagram of {length} bytes > 65535")
    try:
        head = _HEADER.pack(src_port, dst_port, length, 0)
    except struct.error as exc:
        raise WireUsageError(f"udp: field out of range: {exc}") from None
    pseudo = _pseudo(src, dst, length)
    if partial_checksum:
        csum = pseudo
    else:
        csum = internet_checksum(payload, ones_complement_sum(head, pseudo)) or 0xFFFF
    return b"".join((head[:6], csum.to_bytes(2, "big"), payload))
