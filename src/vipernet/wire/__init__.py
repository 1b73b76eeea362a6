"""vipernet.wire: bytes <-> frozen dataclasses for Ethernet, ARP, IPv4, ICMP, UDP and TCP.

Pure and stateless, one module per protocol (the contract is in docs/architecture.md):

* every ``parse_*`` takes ``bytes | memoryview`` straight off the wire and either returns
  a header dataclass (plus a zero-copy ``memoryview`` of the payload) or raises
  :class:`WireError` naming the layer, field, value and violated condition - never
  ``IndexError`` or ``struct.error``.  Checks run integrity first (lengths, checksums),
  then sanity (field values).
* every ``build_*`` returns ``bytes`` with lengths and checksums filled in, and raises
  :class:`WireUsageError` (a ``ValueError``) for values the format cannot carry.
* :mod:`vipernet.wire.checksum` computes the Internet checksum without a per-word loop.

MAC addresses are 6-byte ``bytes``; IPv4 addresses are ``ipaddress.IPv4Address``; unknown
code points (EtherType, IP protocol, ICMP type) are kept as plain ``int``.
"""

from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from vipernet.wire.errors import WireError, WireUsageError
from vipernet.wire.ethernet import (
    BROADCAST_MAC,
    EthernetHeader,
    EtherType,
    build_ethernet,
    mac_from_str,
    mac_to_str,
    parse_ethernet,
)
from vipernet.wire.icmp import (
    IcmpEcho,
    IcmpError,
    IcmpMessage,
    IcmpOther,
    IcmpType,
    TimeExceededCode,
    UnreachableCode,
    build_icmp,
    parse_icmp,
)
from vipernet.wire.ipv4 import (
    IpProto,
    IPv4Header,
    build_ipv4,
    build_ipv4_header,
    parse_ipv4,
    parse_quoted_ipv4,
)
from vipernet.wire.tcp import TcpFlags, TcpHeader, TcpOptions, build_tcp, parse_tcp
from vipernet.wire.udp import UdpHeader, build_udp, parse_udp

__all__ = [
    "BROADCAST_MAC",
    "ArpOp",
    "ArpPacket",
    "EtherType",
    "EthernetHeader",
    "IPv4Header",
    "IcmpEcho",
    "IcmpError",
    "IcmpMessage",
    "IcmpOther",
    "IcmpType",
    "IpProto",
    "TcpFlags",
    "TcpHeader",
    "TcpOptions",
    "TimeExceededCode",
    "UdpHeader",
    "UnreachableCode",
    "WireError",
    "WireUsageError",
    "build_arp",
    "build_ethernet",
    "build_icmp",
    "build_ipv4",
    "build_ipv4_header",
    "build_tcp",
    "build_udp",
    "internet_checksum",
    "mac_from_str",
    "mac_to_str",
    "ones_complement_sum",
    "parse_arp",
    "parse_ethernet",
    "parse_icmp",
    "parse_ipv4",
    "parse_quoted_ipv4",
    "parse_tcp",
    "parse_udp",
    "pseudo_header_sum",
]
