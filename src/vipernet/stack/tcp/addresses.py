"""How TCP holds addresses of both families as one kind of key.

Connections are found by ``(remote ip, remote port, local port)`` with the IP as an int
(ints hash and compare faster than address objects, and the IPv4 fast path needs no
object at all).  An IPv6 address is stored as ``V6 | int(address)``: the tag bit above
the 128 address bits keeps ``::1`` (the int 1) apart from ``0.0.0.1`` and lets any code
tell the family with one comparison (``ip > V4_MAX``).  A peer reached over IPv4 by a
dual-stack ``AF_INET6`` socket is an IPv4 connection: only the socket names it
``::ffff:a.b.c.d``.

The tag also keeps the checksum arithmetic one formula: a number is congruent modulo
0xFFFF to the sum of its 16-bit words (2**16 is 1 mod 0xFFFF), so the pseudo-header sum
of either family is ``src + dst + 6 + length`` mod 0xFFFF, less 1 per tag (2**128 is also
1 mod 0xFFFF) -- see :func:`vipernet.stack.tcp.segment.pseudo_sum`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

V6 = 1 << 128
V4_MAX = 0xFFFFFFFF
_ADDRESS_BITS = V6 - 1


def tag6(address: IPv6Address) -> int:
    return V6 | int(address)


def is_v6(ip: int) -> bool:
    return ip > V4_MAX


def address_of(ip: int) -> IPv4Address | IPv6Address:
    """The address object a key int stands for."""
    if ip > V4_MAX:
        return IPv6Address(ip & _ADDRESS_BITS)
    return IPv4Address(ip)


def key_bytes(ip: int) -> bytes:
    """Bytes for hashing (ISNs, timestamp offsets): 4 for IPv4, 17 for a tagged IPv6."""
    return ip.to_bytes(17 if ip > V4_MAX else 4, "big")
