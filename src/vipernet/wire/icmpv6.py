"""ICMPv6 (RFC 4443): echo, the four error messages, and the rest kept for NDP and MLD.

* :class:`Icmpv6Echo` - echo request (128) and reply (129): identifier, sequence, data.
* :class:`Icmpv6Error` - destination unreachable (1), packet too big (2, with the MTU),
  time exceeded (3) and parameter problem (4, with the pointer), each quoting the start of
  the packet that caused it.  The quote must hold at least the IPv6 header, which is what
  the stack needs to find the flow (RFC 4443 2.4(c) says "as much as fits").
* :class:`Icmpv6Other` - every other type, the body after the checksum kept whole:
  NDP (133-137, :mod:`vipernet.wire.ndp`) and MLD (130-132, 143, :mod:`vipernet.wire.mld`)
  decode it further; unknown error types (< 128) are passed up as such (RFC 4443 2.4(b)).

Unlike ICMP for IPv4 the checksum covers an IPv6 pseudo-header (RFC 8200 8.1) with
next header 58 and the ICMPv6 length, so parse and build take the two addresses.  The
checksum is mandatory: a message whose checksum does not verify is refused.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from vipernet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum_v6
from vipernet.wire.errors import WireError, WireUsageError, truncated
from vipernet.wire.ipv6 import HEADER_LENGTH as IPV6_HEADER_LENGTH
from vipernet.wire.ipv6 import MIN_MTU, IPv6Header, parse_quoted_ipv6

Bytes = bytes | bytearray | memoryview

PROTO_ICMPV6 = 58
HEADER_LENGTH = 4  # type, code, checksum: everything else is the type's body
# RFC 4443 2.4(c): an error quotes as much of the invoking packet as fits in a
# minimum-MTU packet with our own IPv6 header and the 8-byte ICMPv6 error header.
MAX_ERROR_QUOTE = MIN_MTU - IPV6_HEADER_LENGTH - 8

_HEADER = struct.Struct("!BBHI")  # type, code, checksum, the 32-bit word after it
_ECHO = struct.Struct("!BBHHH")


class Icmpv6Type(enum.IntEnum):
    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    MLD_QUERY = 130
    MLD_REPORT = 131  # MLDv1
    MLD_DONE = 132  # MLDv1
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    REDIRECT = 137
    MLDV2_REPORT = 143


class Icmpv6UnreachableCode(enum.IntEnum):
    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS = 3
    PORT = 4
    SOURCE_POLICY = 5
    REJECT_ROUTE = 6


class Icmpv6TimeExceededCode(enum.IntEnum):
    HOP_LIMIT = 0
    REASSEMBLY = 1


class Icmpv6ParamProblemCode(enum.IntEnum):
    HEADER_FIELD = 0
    NEXT_HEADER = 1
    OPTION = 2
    INCOMPLETE_CHAIN = 3  # RFC 7112: first fragment without the whole header chain


_TYPES: dict[int, Icmpv6Type] = {int(t): t for t in Icmpv6Type}
_ECHO_TYPES = (Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY)
_ERROR_TYPES = (
    Icmpv6Type.DEST_UNREACHABLE,
    Icmpv6Type.PACKET_TOO_BIG,
    Icmpv6Type.TIME_EXCEEDED,
    Icmpv6Type.PARAMETER_PROBLEM,
)


def is_error_type(icmp_type: int) -> bool:
    """RFC 4443 2.1: types 0-127 are errors, 128-255 informational."""
    return icmp_type < 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Icmpv6Echo:
    type: Icmpv6Type  # ECHO_REQUEST or ECHO_REPLY
    code: int = 0
    ident: int
    seq: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Icmpv6Error:
    type: Icmpv6Type  # one of the four error types
    code: int
    quoted: bytes  # the invoking packet from its IPv6 header, as much as was sent
    mtu: int = 0  # PACKET_TOO_BIG only
    pointer: int = 0  # PARAMETER_PROBLEM only: offset of the bad octet in the invoking packet

    def quoted_ipv6(self) -> tuple[IPv6Header, memoryview]:
        """The quoted IPv6 header and the quoted start of its payload."""
        return parse_quoted_ipv6(self.quoted)


@dataclass(frozen=True, slots=True, kw_only=True)
class Icmpv6Other:
    type: Icmpv6Type | int
    code: int
    body: bytes  # everything after the checksum field


Icmpv6Message = Icmpv6Echo | Icmpv6Error | Icmpv6Other


def parse_icmpv6(
    data: Bytes, src: IPv6Address, dst: IPv6Address, *, verify_checksum: bool = True
) -> Icmpv6Message:
    """One ICMPv6 message (the whole upper-layer payload) sent from ``src`` to ``dst``."""
    length = len(data)
    if length < HEADER_LENGTH:
        raise truncated("icmpv6", length, HEADER_LENGTH)
    view = memoryview(data)
    itype, code = view[0], view[1]
    if verify_checksum:
        pseudo = pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, length)
        if internet_checksum(view, pseudo) != 0:
            csum = int.from_bytes(view[2:4], "big")
            raise WireError("icmpv6", "checksum", hex(csum), "checksum verifies")
    kind = _TYPES.get(itype, itype)
    if kind in _ECHO_TYPES:
        if length < 8:
            raise truncated("icmpv6", length, 8)
        _, _, _, ident, seq = _ECHO.unpack_from(view)
        return Icmpv6Echo(
            type=Icmpv6Type(itype), code=code, ident=ident, seq=seq, payload=bytes(view[8:])
        )
    if kind in _ERROR_TYPES:
        if length < 8:
            raise truncated("icmpv6", length, 8)
        word = _HEADER.unpack_from(view)[3]
        quoted = bytes(view[8:])
        if len(quoted) < IPV6_HEADER_LENGTH:
            raise WireError(
                "icmpv6", "quoted_length", len(quoted), f"quoted_length >= {IPV6_HEADER_LENGTH}"
            )
        parse_quoted_ipv6(quoted)  # the quote must at least hold an IPv6 header
        return Icmpv6Error(
            type=Icmpv6Type(itype),
            code=code,
            quoted=quoted,
            mtu=word if itype == Icmpv6Type.PACKET_TOO_BIG else 0,
            pointer=word if itype == Icmpv6Type.PARAMETER_PROBLEM else 0,
        )
    return Icmpv6Other(type=kind, code=code, body=bytes(view[4:]))


def build_icmpv6(
    icmp_type: int, code: int, body: Bytes, src: IPv6Address, dst: IPv6Address
) -> bytes:
    """Type, code, checksum and ``body`` (everything after the checksum)."""
    length = HEADER_LENGTH + len(body)
    if length > 0xFFFF:
        raise WireUsageError(f"icmpv6: message of {length} bytes > 65535")
    try:
        head = struct.pack("!BBH", icmp_type, code, 0)
    except struct.error as exc:
        raise WireUsageError(f"icmpv6: field out of range: {exc}") from None
    pseudo = pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, length)
    csum = internet_checksum(body, ones_complement_sum(head, pseudo))
    return b"".join((head[:2], csum.to_bytes(2, "big"), body))


def build_icmpv6_message(message: Icmpv6Message, src: IPv6Address, dst: IPv6Address) -> bytes:
    """The whole message with its checksum, from any of the parsed forms."""
    if isinstance(message, Icmpv6Echo):
        body = _word(message.ident << 16 | message.seq, "ident/seq", 0xFFFF_FFFF)
        return build_icmpv6(message.type, message.code, body + message.payload, src, dst)
    if isinstance(message, Icmpv6Error):
        if message.type == Icmpv6Type.PACKET_TOO_BIG:
            word = message.mtu
        elif message.type == Icmpv6Type.PARAMETER_PROBLEM:
            word = message.pointer
        else:
            word = 0  # unused, zero (RFC 4443 3.1, 3.3)
        body = _word(word, "mtu/pointer", 0xFFFF_FFFF)
        return build_icmpv6(message.type, message.code, body + message.quoted, src, dst)
    return build_icmpv6(message.type, message.code, message.body, src, dst)


def _word(value: int, what: str, limit: int) -> bytes:
    if not 0 <= value <= limit:
        raise WireUsageError(f"icmpv6: {what} {value} out of range")
    return value.to_bytes(4, "big")


def build_echo_request(
    ident: int, seq: int, payload: Bytes, src: IPv6Address, dst: IPv6Address
) -> bytes:
    message = Icmpv6Echo(type=Icmpv6Type.ECHO_REQUEST, ident=ident, seq=seq, payload=bytes(payload))
    return build_icmpv6_message(message, src, dst)


def build_echo_reply(
    ident: int, seq: int, payload: Bytes, src: IPv6Address, dst: IPv6Address
) -> bytes:
    message = Icmpv6Echo(type=Icmpv6Type.ECHO_REPLY, ident=ident, seq=seq, payload=bytes(payload))
    return build_icmpv6_message(message, src, dst)


def build_icmpv6_error(
    icmp_type: int,
    code: int,
    invoking: Bytes,
    src: IPv6Address,
    dst: IPv6Address,
    *,
    mtu: int = 0,
    pointer: int = 0,
) -> bytes:
    """An error quoting ``invoking`` (the offending packet from its IPv6 header) cut so
    that our IPv6 header + this message fit in 1280 bytes (RFC 4443 2.4(c))."""
    if icmp_type not in _ERROR_TYPES:
        raise WireUsageError(f"icmpv6: {icmp_type} is not an error type this builder knows")
    error = Icmpv6Error(
        type=Icmpv6Type(icmp_type),
        code=code,
        quoted=bytes(invoking[:MAX_ERROR_QUOTE]),
        mtu=mtu,
        pointer=pointer,
    )
    return build_icmpv6_message(error, src, dst)
