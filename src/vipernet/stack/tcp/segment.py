"""The TCP engine's own fast segment codec and checksum.

``vipernet.wire.tcp`` is the general-purpose codec (frozen dataclasses with every option);
this module is the hot path of the engine: it parses straight into one slotted
:class:`Segment` with the handful of fields the state machine reads, and builds headers with
a precompiled :mod:`struct` plus option bytes chosen per connection.  The one's-complement
sum is :func:`vipernet.wire.checksum.ones_complement_sum` (big-integer arithmetic, no Python
loop over words); only the integer-address pseudo-header sum is local.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vipernet.stack.tcp.state import SegmentError
from vipernet.wire.checksum import ones_complement_sum
from vipernet.wire.tcp import TcpFlags

_HDR = struct.Struct("!HHIIBBHHH")
_HDR_NOCSUM = struct.Struct("!HHIIBBH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS_OPT = struct.Struct("!BBBBII")  # NOP NOP kind=8 len=10 tsval tsecr
_SACK_EDGE = struct.Struct("!II")

HEADER_LEN = 20
PROTO_TCP = 6


Flags = TcpFlags  # one definition of the flag bits: the wire codec's


# Plain ints for the hot path: IntFlag arithmetic goes through the enum machinery.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One received TCP segment: the header fields the engine needs and the payload."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: memoryview | bytes = b""
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    tsval: int | None = None
    tsecr: int = 0

    def __repr__(self) -> str:
        return (f"Segment({self.src_port}->{self.dst_port} {Flags(self.flags)!s} "
                f"seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)})")


# -- checksums ------------------------------------------------------------------------------

def pseudo_sum(src: int, dst: int, length: int) -> int:
    """Sum of the TCP pseudo-header, mod 0xFFFF, for IPv4 (RFC 9293 3.1) or IPv6 (RFC 8200
    8.1) addresses as TCP's key ints (see :mod:`vipernet.stack.tcp.addresses`): each
    address is congruent to the sum of its 16-bit words, each IPv6 tag to 1."""
    total = src + dst + PROTO_TCP + length
    if src > 0xFFFFFFFF:
        total -= 2
    return total % 0xFFFF


def checksum_ok(src: int, dst: int, segment: bytes | bytearray | memoryview) -> bool:
    return (pseudo_sum(src, dst, len(segment)) + ones_complement_sum(segment)) % 0xFFFF == 0


def finish_checksum(src: int, dst: int, segment: bytearray) -> None:
    """Fill the checksum field of ``segment`` (which must hold zero there)."""
    total = (pseudo_sum(src, dst, len(segment)) + ones_complement_sum(segment)) % 0xFFFF
    _U16.pack_into(segment, 16, 0xFFFF - total if total else 0)


def partial_checksum(src: int, dst: int, segment: bytearray) -> None:
    """Store the folded pseudo-header sum, for a device that completes it (virtio NEEDS_CSUM)."""
    p = pseudo_sum(src, dst, len(segment))
    _U16.pack_into(segment, 16, p if p else 0xFFFF)


# -- parsing --------------------------------------------------------------------------------

_TS_HLEN = HEADER_LEN + 12
_TS_DATA = HEADER_LEN + 4
_TS_PREFIX = b"\x01\x01\x08\x0a"  # NOP NOP kind=8 len=10
_TS_VALUES = struct.Struct("!II")
_SEGMENT_SLOTS = tuple(getattr(Segment, name).__set__ for name in (
    "src_port", "dst_port", "seq", "ack", "flags", "window", "payload", "mss", "window_scale",
    "sack_permitted", "sack_blocks", "tsval", "tsecr"))


def _new_segment(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                 payload: memoryview, tsval: int | None, tsecr: int) -> Segment:
    """A data segment without the frozen dataclass ``__init__`` (its ``object.__setattr__``
    per field cost more than the parse on the receive path); equal to one built normally."""
    seg: Segment = object.__new__(Segment)
    (s_sport, s_dport, s_seq, s_ack, s_flags, s_window, s_payload, s_mss, s_wscale, s_sperm,
     s_blocks, s_tsval, s_tsecr) = _SEGMENT_SLOTS
    s_sport(seg, sport)
    s_dport(seg, dport)
    s_seq(seg, seq)
    s_ack(seg, ack)
    s_flags(seg, flags)
    s_window(seg, window)
    s_payload(seg, payload)
    s_mss(seg, None)
    s_wscale(seg, None)
    s_sperm(seg, False)
    s_blocks(seg, ())
    s_tsval(seg, tsval)
    s_tsecr(seg, tsecr)
    return seg


def parse_segment(data: bytes | bytearray | memoryview) -> Segment:
    """Parse one TCP segment (the checksum is the caller's business); SegmentError if bad."""
    n = len(data)
    if n < HEADER_LEN:
        raise SegmentError("length", n, "shorter than the 20-byte header")
    sport, dport, seq, ack, off, flags, window, _csum, _urg = _HDR.unpack_from(data, 0)
    hlen = (off >> 4) * 4
    if hlen < HEADER_LEN or hlen > n:
        raise SegmentError("data_offset", hlen, f"must be 20..{n} bytes")
    view = data if isinstance(data, memoryview) else memoryview(data)
    payload = view[hlen:]
    if hlen == HEADER_LEN:
        return _new_segment(sport, dport, seq, ack, flags, window, payload, None, 0)
    if hlen == _TS_HLEN and view[HEADER_LEN:_TS_DATA] == _TS_PREFIX:
        # What every data segment of a timestamps connection carries (Linux's layout):
        # decoded with one unpack instead of the option loop below.
        ts_val, ts_ecr = _TS_VALUES.unpack_from(view, _TS_DATA)
        return _new_segment(sport, dport, seq, ack, flags, window, payload, ts_val, ts_ecr)
    mss: int | None = None
    wscale: int | None = None
    sack_perm = False
    blocks: list[tuple[int, int]] = []
    tsval: int | None = None
    tsecr = 0
    opts = bytes(view[HEADER_LEN:hlen])
    i = 0
    end = len(opts)
    while i < end:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            raise SegmentError("option", kind, "length byte missing")
        olen = opts[i + 1]
        if olen < 2 or i + olen > end:
            raise SegmentError("option_length", olen, f"option {kind} overruns the header")
        if kind == 2:
            if olen != 4:
                raise SegmentError("mss_length", olen, "must be 4")
            mss = _U16.unpack_from(opts, i + 2)[0]
        elif kind == 3:
            if olen != 3:
                raise SegmentError("wscale_length", olen, "must be 3")
            wscale = min(opts[i + 2], 14)  # RFC 7323 2.3: treat values above 14 as 14
        elif kind == 4:
            if olen != 2:
                raise SegmentError("sack_permitted_length", olen, "must be 2")
            sack_perm = True
        elif kind == 5:
            if (olen - 2) % 8:
                raise SegmentError("sack_length", olen, "must be 2 + 8*n")
            for j in range(i + 2, i + olen, 8):
                blocks.append(_SACK_EDGE.unpack_from(opts, j))
        elif kind == 8:
            if olen != 10:
                raise SegmentError("timestamps_length", olen, "must be 10")
            tsval, tsecr = struct.unpack_from("!II", opts, i + 2)
        i += olen
    return Segment(src_port=sport, dst_port=dport, seq=seq, ack=ack, flags=flags, window=window,
                   payload=payload, mss=mss, window_scale=wscale, sack_permitted=sack_perm,
                   sack_blocks=tuple(blocks), tsval=tsval, tsecr=tsecr)


# -- building -------------------------------------------------------------------------------

def syn_options(*, mss: int, window_scale: int | None, sack_permitted: bool,
                timestamps: tuple[int, int] | None) -> bytes:
    """Options of a SYN or SYN-ACK, laid out as Linux does (MSS, SACK-perm+TS, NOP+WS)."""
    out = bytearray(struct.pack("!BBH", 2, 4, mss))
    if timestamps is not None:
        if sack_permitted:
            out += struct.pack("!BBBBII", 4, 2, 8, 10, timestamps[0], timestamps[1])
        else:
            out += _TS_OPT.pack(1, 1, 8, 10, timestamps[0], timestamps[1])
    elif sack_permitted:
        out += b"\x01\x01\x04\x02"
    if window_scale is not None:
        out += bytes((1, 3, 3, window_scale))
    return bytes(out)


def data_options(timestamps: tuple[int, int] | None,
                 sack_blocks: list[tuple[int, int]] | None) -> bytes:
    """Options of an established-state segment: timestamps and up to 3 (or 4) SACK blocks."""
    out = b""
    if timestamps is not None:
        out = _TS_OPT.pack(1, 1, 8, 10, timestamps[0], timestamps[1])
    if sack_blocks:
        room = (40 - len(out) - 4) // 8
        blocks = sack_blocks[:room]
        out += bytes((1, 1, 5, 2 + 8 * len(blocks)))
        out += b"".join(_SACK_EDGE.pack(a, b) for a, b in blocks)
    return out


def build_segment(*, src_port: int, dst_port: int, seq: int, ack: int, flags: int, window: int,
                  options: bytes = b"", payload: bytes | bytearray | memoryview = b"") -> bytearray:
    """Header + options + payload with a zero checksum field (see finish/partial_checksum)."""
    hlen = HEADER_LEN + len(options)
    out = bytearray(_HDR.pack(src_port, dst_port, seq, ack, (hlen // 4) << 4, flags, window, 0, 0))
    if options:
        out += options
    if payload:
        out += payload
    return out
