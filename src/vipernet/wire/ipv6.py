"""IPv6 fixed header (RFC 8200 3) and the address helpers a host needs on Ethernet.

The fixed header is always 40 bytes and has no checksum, so parsing is all integrity:
at least 40 bytes, version 6, and a payload length that fits in the buffer (bytes past it
are Ethernet padding and are cut off, as for IPv4).  Extension headers are *not* walked
here; :mod:`vipernet.wire.ipv6_ext` does that, because what to do with them depends on
their contents (a Parameter Problem pointer, a fragment) and not just on their bytes.

A payload length of 0 with a Hop-by-Hop header next is how a jumbogram (RFC 2675) says
"the real length is in a Jumbo Payload option".  We do not support jumbograms (no link
we drive carries 64 KiB+ frames), so that case is refused by name.  A payload length of
0 with any other next header is simply an empty payload (e.g. No Next Header, 59).

:func:`parse_quoted_ipv6` is the lenient variant for the packet quoted inside an ICMPv6
error: the payload length describes the original packet, not the (truncated) quote.

The helpers compute the addresses RFC 4291/4861/2464 derive from others: the
solicited-node multicast group, the Ethernet MAC of a multicast group and the
modified-EUI-64 link-local address of an interface.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from vipernet.wire._construct import fast_constructor
from vipernet.wire.errors import WireError, WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

HEADER_LENGTH = 40
MIN_MTU = 1280  # RFC 8200 5: every IPv6 link carries packets of at least this size
MAX_PAYLOAD_LENGTH = 0xFFFF

UNSPECIFIED = IPv6Address("::")
LOOPBACK = IPv6Address("::1")
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
ALL_MLDV2_ROUTERS = IPv6Address("ff02::16")  # RFC 3810 5.2.14: where MLDv2 reports go
LINK_LOCAL_PREFIX = IPv6Network("fe80::/64")
SOLICITED_NODE_PREFIX = IPv6Network("ff02::1:ff00:0/104")

_SOLICITED_BASE = int(SOLICITED_NODE_PREFIX.network_address)
_LINK_LOCAL_BASE = int(LINK_LOCAL_PREFIX.network_address)

# version/traffic class/flow label word, payload length, next header, hop limit, src, dst
_HEADER = struct.Struct("!IHBB16s16s")


class NextHeader(enum.IntEnum):
    """The IPv6 Next Header values the stack knows (IANA "Assigned Internet Protocol Numbers")."""

    HOP_BY_HOP = 0
    TCP = 6
    UDP = 17
    ROUTING = 43
    FRAGMENT = 44
    ESP = 50
    AH = 51
    ICMPV6 = 58
    NO_NEXT_HEADER = 59
    DESTINATION_OPTIONS = 60


_NEXT_HEADERS: dict[int, NextHeader] = {int(n): n for n in NextHeader}


@dataclass(frozen=True, slots=True, kw_only=True)
class IPv6Header:
    src: IPv6Address
    dst: IPv6Address
    next_header: NextHeader | int  # unknown values are kept as plain ints
    hop_limit: int = 64
    traffic_class: int = 0  # DSCP << 2 | ECN
    flow_label: int = 0  # 20 bits (RFC 6437)
    payload_length: int = 0  # filled in by parse; computed by build


_new_header = fast_constructor(IPv6Header)


def _parse(packet: Bytes, *, quoted: bool) -> tuple[IPv6Header, memoryview]:
    length = len(packet)
    if length < HEADER_LENGTH:
        raise truncated("ipv6", length, HEADER_LENGTH)
    view = memoryview(packet)
    word, plen, nxt, hops, src, dst = _HEADER.unpack_from(view)
    version = word >> 28
    if version != 6:
        raise WireError("ipv6", "version", version, "version == 6")
    available = length - HEADER_LENGTH
    if quoted:
        # An ICMPv6 error quotes as much as fits in 1280 bytes: the rest of the original
        # payload is simply absent.  A quoted jumbogram header shows 0: take what is there.
        end = HEADER_LENGTH + (min(plen, available) if plen else available)
    else:
        if plen == 0 and nxt == NextHeader.HOP_BY_HOP:
            reason = "payload_length != 0 (a jumbogram, RFC 2675: not supported)"
            raise WireError("ipv6", "payload_length", 0, reason)
        if plen > available:
            raise WireError(
                "ipv6", "payload_length", plen, f"payload_length <= length - 40 ({available})"
            )
        end = HEADER_LENGTH + plen
    header: IPv6Header = _new_header(
        IPv6Address(src),
        IPv6Address(dst),
        _NEXT_HEADERS.get(nxt, nxt),
        hops,
        (word >> 20) & 0xFF,
        word & 0xFFFFF,
        plen,
    )
    return header, view[HEADER_LENGTH:end]


def parse_ipv6(packet: Bytes) -> tuple[IPv6Header, memoryview]:
    """Header and a view of the payload (extension headers included) cut to
    ``payload_length``."""
    return _parse(packet, quoted=False)


def parse_quoted_ipv6(quote: Bytes) -> tuple[IPv6Header, memoryview]:
    """The header quoted in an ICMPv6 error and whatever of its payload was quoted.

    ``payload_length`` may exceed the quote; a jumbogram's 0 is accepted (the quote is only
    used to find the flow it concerns).
    """
    return _parse(quote, quoted=True)


def build_ipv6(header: IPv6Header, payload_length: int) -> bytes:
    """The 40-byte fixed header for a payload (extension headers included) of
    ``payload_length`` bytes; ``header.payload_length`` is ignored."""
    if not 0 <= payload_length <= MAX_PAYLOAD_LENGTH:
        raise WireUsageError(f"ipv6: payload length {payload_length} not in 0..65535")
    if not 0 <= header.traffic_class <= 0xFF:
        raise WireUsageError(f"ipv6: traffic class {header.traffic_class} not in 0..255")
    if not 0 <= header.flow_label <= 0xFFFFF:
        raise WireUsageError(f"ipv6: flow label {header.flow_label} not in 0..0xFFFFF")
    word = 0x60000000 | header.traffic_class << 20 | header.flow_label
    try:
        return _HEADER.pack(
            word,
            payload_length,
            header.next_header,
            header.hop_limit,
            header.src.packed,
            header.dst.packed,
        )
    except struct.error as exc:
        raise WireUsageError(f"ipv6: field out of range: {exc}") from None


def build_ipv6_packet(header: IPv6Header, payload: Bytes) -> bytes:
    """Fixed header + payload, the payload length computed from ``payload``."""
    return b"".join((build_ipv6(header, len(payload)), payload))


# Addresses derived from others.


def solicited_node(address: IPv6Address) -> IPv6Address:
    """The solicited-node multicast group of ``address``: ff02::1:ff00:0/104 + its low 24
    bits (RFC 4291 2.7.1), where Neighbor Solicitations for it are sent."""
    return IPv6Address(_SOLICITED_BASE | (int(address) & 0xFFFFFF))


def is_solicited_node(address: IPv6Address) -> bool:
    return address in SOLICITED_NODE_PREFIX


def multicast_mac(address: IPv6Address) -> bytes:
    """The Ethernet destination of an IPv6 multicast group: 33:33 and the group's low 32
    bits (RFC 2464 7)."""
    if not address.is_multicast:
        raise WireUsageError(f"ipv6: {address} is not a multicast address")
    return b"\x33\x33" + address.packed[12:]


def multicast_scope(address: IPv6Address) -> int:
    """The 4-bit scope of a multicast address (RFC 4291 2.7: 1 interface-local, 2
    link-local, 5 site-local, 8 organisation-local, 14 global)."""
    if not address.is_multicast:
        raise WireUsageError(f"ipv6: {address} is not a multicast address")
    return address.packed[1] & 0x0F


def eui64_interface_id(mac: bytes) -> int:
    """The modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 appendix A):
    ff:fe inserted in the middle and the universal/local bit inverted."""
    if len(mac) != 6:
        raise WireUsageError(f"ipv6: a MAC address is 6 bytes, not {len(mac)}")
    eui = bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return int.from_bytes(eui, "big")


def link_local_from_mac(mac: bytes) -> IPv6Address:
    """fe80::/64 with the MAC's modified EUI-64 identifier (RFC 4862 5.3, RFC 2464 5)."""
    return IPv6Address(_LINK_LOCAL_BASE | eui64_interface_id(mac))


def address_from_prefix(prefix: IPv6Network, mac: bytes) -> IPv6Address:
    """A SLAAC address: a /64 prefix (from a Prefix Information option) + the EUI-64 id."""
    if prefix.prefixlen != 64:
        raise WireUsageError(f"ipv6: SLAAC needs a /64 prefix, not /{prefix.prefixlen}")
    return IPv6Address(int(prefix.network_address) | eui64_interface_id(mac))
