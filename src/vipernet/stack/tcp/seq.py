"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

The engine itself keeps *unwrapped* sequence numbers: every connection counts its send and
receive positions as plain Python ints relative to its initial sequence numbers (the SYN is
offset 0, the first data byte offset 1), so comparisons inside the engine are ordinary integer
comparisons and a multi-gigabyte transfer never wraps.  These helpers convert at the wire
boundary and compare raw 32-bit values where the wire forces us to (timestamps, listeners).
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` in the range [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - 0x100000000 if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def unwrap(wire: int, origin: int, near: int) -> int:
    """The unwrapped offset (from ``origin``) of 32-bit ``wire`` closest to offset ``near``."""
    d = (wire - origin - near) & MASK
    if d >= HALF:
        d -= 0x100000000
    return near + d


def wrap(offset: int, origin: int) -> int:
    """The 32-bit wire value of unwrapped ``offset`` from ``origin``."""
    return (origin + offset) & MASK
