"""IGMP, the host's side of IPv4 group membership: v1 (RFC 1112), v2 (RFC 2236), v3 (RFC 3376).

A host sends reports (and, from v2 on, leaves) and listens to queries; it must understand
every version's query, because the querier on the link decides which version the link
speaks (RFC 3376 7).  Messages are the whole IP payload, checksum included:

* :class:`IgmpQuery` (type 0x11).  RFC 3376 7.1 tells the versions apart by length: 8 bytes
  with Max Resp Code 0 is IGMPv1, 8 bytes otherwise IGMPv2, 12 or more IGMPv3; 9 to 11 bytes
  is no valid query (here: :class:`WireError`).  IGMPv3's Max Resp Code and QQIC are
  floating-point encoded from 128 up (4.1.1, 4.1.7): :func:`decode_code` gives the value.
* :class:`IgmpV3Report` (type 0x22) of :class:`GroupRecord` (4.2), what a v3 host sends.
* :class:`IgmpGroupMessage` for the v1 report (0x12), v2 report (0x16) and v2 leave (0x17):
  type, group, and nothing else that matters (RFC 2236 2.5: longer messages are accepted
  and the extra octets ignored).

Hostile input (short, a count that runs past the end, a bad checksum, a group that is not
multicast, an unknown type) raises :class:`WireError` naming the field, so the stack can
count it ``igmp.rx.bad_<field>``.  The record types are MLDv2's (RFC 3810 took them from
RFC 3376 4.2.12), so :class:`RecordType` is shared with :mod:`vipernet.wire.mld`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from vipernet.wire.checksum import internet_checksum
from vipernet.wire.errors import WireError, WireUsageError, truncated
from vipernet.wire.mld import RecordType

__all__ = [
    "ALL_ROUTERS",
    "ALL_SYSTEMS",
    "IGMPV3_ROUTERS",
    "PROTO_IGMP",
    "GroupRecord",
    "IgmpGroupMessage",
    "IgmpMessage",
    "IgmpQuery",
    "IgmpType",
    "IgmpV3Report",
    "RecordType",
    "build_igmp_group_message",
    "build_igmp_query",
    "build_igmp_v3_report",
    "decode_code",
    "encode_code",
    "multicast_mac",
    "parse_igmp",
]

Bytes = bytes | bytearray | memoryview

PROTO_IGMP = 2
ALL_SYSTEMS = IPv4Address("224.0.0.1")  # every host; always joined, never reported
ALL_ROUTERS = IPv4Address("224.0.0.2")  # where IGMPv2 leaves go
IGMPV3_ROUTERS = IPv4Address("224.0.0.22")  # where IGMPv3 reports go

_HEADER = struct.Struct("!BBH4s")  # type, max resp code / reserved, checksum, group
_V3_QUERY = struct.Struct("!BBH4sBBH")  # ... + Resv|S|QRV, QQIC, number of sources
_V3_REPORT = struct.Struct("!BBHHH")  # type, reserved, checksum, reserved, record count
_RECORD = struct.Struct("!BBH4s")  # record type, aux data len (words), sources, group
_S_FLAG = 0x08
V3_QUERY_LENGTH = 12
GENERAL = IPv4Address(0)  # the group field of a general query


class IgmpType(enum.IntEnum):
    MEMBERSHIP_QUERY = 0x11
    V1_MEMBERSHIP_REPORT = 0x12
    V2_MEMBERSHIP_REPORT = 0x16
    V2_LEAVE_GROUP = 0x17
    V3_MEMBERSHIP_REPORT = 0x22


_RECORD_TYPES: dict[int, RecordType] = {int(r): r for r in RecordType}


def decode_code(code: int) -> int:
    """An IGMPv3 Max Resp Code (tenths of a second) or QQIC (seconds), RFC 3376 4.1.1/4.1.7:
    literal below 128, else ``(mant | 0x10) << (exp + 3)``."""
    if code < 0x80:
        return code
    return ((code & 0x0F) | 0x10) << (((code >> 4) & 0x07) + 3)


def encode_code(value: int) -> int:
    """The code for ``value``, rounded down to what the encoding can say (at most 31744)."""
    if value < 0x80:
        return max(value, 0)
    exp = min(value.bit_length() - 8, 7)
    mant = min(value >> (exp + 3), 0x1F) & 0x0F
    return 0x80 | exp << 4 | mant


def multicast_mac(group: IPv4Address) -> bytes:
    """The Ethernet destination of an IPv4 group: 01:00:5e and the group's low 23 bits
    (RFC 1112 6.4), so 32 groups share each address and the IP layer filters again."""
    if not group.is_multicast:
        raise WireUsageError(f"igmp: {group} is not a multicast address")
    low = int(group) & 0x7FFFFF
    return b"\x01\x00\x5e" + low.to_bytes(3, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class IgmpQuery:
    """A Membership Query; ``group`` 0.0.0.0 makes it general."""

    version: int  # 1, 2 or 3 (by length and Max Resp Code, RFC 3376 7.1)
    max_response_code: int  # v2: tenths of a second; v3: encoded (see max_response_time)
    group: IPv4Address
    suppress: bool = False  # S: routers skip timer updates (v3)
    qrv: int = 0  # the querier's robustness variable, 0-7 (v3)
    qqic: int = 0  # the querier's query interval code (v3)
    sources: tuple[IPv4Address, ...] = ()  # a group-and-source-specific query (v3)

    @property
    def max_response_time(self) -> float:
        """Seconds a host may wait before answering (v1 queries carry none: 10 s)."""
        if self.version == 1:
            return 10.0
        if self.version == 2:
            return self.max_response_code / 10.0
        return decode_code(self.max_response_code) / 10.0

    @property
    def is_general(self) -> bool:
        return self.group.is_unspecified


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRecord:
    record_type: RecordType | int
    group: IPv4Address
    sources: tuple[IPv4Address, ...] = ()
    aux_data: bytes = b""  # a multiple of 4 bytes; IGMPv3 defines none


@dataclass(frozen=True, slots=True, kw_only=True)
class IgmpV3Report:
    records: tuple[GroupRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IgmpGroupMessage:
    """A v1 report, v2 report or v2 leave: one group."""

    type: IgmpType
    group: IPv4Address


IgmpMessage = IgmpQuery | IgmpV3Report | IgmpGroupMessage


def _bad(field: str, value: object, reason: str) -> WireError:
    return WireError("igmp", field, value, reason)


def _addresses(view: memoryview, start: int, count: int) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(bytes(view[at:at + 4])) for at in range(start, start + 4 * count, 4))


def _multicast(raw: bytes, *, general_ok: bool) -> IPv4Address:
    group = IPv4Address(raw)
    if not (group.is_multicast or (general_ok and group.is_unspecified)):
        raise _bad("group", group, "group is multicast" + (" or 0.0.0.0" if general_ok else ""))
    return group


def parse_igmp(message: Bytes, *, verify_checksum: bool = True) -> IgmpMessage:
    """Decode one IGMP message (the IP payload)."""
    view = memoryview(message)
    length = len(view)
    if length < _HEADER.size:
        raise truncated("igmp", length, _HEADER.size)
    if verify_checksum and internet_checksum(view) != 0:
        raise _bad("checksum", int.from_bytes(view[2:4], "big"), "a zero ones' complement sum")
    kind, code, _checksum, group = _HEADER.unpack_from(view)
    if kind == IgmpType.MEMBERSHIP_QUERY:
        return _parse_query(view, code, group)
    if kind in (IgmpType.V1_MEMBERSHIP_REPORT, IgmpType.V2_MEMBERSHIP_REPORT,
                IgmpType.V2_LEAVE_GROUP):
        return IgmpGroupMessage(type=IgmpType(kind), group=_multicast(group, general_ok=False))
    if kind == IgmpType.V3_MEMBERSHIP_REPORT:
        return _parse_v3_report(view)
    raise _bad("type", kind, "type in (0x11, 0x12, 0x16, 0x17, 0x22)")


def _parse_query(view: memoryview, code: int, group: bytes) -> IgmpQuery:
    length = len(view)
    if length == _HEADER.size:
        return IgmpQuery(version=1 if code == 0 else 2, max_response_code=code,
                         group=_multicast(group, general_ok=True))
    if length < V3_QUERY_LENGTH:
        raise _bad("length", length, "length == 8 (v1/v2 query) or >= 12 (v3 query)")
    _k, _c, _s, _g, flags, qqic, count = _V3_QUERY.unpack_from(view)
    if V3_QUERY_LENGTH + 4 * count > length:
        raise _bad("sources", count, f"sources fit in {length} bytes")
    return IgmpQuery(version=3, max_response_code=code, group=_multicast(group, general_ok=True),
                     suppress=bool(flags & _S_FLAG), qrv=flags & 0x07, qqic=qqic,
                     sources=_addresses(view, V3_QUERY_LENGTH, count))


def _parse_v3_report(view: memoryview) -> IgmpV3Report:
    length = len(view)
    _k, _r, _c, _r2, count = _V3_REPORT.unpack_from(view)
    records: list[GroupRecord] = []
    pos = _V3_REPORT.size
    for _ in range(count):
        if length - pos < _RECORD.size:
            raise _bad("records", count, f"records fit in {length} bytes")
        rtype, aux, nsrc, group = _RECORD.unpack_from(view, pos)
        sources_end = pos + _RECORD.size + 4 * nsrc
        end = sources_end + 4 * aux
        if end > length:
            raise _bad("record_length", end - pos, f"record fits in {length - pos} bytes left")
        records.append(GroupRecord(record_type=_RECORD_TYPES.get(rtype, rtype),
                                   group=_multicast(group, general_ok=False),
                                   sources=_addresses(view, pos + _RECORD.size, nsrc),
                                   aux_data=bytes(view[sources_end:end])))
        pos = end
    return IgmpV3Report(records=tuple(records))


def _finish(raw: bytearray) -> bytes:
    raw[2:4] = internet_checksum(raw).to_bytes(2, "big")
    return bytes(raw)


def build_igmp_group_message(kind: IgmpType, group: IPv4Address) -> bytes:
    """A v1 report, v2 report or v2 leave for ``group``."""
    if kind not in (IgmpType.V1_MEMBERSHIP_REPORT, IgmpType.V2_MEMBERSHIP_REPORT,
                    IgmpType.V2_LEAVE_GROUP):
        raise WireUsageError(f"igmp: {kind!r} is not a single-group message")
    if not group.is_multicast:
        raise WireUsageError(f"igmp: {group} is not a multicast address")
    return _finish(bytearray(_HEADER.pack(kind, 0, 0, group.packed)))


def build_igmp_query(*, version: int = 3, group: IPv4Address = GENERAL,
                     max_response_code: int = 100, sources: tuple[IPv4Address, ...] = (),
                     qrv: int = 2, qqic: int = 125, suppress: bool = False) -> bytes:
    """A Membership Query (what a querier sends; the tests play the router with it)."""
    if version in (1, 2):
        if sources:
            raise WireUsageError("igmp: only a v3 query carries sources")
        code = 0 if version == 1 else max_response_code
        return _finish(bytearray(_HEADER.pack(IgmpType.MEMBERSHIP_QUERY, code, 0,
                                              group.packed)))
    if version != 3 or not 0 <= qrv <= 7 or len(sources) > 0xFFFF:
        raise WireUsageError(f"igmp: cannot build a v{version} query with qrv {qrv}")
    flags = (_S_FLAG if suppress else 0) | qrv
    raw = bytearray(_V3_QUERY.pack(IgmpType.MEMBERSHIP_QUERY, max_response_code, 0,
                                   group.packed, flags, qqic, len(sources)))
    for source in sources:
        raw += source.packed
    return _finish(raw)


def build_igmp_v3_report(records: list[GroupRecord] | tuple[GroupRecord, ...]) -> bytes:
    """A Version 3 Membership Report carrying ``records`` (the caller keeps it under the MTU)."""
    if len(records) > 0xFFFF:
        raise WireUsageError(f"igmp: {len(records)} records do not fit a report")
    raw = bytearray(_V3_REPORT.pack(IgmpType.V3_MEMBERSHIP_REPORT, 0, 0, 0, len(records)))
    for record in records:
        if len(record.aux_data) % 4 or len(record.aux_data) > 4 * 0xFF:
            raise WireUsageError("igmp: aux data must be whole 32-bit words, at most 255")
        if not record.group.is_multicast or len(record.sources) > 0xFFFF:
            raise WireUsageError(f"igmp: cannot report {record.group}")
        raw += _RECORD.pack(int(record.record_type), len(record.aux_data) // 4,
                            len(record.sources), record.group.packed)
        for source in record.sources:
            raw += source.packed
        raw += record.aux_data
    return _finish(raw)
