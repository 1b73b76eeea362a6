"""IPv6 extension headers (RFC 8200 4): walk the chain a host must process, judge it.

:func:`walk_extension_headers` follows the Next Header chain from the fixed header to the
upper layer and returns an :class:`ExtensionChain`: the upper-layer protocol and where its
bytes start, the fragment header if there is one, and a verdict.  A verdict is needed
because RFC 8200 answers some well-formed-but-unacceptable chains with ICMPv6 Parameter
Problem instead of a silent drop, and the pointer it needs is only known here:

* Hop-by-Hop Options (0) anywhere but first: code 1 ("unrecognized Next Header"),
  pointing at the Next Header octet that named it (RFC 8200 4.1, as Linux does).
* Hop-by-Hop and Destination Options (60) hold TLV options (4.2): Pad1 and PadN are
  skipped, Router Alert (RFC 2711) is recorded, and an unrecognized option is handled by
  the two high bits of its type: 00 skip, 01 drop silently, 10 drop + code 2 pointing at
  the option type, 11 the same but silently when the destination is multicast.  Jumbo
  Payload (0xC2) is "unrecognized": we do not do jumbograms.
* Routing (43) with Segments Left 0 is ignored (4.4).  With Segments Left > 0 we would
  have to forward, which a host does not: type 0 (deprecated by RFC 5095) and every
  other type get code 0 pointing at the Routing Type octet.
* Fragment (44) ends the walk: what follows is fragment data, to be walked again after
  reassembly.  A non-last fragment whose data is not a multiple of 8 bytes gets code 0
  pointing at the Payload Length field, and one that would end past 65535 bytes code 0
  pointing at its Fragment Offset field (4.5).
* No Next Header (59) ends the packet: dropped silently (4.7), never "unknown protocol".

Any other Next Header value is the upper layer.  Whether the stack has a handler for it is
not known here; when it has none it answers code 1 pointing at
:attr:`ExtensionChain.next_header_field`.  ESP and AH are treated as upper layers that way.

Pointers are offsets from the start of the IPv6 header (RFC 4443 3.4); offsets named
``*_offset`` are within the IPv6 payload.  Bytes that do not hold together - a header or
option running past the payload, a Router Alert of the wrong length, a chain of more than
:data:`MAX_EXTENSION_HEADERS` headers (a cap so a hostile packet of 8-byte headers cannot
make a host walk thousands of them) - raise :class:`WireError`: a silent drop, as Linux.
The ICMPv6 rules about not answering multicast (RFC 4443 2.4(e)) are left to the stack.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vipernet.wire.errors import WireError, WireUsageError
from vipernet.wire.ipv6 import HEADER_LENGTH, IPv6Header, NextHeader

Bytes = bytes | bytearray | memoryview

MAX_EXTENSION_HEADERS = 8
FRAGMENT_HEADER_LENGTH = 8
PAYLOAD_LENGTH_FIELD = 4  # offset of the Payload Length field in the fixed header
NEXT_HEADER_FIELD = 6  # offset of the Next Header field in the fixed header

# TLV option types (RFC 8200 4.2, RFC 2711, RFC 2675).
PAD1 = 0x00
PADN = 0x01
ROUTER_ALERT = 0x05
JUMBO_PAYLOAD = 0xC2
ROUTER_ALERT_MLD = 0  # RFC 2711 value for MLD messages

# Parameter Problem codes (RFC 4443 3.4), repeated here so the walker needs no ICMPv6 import.
ERRONEOUS_HEADER_FIELD = 0
UNRECOGNIZED_NEXT_HEADER = 1
UNRECOGNIZED_OPTION = 2

_OPTION_HEADERS = frozenset((NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS))
_EXTENSIONS = frozenset(
    (
        NextHeader.HOP_BY_HOP,
        NextHeader.DESTINATION_OPTIONS,
        NextHeader.ROUTING,
        NextHeader.FRAGMENT,
        NextHeader.NO_NEXT_HEADER,
    )
)
_FRAGMENT = struct.Struct("!BBHI")  # next header, reserved, offset/res/M, identification


class ChainVerdict(enum.Enum):
    OK = "ok"
    DROP = "drop"  # silently
    PARAMETER_PROBLEM = "parameter_problem"  # drop and answer ICMPv6 type 4


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentInfo:
    offset: int  # of this fragment's data in the original payload, in bytes
    more: bool  # the M flag
    ident: int  # 32-bit identification
    header_offset: int  # of the Fragment header within the IPv6 payload
    next_header_field: int  # from the IPv6 start: the octet naming the Fragment header
    next_header: int  # the Fragment header's Next Header (the fragmentable part's first)

    @property
    def unfragmentable_length(self) -> int:
        """Bytes of extension headers before the Fragment header (RFC 8200 4.5's
        "Per-Fragment headers" minus the fixed header): the part a reassembled packet
        takes from the first fragment, with ``next_header_field`` set to ``next_header``."""
        return self.header_offset

    @property
    def data_offset(self) -> int:
        """Where the fragment's data starts within the IPv6 payload."""
        return self.header_offset + FRAGMENT_HEADER_LENGTH


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionChain:
    verdict: ChainVerdict
    upper_protocol: int  # Next Header value after the walked headers (fragment: of its data)
    upper_offset: int  # where that protocol's bytes start within the IPv6 payload
    next_header_field: int  # from the IPv6 start: the octet holding ``upper_protocol``
    headers: tuple[int, ...] = ()  # the extension headers walked, in order
    fragment: FragmentInfo | None = None
    router_alert: int | None = None  # the Hop-by-Hop Router Alert value, if present
    icmp_code: int = 0  # PARAMETER_PROBLEM only
    icmp_pointer: int = 0  # PARAMETER_PROBLEM only: from the start of the IPv6 header
    reason: str = ""  # why, for a drop counter or debug log, when not OK


def walk_extension_headers(
    header: IPv6Header, payload: Bytes, *, max_headers: int = MAX_EXTENSION_HEADERS
) -> ExtensionChain:
    """Walk ``payload`` (the IPv6 payload from :func:`parse_ipv6`) from ``header.next_header``."""
    view = memoryview(payload)
    end = len(view)
    multicast = header.dst.is_multicast
    nxt = int(header.next_header)
    field = NEXT_HEADER_FIELD
    pos = 0
    walked: list[int] = []
    alert: int | None = None

    def result(
        verdict: ChainVerdict, code: int = 0, pointer: int = 0, reason: str = ""
    ) -> ExtensionChain:
        return ExtensionChain(
            verdict=verdict,
            upper_protocol=nxt,
            upper_offset=pos,
            next_header_field=field,
            headers=tuple(walked),
            router_alert=alert,
            icmp_code=code,
            icmp_pointer=pointer,
            reason=reason,
        )

    while nxt in _EXTENSIONS:
        if nxt == NextHeader.NO_NEXT_HEADER:
            return result(ChainVerdict.DROP, reason="no next header (RFC 8200 4.7)")
        if nxt == NextHeader.HOP_BY_HOP and pos:
            return result(
                ChainVerdict.PARAMETER_PROBLEM,
                UNRECOGNIZED_NEXT_HEADER,
                field,
                "Hop-by-Hop Options header not first (RFC 8200 4.1)",
            )
        if len(walked) >= max_headers:
            raise WireError(
                "ipv6_ext", "header_count", len(walked) + 1, f"header_count <= {max_headers}"
            )
        if end - pos < 2:
            raise WireError("ipv6_ext", "length", end - pos, f"header {nxt} length >= 2")
        size = FRAGMENT_HEADER_LENGTH if nxt == NextHeader.FRAGMENT else (view[pos + 1] + 1) * 8
        if size > end - pos:
            raise WireError(
                "ipv6_ext", "header_length", size, f"header {nxt} length <= {end - pos} left"
            )
        base = HEADER_LENGTH + pos  # this header's offset from the IPv6 start
        if nxt in _OPTION_HEADERS:
            hop_by_hop = nxt == NextHeader.HOP_BY_HOP
            verdict = _check_options(view[pos + 2 : pos + size], base + 2, multicast, hop_by_hop)
            if isinstance(verdict, int):
                alert = verdict
            elif verdict is not None:
                return result(*verdict)
        elif nxt == NextHeader.ROUTING and view[pos + 3]:
            rtype = view[pos + 2]
            why = "deprecated (RFC 5095)" if rtype == 0 else "not supported by a host"
            return result(
                ChainVerdict.PARAMETER_PROBLEM,
                ERRONEOUS_HEADER_FIELD,
                base + 2,
                f"routing type {rtype} with segments left {view[pos + 3]}: {why}",
            )
        elif nxt == NextHeader.FRAGMENT:
            return _fragment(view, pos, field, header, tuple(walked), alert)
        walked.append(nxt)
        field = base
        nxt = view[pos]
        pos += size
    return result(ChainVerdict.OK)


def _check_options(
    options: memoryview, at: int, multicast: bool, hop_by_hop: bool
) -> int | tuple[ChainVerdict, int, int, str] | None:
    """None if every option passes, the Router Alert value if one was found, or the
    (verdict, code, pointer, reason) for the first unrecognized option that says drop.
    ``at`` is the options' offset from the IPv6 start."""
    alert: int | None = None
    i, end = 0, len(options)
    while i < end:
        kind = options[i]
        if kind == PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + options[i + 1] > end:
            raise WireError("ipv6_ext", "option_length", kind, "option fits in its header")
        size = options[i + 1]
        if kind == PADN:
            pass
        elif kind == ROUTER_ALERT and hop_by_hop:
            if size != 2:
                raise WireError("ipv6_ext", "router_alert_length", size, "length == 2 (RFC 2711)")
            alert = int.from_bytes(options[i + 2 : i + 4], "big")
        elif kind >> 6 == 1 or (kind >> 6 == 3 and multicast):
            return ChainVerdict.DROP, 0, 0, f"unrecognized option {kind:#04x} says discard"
        elif kind >> 6:
            return (
                ChainVerdict.PARAMETER_PROBLEM,
                UNRECOGNIZED_OPTION,
                at + i,
                f"unrecognized option {kind:#04x}",
            )
        i += 2 + size
    return alert


def _fragment(
    view: memoryview,
    pos: int,
    field: int,
    header: IPv6Header,
    walked: tuple[int, ...],
    alert: int | None,
) -> ExtensionChain:
    nxt, _res, word, ident = _FRAGMENT.unpack_from(view, pos)
    info = FragmentInfo(
        offset=word & 0xFFF8,
        more=bool(word & 1),
        ident=ident,
        header_offset=pos,
        next_header_field=field,
        next_header=nxt,
    )
    data = len(view) - info.data_offset
    verdict, code, pointer, reason = ChainVerdict.OK, 0, 0, ""
    if info.more and data % 8:
        verdict, code, pointer = ChainVerdict.PARAMETER_PROBLEM, ERRONEOUS_HEADER_FIELD, 4
        reason = f"non-last fragment of {data} bytes, not a multiple of 8"
    elif pos + info.offset + data > 0xFFFF:  # the reassembled payload length would overflow
        verdict, code = ChainVerdict.PARAMETER_PROBLEM, ERRONEOUS_HEADER_FIELD
        pointer = HEADER_LENGTH + pos + 2
        reason = f"reassembled payload of {pos + info.offset + data} bytes > 65535"
    return ExtensionChain(
        verdict=verdict,
        upper_protocol=nxt,
        upper_offset=info.data_offset,
        next_header_field=HEADER_LENGTH + pos,
        headers=(*walked, NextHeader.FRAGMENT),
        fragment=info,
        router_alert=alert,
        icmp_code=code,
        icmp_pointer=pointer,
        reason=reason,
    )


# Builders.


def build_options_header(next_header: int, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """A Hop-by-Hop or Destination Options header holding ``(type, data)`` options, padded
    to a multiple of 8 bytes with Pad1/PadN (RFC 8200 4.2)."""
    if not 0 <= next_header <= 0xFF:
        raise WireUsageError(f"ipv6_ext: next header {next_header} not in 0..255")
    body = bytearray((next_header, 0))
    for kind, data in options:
        if not 0 <= kind <= 0xFF or len(data) > 0xFF:
            raise WireUsageError(f"ipv6_ext: option {kind} with {len(data)} bytes")
        body += bytes((kind, len(data))) + data
    pad = -len(body) % 8
    if pad == 1:
        body.append(PAD1)
    elif pad:
        body += bytes((PADN, pad - 2)) + bytes(pad - 2)
    if len(body) > 2048:
        raise WireUsageError(f"ipv6_ext: options header of {len(body)} bytes > 2048")
    body[1] = len(body) // 8 - 1
    return bytes(body)


def build_router_alert_header(next_header: int, value: int = ROUTER_ALERT_MLD) -> bytes:
    """The 8-byte Hop-by-Hop header MLD messages carry (RFC 3810 5, RFC 2711)."""
    return build_options_header(next_header, ((ROUTER_ALERT, value.to_bytes(2, "big")),))


def build_routing_header(
    next_header: int, routing_type: int, segments_left: int, data: bytes = bytes(4)
) -> bytes:
    """A Routing header with type-specific ``data`` (4 + len(data) a multiple of 8)."""
    size = 4 + len(data)
    if size % 8 or size > 2048:
        raise WireUsageError(f"ipv6_ext: routing header of {size} bytes (need a multiple of 8)")
    try:
        return struct.pack("!BBBB", next_header, size // 8 - 1, routing_type, segments_left) + data
    except struct.error as exc:
        raise WireUsageError(f"ipv6_ext: field out of range: {exc}") from None


def build_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """The 8-byte Fragment header; ``offset`` in bytes, a multiple of 8 below 65536."""
    if offset % 8 or not 0 <= offset <= 0xFFF8:
        raise WireUsageError(f"ipv6_ext: fragment offset {offset} is not a multiple of 8 in range")
    try:
        return _FRAGMENT.pack(next_header, 0, offset | int(more), ident)
    except struct.error as exc:
        raise WireUsageError(f"ipv6_ext: field out of range: {exc}") from None
