"""ICMP for IPv4 (RFC 792, RFC 1191): echo, the two errors the stack acts on, the rest kept.

* :class:`IcmpEcho` - echo request (8) and reply (0): identifier, sequence, payload.
* :class:`IcmpError` - destination unreachable (3) and time exceeded (11): the quoted
  original IP header plus at least 8 bytes of its payload (enough for the ports), and for
  "fragmentation needed" (3/4) the next-hop MTU (RFC 1191).
* :class:`IcmpOther` - any other type, kept whole so nothing is lost.

The checksum covers the whole ICMP message (no pseudo-header).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from vipernet.wire.checksum import internet_checksum
from vipernet.wire.errors import WireError, WireUsageError, truncated
from vipernet.wire.ipv4 import MIN_HEADER_LENGTH, IPv4Header, parse_quoted_ipv4

Bytes = bytes | bytearray | memoryview

HEADER_LENGTH = 8
MIN_QUOTE = MIN_HEADER_LENGTH + 8  # the original IP header and 64 bits of its payload

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, then two 16-bit fields


class IcmpType(enum.IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14


class UnreachableCode(enum.IntEnum):
    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAGMENTATION_NEEDED = 4
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    ADMIN_PROHIBITED = 13


class TimeExceededCode(enum.IntEnum):
    TTL = 0
    REASSEMBLY = 1


_TYPES: dict[int, IcmpType] = {int(t): t for t in IcmpType}
_ECHO_TYPES = (IcmpType.ECHO_REQUEST, IcmpType.ECHO_REPLY)
_ERROR_TYPES = (IcmpType.DEST_UNREACHABLE, IcmpType.TIME_EXCEEDED)


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpEcho:
    type: IcmpType  # ECHO_REQUEST or ECHO_REPLY
    code: int = 0
    ident: int
    seq: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpError:
    type: IcmpType  # DEST_UNREACHABLE or TIME_EXCEEDED
    code: int
    quoted: bytes  # the original IP header + at least 8 bytes of its payload
    next_hop_mtu: int = 0  # DEST_UNREACHABLE / FRAGMENTATION_NEEDED only (0 if unknown)
    pointer: int = 0  # PARAMETER_PROBLEM only: the offending octet of the quoted header

    def quoted_ipv4(self) -> tuple[IPv4Header, memoryview]:
        """The quoted IP header and the quoted start of its payload (ports live there)."""
        return parse_quoted_ipv4(self.quoted)


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpOther:
    type: IcmpType | int
    code: int
    rest: bytes  # everything after the checksum field


IcmpMessage = IcmpEcho | IcmpError | IcmpOther


def parse_icmp(data: Bytes, *, verify_checksum: bool = True) -> IcmpMessage:
    length = len(data)
    if length < HEADER_LENGTH:
        raise truncated("icmp", length, HEADER_LENGTH)
    view = memoryview(data)
    itype, code, csum, word1, word2 = _HEADER.unpack_from(view)
    if verify_checksum and internet_checksum(view) != 0:
        raise WireError("icmp", "checksum", hex(csum), "checksum verifies")
    kind = _TYPES.get(itype, itype)
    if kind in _ECHO_TYPES:
        return IcmpEcho(
            type=IcmpType(itype), code=code, ident=word1, seq=word2, payload=bytes(view[8:])
        )
    if kind in _ERROR_TYPES:
        quoted = bytes(view[8:])
        if len(quoted) < MIN_QUOTE:
            raise WireError("icmp", "quoted_length", len(quoted), f"quoted_length >= {MIN_QUOTE}")
        # The quote must at least hold a well-formed IP header (the caller needs its ports).
        parse_quoted_ipv4(quoted)
        mtu = 0
        if itype == IcmpType.DEST_UNREACHABLE and code == UnreachableCode.FRAGMENTATION_NEEDED:
            mtu = word2
        return IcmpError(type=IcmpType(itype), code=code, quoted=quoted, next_hop_mtu=mtu)
    return IcmpOther(type=kind, code=code, rest=bytes(view[4:]))


def build_icmp(message: IcmpMessage) -> bytes:
    """The whole ICMP message with its checksum."""
    try:
        if isinstance(message, IcmpEcho):
            raw = _HEADER.pack(message.type, message.code, 0, message.ident, message.seq)
            raw += message.payload
        elif isinstance(message, IcmpError):
            needs_mtu = (
                message.type == IcmpType.DEST_UNREACHABLE
                and message.code == UnreachableCode.FRAGMENTATION_NEEDED
            )
            mtu = message.next_hop_mtu if needs_mtu else 0  # the field is unused otherwise
            # Parameter Problem: the pointer is the first octet after the checksum.
            word1 = message.pointer << 8 if message.type == IcmpType.PARAMETER_PROBLEM else 0
            raw = _HEADER.pack(message.type, message.code, 0, word1, mtu) + message.quoted
        else:
            raw = struct.pack("!BBH", message.type, message.code, 0) + message.rest
    except struct.error as exc:
        raise WireUsageError(f"icmp: field out of range: {exc}") from None
    csum = internet_checksum(raw)
    return raw[:2] + csum.to_bytes(2, "big") + raw[4:]
