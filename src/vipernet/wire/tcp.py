"""TCP segments (RFC 9293) and their options (RFC 7323 window scale and timestamps,
RFC 2018 SACK, RFC 6691 MSS), with the IPv4 pseudo-header checksum.

Parsing: integrity first (20 bytes at least, a data offset of 5..15 words that fits the
segment, the checksum), then the options.  Every option but EOL and NOP carries a length
byte; a length that is missing, below 2, past the option space, or wrong for a known kind
(MSS 4, window scale 3, SACK-permitted 2, SACK 2+8n with n >= 1, timestamps 10) raises
:class:`WireError`.  Unknown kinds are kept as ``(kind, data)``.  Values are kept as sent:
a window scale above 14 is clamped by the stack (RFC 7323 2.3), not here.

Building: options are written in one canonical order and aligned with NOPs the way Linux
does it (``tcp_options_write``), so captures look familiar and tshark flags nothing:

    MSS                         02 04 mm mm
    SACK-permitted + timestamps 04 02 08 0a <tsval> <tsecr>
    timestamps alone            01 01 08 0a <tsval> <tsecr>
    SACK-permitted alone        01 01 04 02
    window scale                01 03 03 ss
    SACK blocks                 01 01 05 0a+8(n-1) <left> <right> ...
    unknown options, as given, then EOL padding to a 4-byte boundary

The checksum of a large segment is computed over header and payload separately and
chained, so the payload is never copied just to checksum it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from vipernet.wire._construct import fast_constructor
from vipernet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from vipernet.wire.errors import WireError, WireUsageError, truncated

Bytes = bytes | bytearray | memoryview

MIN_HEADER_LENGTH = 20
MAX_OPTIONS_LENGTH = 40
PROTO_TCP = 6
CHECKSUM_OFFSET = 16

# ports, seq, ack, data offset/reserved, flags, window, checksum, urgent pointer
_HEADER = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PAIR = struct.Struct("!II")


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class OptionKind(enum.IntEnum):
    EOL = 0
    NOP = 1
    MSS = 2
    WINDOW_SCALE = 3
    SACK_PERMITTED = 4
    SACK = 5
    TIMESTAMPS = 8


_FIXED_LENGTHS: dict[int, int] = {
    OptionKind.MSS: 4,
    OptionKind.WINDOW_SCALE: 3,
    OptionKind.SACK_PERMITTED: 2,
    OptionKind.TIMESTAMPS: 10,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpOptions:
    mss: int | None = None
    window_scale: int | None = None  # shift count as sent (may exceed 14)
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge) sequence numbers
    timestamps: tuple[int, int] | None = None  # (tsval, tsecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data without kind/length bytes)


NO_OPTIONS = TcpOptions()
_FLAGS: tuple[TcpFlags, ...] = tuple(TcpFlags(i) for i in range(256))
_TS_ONLY_PREFIX = b"\x01\x01\x08\x0a"  # what Linux puts on every established segment


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    urgent: int = 0
    options: TcpOptions = NO_OPTIONS


_new_header = fast_constructor(TcpHeader)
_new_options = fast_constructor(TcpOptions)


def parse_tcp_options(raw: Bytes) -> TcpOptions:
    """Decode the option bytes between the fixed header and the data offset."""
    data = bytes(raw)
    end = len(data)
    if end == 12 and data[:4] == _TS_ONLY_PREFIX:  # the hot path: skip the general loop
        return _new_options(None, None, False, (), _PAIR.unpack_from(data, 4), ())
    pos = 0
    mss: int | None = None
    wscale: int | None = None
    sack_perm = False
    sacks: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    while pos < end:
        kind = data[pos]
        if kind == OptionKind.EOL:
            break  # the rest is padding
        if kind == OptionKind.NOP:
            pos += 1
            continue
        if pos + 1 >= end:
            raise WireError("tcp", f"option {kind} length", "missing", "option has a length byte")
        olen = data[pos + 1]
        if olen < 2:
            raise WireError("tcp", f"option {kind} length", olen, "option length >= 2")
        if pos + olen > end:
            raise WireError(
                "tcp", f"option {kind} length", olen, f"option fits the header ({end - pos} left)"
            )
        body = pos + 2
        expected = _FIXED_LENGTHS.get(kind)
        if expected is not None and olen != expected:
            raise WireError("tcp", f"option {kind} length", olen, f"length == {expected}")
        if kind == OptionKind.MSS:
            mss = _U16.unpack_from(data, body)[0]
        elif kind == OptionKind.WINDOW_SCALE:
            wscale = data[body]
        elif kind == OptionKind.SACK_PERMITTED:
            sack_perm = True
        elif kind == OptionKind.TIMESTAMPS:
            ts = _PAIR.unpack_from(data, body)
        elif kind == OptionKind.SACK:
            if olen < 10 or (olen - 2) % 8:
                raise WireError("tcp", "option 5 length", olen, "length == 2 + 8n, n >= 1")
            sacks = tuple(_PAIR.unpack_from(data, p) for p in range(body, pos + olen, 8))
        else:
            unknown.append((kind, data[body : pos + olen]))
        pos += olen
    return TcpOptions(
        mss=mss,
        window_scale=wscale,
        sack_permitted=sack_perm,
        sack_blocks=sacks,
        timestamps=ts,
        unknown=tuple(unknown),
    )


def parse_tcp(
    data: Bytes, *, src: IPv4Address, dst: IPv4Address, verify_checksum: bool = True
) -> tuple[TcpHeader, memoryview]:
    """Header and a zero-copy view of the payload (everything past the data offset)."""
    length = len(data)
    if length < MIN_HEADER_LENGTH:
        raise truncated("tcp", length, MIN_HEADER_LENGTH)
    view = memoryview(data)
    sport, dport, seq, ack, off, flags, window, csum, urgent = _HEADER.unpack_from(view)
    words = off >> 4
    if words < 5:
        raise WireError("tcp", "data_offset", words, "data_offset >= 5")
    hlen = words * 4
    if hlen > length:
        raise WireError("tcp", "data_offset", words, f"data_offset * 4 <= length ({length})")
    if verify_checksum:
        pseudo = pseudo_header_sum(src, dst, PROTO_TCP, length)
        if internet_checksum(view, pseudo) != 0:
            raise WireError("tcp", "checksum", hex(csum), "checksum verifies")
    options = parse_tcp_options(view[MIN_HEADER_LENGTH:hlen]) if hlen > 20 else NO_OPTIONS
    header: TcpHeader = _new_header(sport, dport, seq, ack, _FLAGS[flags], window, urgent, options)
    return header, view[hlen:]


def build_tcp_options(options: TcpOptions) -> bytes:
    """Option bytes in the canonical order, padded to a multiple of 4."""
    if options is NO_OPTIONS or options == NO_OPTIONS:
        return b""
    out = bytearray()
    try:
        if options.mss is not None:
            out += b"\x02\x04" + _U16.pack(options.mss)
        if options.timestamps is not None:
            out += b"\x04\x02" if options.sack_permitted else b"\x01\x01"
            out += b"\x08\x0a" + _PAIR.pack(*options.timestamps)
        elif options.sack_permitted:
            out += b"\x01\x01\x04\x02"
        if options.window_scale is not None:
            out += b"\x01\x03\x03" + bytes((options.window_scale,))
        if options.sack_blocks:
            out += b"\x01\x01\x05" + bytes((2 + 8 * len(options.sack_blocks),))
            for left, right in options.sack_blocks:
                out += _PAIR.pack(left, right)
        for kind, body in options.unknown:
            if kind in (OptionKind.EOL, OptionKind.NOP):
                raise WireUsageError(f"tcp: unknown option kind {kind} cannot carry data")
            out += bytes((kind, 2 + len(body))) + body
    except (struct.error, ValueError) as exc:
        raise WireUsageError(f"tcp: option value out of range: {exc}") from None
    out += bytes(-len(out) % 4)  # EOL padding
    if len(out) > MAX_OPTIONS_LENGTH:
        raise WireUsageError(f"tcp: {len(out)} bytes of options > {MAX_OPTIONS_LENGTH}")
    return bytes(out)


def build_tcp(
    header: TcpHeader,
    payload: Bytes,
    *,
    src: IPv4Address,
    dst: IPv4Address,
    partial_checksum: bool = False,
) -> bytes:
    """Header + options + payload with the checksum.

    With ``partial_checksum`` the checksum field holds only the (uncomplemented)
    pseudo-header sum, as virtio ``NEEDS_CSUM`` / Linux ``CHECKSUM_PARTIAL`` expect: the
    device sums from the TCP header to the end and stores the complement.
    """
    opts = build_tcp_options(header.options)
    hlen = MIN_HEADER_LENGTH + len(opts)
    length = hlen + len(payload)
    try:
        head = (
            _HEADER.pack(
                header.src_port,
                header.dst_port,
                header.seq,
                header.ack,
                (hlen // 4) << 4,
                header.flags,
                header.window,
                0,
                header.urgent,
            )
            + opts
        )
    except struct.error as exc:
        raise WireUsageError(f"tcp: field out of range: {exc}") from None
    pseudo = pseudo_header_sum(src, dst, PROTO_TCP, length)
    if partial_checksum:
        csum = pseudo
    else:
        csum = internet_checksum(payload, ones_complement_sum(head, pseudo))
    return b"".join((head[:16], _U16.pack(csum), head[18:], payload))
