"""Multicast Listener Discovery: MLDv2 (RFC 3810) with MLDv1 (RFC 2710) understood.

A host needs two things from MLD: to answer queries, and to send reports saying which
groups it listens to (its solicited-node groups above all, or a snooping switch would
stop delivering the Neighbor Solicitations for its addresses).

* :class:`MldQuery` (type 130).  RFC 3810 8.1 tells the versions apart by length: an
  ICMPv6 message of exactly 24 bytes is an MLDv1 query, one of 28 or more an MLDv2 query,
  anything else is ignored (here: :class:`WireError`).  MLDv2's Maximum Response Code and
  QQIC are floating-point encoded above 32767 ms / 127 s (5.1.3, 5.1.9);
  :func:`decode_max_response_code` and :func:`decode_qqic` give the values.
* :class:`MldV2Report` (type 143) of :class:`MulticastAddressRecord`, the only report an
  MLDv2 host sends (5.2).
* :class:`MldV1Message` for MLDv1 reports (131) and dones (132), parsed for completeness.

Bodies are the ICMPv6 message after its checksum, as in :mod:`vipernet.wire.ndp`.  The
IPv6 side of MLD (hop limit 1, a link-local or :: source, the Hop-by-Hop Router Alert
from :func:`vipernet.wire.ipv6_ext.build_router_alert_header`) is the stack's.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from vipernet.wire.errors import WireError, WireUsageError, truncated
from vipernet.wire.icmpv6 import Icmpv6Type, build_icmpv6
from vipernet.wire.ipv6 import ALL_MLDV2_ROUTERS

Bytes = bytes | bytearray | memoryview

MLDV1_BODY = 20  # ICMPv6 length 24
MLDV2_QUERY_BODY = 24  # ICMPv6 length >= 28
_QUERY = struct.Struct("!HH16sBBH")  # max resp code, reserved, address, S/QRV, QQIC, N
_RECORD = struct.Struct("!BBH16s")  # record type, aux data len (words), N, address
_S_FLAG = 0x08


class RecordType(enum.IntEnum):
    MODE_IS_INCLUDE = 1
    MODE_IS_EXCLUDE = 2
    CHANGE_TO_INCLUDE = 3
    CHANGE_TO_EXCLUDE = 4
    ALLOW_NEW_SOURCES = 5
    BLOCK_OLD_SOURCES = 6


_RECORD_TYPES: dict[int, RecordType] = {int(r): r for r in RecordType}


def decode_max_response_code(code: int) -> int:
    """Milliseconds (RFC 3810 5.1.3): literal below 32768, else mantissa << (exp + 3)."""
    if code < 0x8000:
        return code
    return ((code & 0x0FFF) | 0x1000) << (((code >> 12) & 0x7) + 3)


def encode_max_response_code(milliseconds: int) -> int:
    """The code for a delay, rounded down to what the encoding can say (at most 8387584)."""
    if milliseconds < 0x8000:
        return max(milliseconds, 0)
    exp = min(milliseconds.bit_length() - 16, 7)
    mant = min(milliseconds >> (exp + 3), 0x1FFF) & 0x0FFF
    return 0x8000 | exp << 12 | mant


def decode_qqic(code: int) -> int:
    """Seconds (RFC 3810 5.1.9): literal below 128, else mantissa << (exp + 3)."""
    if code < 0x80:
        return code
    return ((code & 0x0F) | 0x10) << (((code >> 4) & 0x7) + 3)


def encode_qqic(seconds: int) -> int:
    if seconds < 0x80:
        return max(seconds, 0)
    exp = min(seconds.bit_length() - 8, 7)
    mant = min(seconds >> (exp + 3), 0x1F) & 0x0F
    return 0x80 | exp << 4 | mant


@dataclass(frozen=True, slots=True, kw_only=True)
class MldQuery:
    max_response_code: int  # MLDv1: the delay in ms; MLDv2: encoded (see max_response_ms)
    multicast_address: IPv6Address  # :: for a general query
    version: int = 2  # 1 for the 24-byte form
    suppress: bool = False  # S: routers skip timer updates (MLDv2)
    qrv: int = 0  # querier's robustness variable, 0-7 (MLDv2)
    qqic: int = 0  # querier's query interval code (MLDv2)
    sources: tuple[IPv6Address, ...] = ()  # MLDv2 source-specific query

    @property
    def max_response_ms(self) -> int:
        if self.version == 1:
            return self.max_response_code
        return decode_max_response_code(self.max_response_code)

    @property
    def is_general(self) -> bool:
        return self.multicast_address.is_unspecified


@dataclass(frozen=True, slots=True, kw_only=True)
class MulticastAddressRecord:
    record_type: RecordType | int
    multicast_address: IPv6Address
    sources: tuple[IPv6Address, ...] = ()
    aux_data: bytes = b""  # a multiple of 4 bytes; MLDv2 defines none


@dataclass(frozen=True, slots=True, kw_only=True)
class MldV2Report:
    records: tuple[MulticastAddressRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MldV1Message:
    type: Icmpv6Type  # MLD_REPORT or MLD_DONE
    max_response_delay: int = 0
    multicast_address: IPv6Address


MldMessage = MldQuery | MldV2Report | MldV1Message


def _bad(field: str, value: object, reason: str) -> WireError:
    return WireError("mld", field, value, reason)


def _addresses(view: memoryview, start: int, count: int) -> tuple[IPv6Address, ...]:
    ends = range(start + 16, start + 16 * count + 1, 16)
    return tuple(IPv6Address(bytes(view[end - 16 : end])) for end in ends)


def parse_mld(icmp_type: int, body: Bytes) -> MldMessage:
    """Decode the body (after the checksum) of an MLD message of ``icmp_type``."""
    view = memoryview(body)
    length = len(view)
    if icmp_type == Icmpv6Type.MLD_QUERY:
        if length == MLDV1_BODY:
            code, _res, group = struct.unpack_from("!HH16s", view)
            return MldQuery(max_response_code=code, multicast_address=_group(group), version=1)
        if length < MLDV2_QUERY_BODY:
            raise _bad("length", length + 4, "length == 24 (MLDv1) or >= 28 (MLDv2)")
        code, _res, group, flags, qqic, count = _QUERY.unpack_from(view)
        if MLDV2_QUERY_BODY + 16 * count > length:
            raise _bad("sources", count, f"sources fit in {length + 4} bytes")
        return MldQuery(
            max_response_code=code,
            multicast_address=_group(group),
            suppress=bool(flags & _S_FLAG),
            qrv=flags & 0x07,
            qqic=qqic,
            sources=_addresses(view, MLDV2_QUERY_BODY, count),
        )
    if icmp_type in (Icmpv6Type.MLD_REPORT, Icmpv6Type.MLD_DONE):
        if length < MLDV1_BODY:
            raise truncated("mld", length + 4, MLDV1_BODY + 4)
        delay, _res, group = struct.unpack_from("!HH16s", view)
        return MldV1Message(
            type=Icmpv6Type(icmp_type), max_response_delay=delay, multicast_address=_group(group)
        )
    if icmp_type == Icmpv6Type.MLDV2_REPORT:
        return _parse_report(view)
    raise _bad("type", icmp_type, "type in (130, 131, 132, 143)")


def _group(raw: bytes) -> IPv6Address:
    group = IPv6Address(raw)
    if not (group.is_multicast or group.is_unspecified):
        raise _bad("multicast_address", group, "multicast_address is multicast or ::")
    return group


def _parse_report(view: memoryview) -> MldV2Report:
    length = len(view)
    if length < 4:
        raise truncated("mld", length + 4, 8)
    count = int.from_bytes(view[2:4], "big")
    records: list[MulticastAddressRecord] = []
    pos = 4
    for _ in range(count):
        if length - pos < _RECORD.size:
            raise _bad("records", count, f"records fit in {length + 4} bytes")
        rtype, aux, nsrc, group = _RECORD.unpack_from(view, pos)
        end = pos + _RECORD.size + 16 * nsrc + 4 * aux
        if end > length:
            raise _bad("record_length", end - pos, f"record fits in {length - pos} bytes left")
        sources_end = pos + _RECORD.size + 16 * nsrc
        records.append(
            MulticastAddressRecord(
                record_type=_RECORD_TYPES.get(rtype, rtype),
                multicast_address=IPv6Address(group),
                sources=_addresses(view, pos + _RECORD.size, nsrc),
                aux_data=bytes(view[sources_end:end]),
            )
        )
        pos = end
    return MldV2Report(records=tuple(records))


def build_mld(message: MldMessage, src: IPv6Address, dst: IPv6Address) -> bytes:
    """The whole ICMPv6 message (code 0) with its checksum."""
    try:
        if isinstance(message, MldQuery):
            head = struct.pack(
                "!HH16s", message.max_response_code, 0, message.multicast_address.packed
            )
            if message.version == 1:
                return build_icmpv6(Icmpv6Type.MLD_QUERY, 0, head, src, dst)
            if not 0 <= message.qrv <= 7:
                raise WireUsageError(f"mld: QRV {message.qrv} not in 0..7")
            flags = (_S_FLAG if message.suppress else 0) | message.qrv
            tail = struct.pack("!BBH", flags, message.qqic, len(message.sources))
            body = head + tail + b"".join(s.packed for s in message.sources)
            return build_icmpv6(Icmpv6Type.MLD_QUERY, 0, body, src, dst)
        if isinstance(message, MldV1Message):
            body = struct.pack(
                "!HH16s", message.max_response_delay, 0, message.multicast_address.packed
            )
            return build_icmpv6(message.type, 0, body, src, dst)
        parts = [struct.pack("!HH", 0, len(message.records))]
        for record in message.records:
            if len(record.aux_data) % 4:
                raise WireUsageError("mld: aux data must be a multiple of 4 bytes")
            parts.append(
                _RECORD.pack(
                    record.record_type,
                    len(record.aux_data) // 4,
                    len(record.sources),
                    record.multicast_address.packed,
                )
            )
            parts.extend(s.packed for s in record.sources)
            parts.append(record.aux_data)
        return build_icmpv6(Icmpv6Type.MLDV2_REPORT, 0, b"".join(parts), src, dst)
    except struct.error as exc:
        raise WireUsageError(f"mld: field out of range: {exc}") from None


def build_mld_report(
    records: tuple[MulticastAddressRecord, ...] | list[MulticastAddressRecord],
    src: IPv6Address,
    dst: IPv6Address = ALL_MLDV2_ROUTERS,
) -> bytes:
    """An MLDv2 report (RFC 3810 5.2), to ff02::16 unless told otherwise."""
    return build_mld(MldV2Report(records=tuple(records)), src, dst)
