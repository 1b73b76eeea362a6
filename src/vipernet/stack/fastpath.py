"""The echo fast path: answer a plain ping without building a single dataclass.

``benchmarks/ping_rtt.py`` measures kernel -> stack round trips, and most of a Python
stack's time there goes into constructing frozen header objects and ``IPv4Address``es
that the reply does not need.  A request that is entirely ordinary — IPv4 without options,
not a fragment, addressed to us, ICMP echo request with a good checksum, from a neighbour
whose MAC is cached, small enough to answer in one frame — is answered here straight from
its bytes: the addresses are swapped, and the ICMP checksum is updated incrementally for
the type change (RFC 1624 eqn. 3) rather than recomputed.  Anything else returns False and
takes the general path (:mod:`vipernet.stack.ipv4_layer`), which also does the counting of
every drop, so the two paths can never disagree on what is accepted.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from vipernet.link.frame import Offload
from vipernet.wire.checksum import internet_checksum

if TYPE_CHECKING:
    from vipernet.stack.arp_layer import ArpLayer
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.ipv4_layer import Ipv4Layer

_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_ECHO_TYPE_WORD_DELTA = ~0x0800 & 0xFFFF  # ~m for m = (type 8, code 0); m' = (0, 0)


class FastPathHost(Protocol):
    """What the echo fast path reads of the stack."""

    config: StackConfig
    counters: Counters
    mtu: int
    arp: ArpLayer
    ipv4: Ipv4Layer

    def _emit_ipv4(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None: ...


def answer_echo_fast(stack: FastPathHost, ip: memoryview, offload: Offload | None,
                     our_ip: bytes, now: float) -> bool:
    """Answer ``ip`` (an IPv4 packet) if it is a plain echo request; False otherwise."""
    if len(ip) < 28 or ip[0] != 0x45 or ip[9] != 1 or ip[20] != 8 or ip[21] != 0:
        return False
    if ip[6] & 0xBF or ip[7]:  # a fragment, or the reserved flag: general path
        return False
    total = (ip[2] << 8) | ip[3]
    if total < 28 or total > len(ip) or total > stack.mtu:
        return False
    if ip[16:20] != our_ip:
        return False
    if offload is not None and offload.needs_csum:
        return False  # a partial checksum cannot be updated incrementally
    if internet_checksum(ip[:20]) != 0:
        return False
    icmp = ip[20:total]
    if (offload is None or not offload.data_valid) and internet_checksum(icmp) != 0:
        return False
    src_bytes = bytes(ip[12:16])
    if src_bytes == our_ip or src_bytes[0] >= 224 or src_bytes == b"\0\0\0\0":
        return False  # martians (and multicast/broadcast): the general path drops them
    src = IPv4Address(src_bytes)
    try:
        next_hop = stack.ipv4.route(src)
    except OSError:
        return False
    arp = stack.arp
    mac = arp.cache.lookup(next_hop, now)
    if mac is None:
        return False  # the general path queues the reply behind an ARP request
    if arp.cache.wants_refresh(next_hop, now):
        arp.request(next_hop)
    x = (~((icmp[2] << 8) | icmp[3]) & 0xFFFF) + _ECHO_TYPE_WORD_DELTA
    x = (x & 0xFFFF) + (x >> 16)
    # 0x0000 and 0xFFFF are the same number in one's complement, but only 0xFFFF verifies
    # when every other word is zero (ident 0, seq 0, no payload), and it always verifies.
    checksum = (~((x & 0xFFFF) + (x >> 16)) & 0xFFFF) or 0xFFFF
    header = _IP_HEADER.pack(0x45, ip[1], total, stack.ipv4.next_ident(), 0,
                             stack.config.ttl, 1, 0, our_ip, src_bytes)
    header_checksum = internet_checksum(header)
    stack._emit_ipv4(mac, b"".join((
        header[:10], header_checksum.to_bytes(2, "big"), header[12:],
        b"\0\0", checksum.to_bytes(2, "big"))), icmp[4:], None)
    count = stack.counters.inc
    count("ipv4.rx.delivered")
    count("icmp.rx.echo_request")
    count("icmp.tx.echo_reply")
    count("ipv4.tx.packets")
    return True
