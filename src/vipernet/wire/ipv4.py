"""IPv4 headers (RFC 791): parse with checks, build with total length and checksum.

Parsing runs in two phases.  Integrity: at least 20 bytes, a header length that fits,
a total length between the header length and the buffer length (bytes past the total
length are Ethernet padding and are cut off), a header checksum that verifies.  Sanity:
version 4 and the reserved flag bit clear.  Options are kept raw (the stack ignores them,
as Linux does for all but a few); the fragment offset is given in bytes, not 8-byte units.

:func:`parse_quoted_ipv4` is the lenient variant for the header quoted inside an ICMP
error, where the total length describes the original packet, not the quote.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from vipernet.wire._construct import fast_constructor
from vipernet.wire.checksum import internet_checksum
from vipernet.wire.errors import WireError, WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

MIN_HEADER_LENGTH = 20
MAX_HEADER_LENGTH = 60
MAX_PACKET_LENGTH = 0xFFFF

_FLAG_RESERVED = 0x8000
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF

# version/IHL, TOS, total length, ident, flags/offset, TTL, proto, checksum, src, dst
_HEADER = struct.Struct("!BBHHHBBHII")


class IpProto(enum.IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17


_PROTOS: dict[int, IpProto] = {int(p): p for p in IpProto}


@dataclass(frozen=True, slots=True, kw_only=True)
class IPv4Header:
    src: IPv4Address
    dst: IPv4Address
    proto: IpProto | int  # unknown protocol numbers are kept as plain ints
    ttl: int = 64
    ident: int = 0
    tos: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    fragment_offset: int = 0  # in bytes; a multiple of 8
    options: bytes = b""  # raw, a multiple of 4 bytes, at most 40
    total_length: int = 0  # filled in by parse; ignored by build

    @property
    def header_length(self) -> int:
        return MIN_HEADER_LENGTH + len(self.options)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


_new_header = fast_constructor(IPv4Header)


def _parse(packet: Bytes, *, verify_checksum: bool, quoted: bool) -> tuple[IPv4Header, memoryview]:
    length = len(packet)
    if length < MIN_HEADER_LENGTH:
        raise truncated("ipv4", length, MIN_HEADER_LENGTH)
    view = memoryview(packet)
    vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(view)
    # Integrity.
    ihl = vihl & 0x0F
    if ihl < 5:
        raise WireError("ipv4", "header_length", ihl, "header_length >= 5")
    hlen = ihl * 4
    if hlen > length:
        raise WireError("ipv4", "header_length", hlen, f"header_length <= length ({length})")
    if total < hlen:
        raise WireError("ipv4", "total_length", total, f"total_length >= header_length ({hlen})")
    if quoted:
        end = min(total, length)  # an ICMP error quotes only the start of the packet
    else:
        if total > length:
            raise WireError("ipv4", "total_length", total, f"total_length <= length ({length})")
        end = total
    if verify_checksum and internet_checksum(view[:hlen]) != 0:
        raise WireError("ipv4", "checksum", hex(_csum), "header checksum verifies")
    # Sanity.
    version = vihl >> 4
    if version != 4:
        raise WireError("ipv4", "version", version, "version == 4")
    if frag & _FLAG_RESERVED:
        raise WireError("ipv4", "flags", hex(frag >> 13), "reserved flag bit == 0")
    header: IPv4Header = _new_header(
        IPv4Address(src),
        IPv4Address(dst),
        _PROTOS.get(proto, proto),
        ttl,
        ident,
        tos,
        bool(frag & _FLAG_DF),
        bool(frag & _FLAG_MF),
        (frag & _OFFSET_MASK) * 8,
        bytes(view[MIN_HEADER_LENGTH:hlen]) if hlen > MIN_HEADER_LENGTH else b"",
        total,
    )
    return header, view[hlen:end]


def parse_ipv4(packet: Bytes, *, verify_checksum: bool = True) -> tuple[IPv4Header, memoryview]:
    """Header and a view of the payload trimmed to ``total_length``."""
    return _parse(packet, verify_checksum=verify_checksum, quoted=False)


def parse_quoted_ipv4(quote: Bytes) -> tuple[IPv4Header, memoryview]:
    """The header inside an ICMP error and the quoted start of its payload.

    The total length may exceed the quote; the checksum is not checked (the quote is
    what the router saw, which is all we need to find the socket it concerns).
    """
    return _parse(quote, verify_checksum=False, quoted=True)


def build_ipv4_header(header: IPv4Header, payload_length: int) -> bytes:
    """The header alone, with total length and checksum filled in."""
    options = header.options
    if len(options) % 4 or len(options) > MAX_HEADER_LENGTH - MIN_HEADER_LENGTH:
        raise WireUsageError(f"ipv4: options of {len(options)} bytes (need a multiple of 4, <= 40)")
    hlen = MIN_HEADER_LENGTH + len(options)
    total = hlen + payload_length
    if total > MAX_PACKET_LENGTH:
        raise WireUsageError(f"ipv4: total length {total} > {MAX_PACKET_LENGTH}")
    offset = header.fragment_offset
    if offset % 8 or not 0 <= offset <= _OFFSET_MASK * 8:
        raise WireUsageError(f"ipv4: fragment offset {offset} is not a multiple of 8 in range")
    frag = offset // 8
    if header.dont_fragment:
        frag |= _FLAG_DF
    if header.more_fragments:
        frag |= _FLAG_MF
    try:
        raw = _HEADER.pack(
            0x40 | (hlen >> 2),
            header.tos,
            total,
            header.ident,
            frag,
            header.ttl,
            header.proto,
            0,
            int(header.src),
            int(header.dst),
        )
    except struct.error as exc:
        raise WireUsageError(f"ipv4: field out of range: {exc}") from None
    if options:
        raw += options
    csum = internet_checksum(raw)
    return raw[:10] + csum.to_bytes(2, "big") + raw[12:]


def build_ipv4(header: IPv4Header, payload: Bytes) -> bytes:
    """Header + payload; ``total_length`` and the checksum are computed, not taken."""
    return b"".join((build_ipv4_header(header, len(payload)), payload))
