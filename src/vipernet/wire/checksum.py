"""The Internet checksum (RFC 1071) without a per-word Python loop.

The one's-complement sum of 16-bit big-endian words is congruent, modulo 0xFFFF, to the
whole buffer read as one big-endian integer, because ``2**16 == 1 (mod 0xFFFF)``: every
word ``w_i`` contributes ``w_i * 2**(16*i)``, which is ``w_i`` modulo 0xFFFF.  CPython turns
bytes into an int and reduces it modulo a one-digit number in C, in linear time, so a
64 KiB segment costs two C loops instead of 32768 Python iterations.

Two details make that exact rather than merely congruent:

* odd length: the RFC pads a zero byte at the end, i.e. the integer times 256;
* 0 versus 0xFFFF: both are "zero" modulo 0xFFFF.  An end-around-carry sum is 0 only when
  every input word is 0; otherwise it lands in 1..0xFFFF.  So a non-zero total that is
  a multiple of 0xFFFF folds to 0xFFFF, which is what a word-by-word adder produces.

``initial`` chains sums: pass a previous :func:`ones_complement_sum` (or a
:func:`pseudo_header_sum` or :func:`pseudo_header_sum_v6`) to cover discontiguous pieces,
each of even length except the last, without concatenating them.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

Bytes = bytes | bytearray | memoryview

_FROM_BYTES = int.from_bytes


def _fold(total: int) -> int:
    """Reduce a non-negative integer to its folded one's-complement 16-bit sum."""
    if total == 0:
        return 0
    return (total - 1) % 0xFFFF + 1


# Reducing a big int modulo 0xFFFF costs a hardware division per 30-bit digit, which is
# slower than building the int.  Summing fixed 4 KiB pieces first (each even-length piece
# is congruent to its own value, wherever it sits) leaves a single 4 KiB number to reduce;
# that nearly doubles the rate on 64 KiB segments.  4 KiB measured best in
# benchmarks/checksum.py (1-8 KiB are within noise of each other).
_CHUNK = 4096


def ones_complement_sum(data: Bytes, initial: int = 0) -> int:
    """The folded (not complemented) one's-complement sum of ``data``'s 16-bit words."""
    length = len(data)
    if length <= _CHUNK:
        value = _FROM_BYTES(data, "big")
        if length & 1:
            value <<= 8  # RFC 1071: pad an odd buffer with one zero byte at the end
        return _fold(value + initial)
    view = memoryview(data)
    last = length - (length % _CHUNK or _CHUNK)  # start of the final, possibly odd, piece
    value = sum([_FROM_BYTES(view[i : i + _CHUNK], "big") for i in range(0, last, _CHUNK)])
    tail = _FROM_BYTES(view[last:], "big")
    if length & 1:
        tail <<= 8
    return _fold(value + tail + initial)


def internet_checksum(data: Bytes, initial: int = 0) -> int:
    """The value to put in a checksum field; 0 when verifying data that includes one."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> int:
    """Folded sum of the TCP/UDP IPv4 pseudo-header (src, dst, zero, proto, length).

    An IPv4 address as a 32-bit integer is congruent to the sum of its two 16-bit
    halves modulo 0xFFFF, so the four terms can simply be added.
    """
    return _fold(int(src) + int(dst) + proto + length)


def pseudo_header_sum_v6(src: IPv6Address, dst: IPv6Address, next_header: int, length: int) -> int:
    """Folded sum of the IPv6 upper-layer pseudo-header (RFC 8200 8.1): source, destination,
    the 32-bit upper-layer packet length, three zero octets and the next header value.

    The same congruence as for IPv4 applies to a 128-bit address (it is the sum of its
    eight 16-bit words modulo 0xFFFF) and to the 32-bit length (its two halves), so the
    terms are added as integers.  ``next_header`` is the upper-layer protocol (6, 17, 58),
    never an extension header, and ``length`` is the upper-layer length, not the IPv6
    payload length when extension headers come first.  The result chains into
    :func:`ones_complement_sum` and :func:`internet_checksum` exactly like
    :func:`pseudo_header_sum` does.
    """
    return _fold(int(src) + int(dst) + length + next_header)
