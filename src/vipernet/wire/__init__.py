"""vipernet.wire: bytes <-> frozen dataclasses for Ethernet, ARP, IPv4, ICMP, UDP and TCP,
and IPv6 with its extension headers, ICMPv6, Neighbor Discovery and MLD.

Pure and stateless, one module per protocol (the contract is in docs/architecture.md):

* every ``parse_*`` takes ``bytes | memoryview`` straight off the wire and either returns
  a header dataclass (plus a zero-copy ``memoryview`` of the payload) or raises
  :class:`WireError` naming the layer, field, value and violated condition - never
  ``IndexError`` or ``struct.error``.  Checks run integrity first (lengths, checksums),
  then sanity (field values).
* every ``build_*`` returns ``bytes`` with lengths and checksums filled in, and raises
  :class:`WireUsageError` (a ``ValueError``) for values the format cannot carry.
* :mod:`vipernet.wire.checksum` computes the Internet checksum without a per-word loop.

MAC addresses are 6-byte ``bytes``; IP addresses are ``ipaddress.IPv4Address`` and
``ipaddress.IPv6Address``; unknown code points (EtherType, IP protocol, next header,
ICMP/ICMPv6 type, NDP option) are kept as plain ``int``.
"""

from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.checksum import (
    internet_checksum,
    ones_complement_sum,
    pseudo_header_sum,
    pseudo_header_sum_v6,
)
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
from vipernet.wire.icmpv6 import (
    Icmpv6Echo,
    Icmpv6Error,
    Icmpv6Message,
    Icmpv6Other,
    Icmpv6ParamProblemCode,
    Icmpv6TimeExceededCode,
    Icmpv6Type,
    Icmpv6UnreachableCode,
    build_icmpv6,
    build_icmpv6_error,
    build_icmpv6_message,
    parse_icmpv6,
)
from vipernet.wire.ipv4 import (
    IpProto,
    IPv4Header,
    build_ipv4,
    build_ipv4_header,
    parse_ipv4,
    parse_quoted_ipv4,
)
from vipernet.wire.ipv6 import (
    IPv6Header,
    NextHeader,
    build_ipv6,
    build_ipv6_packet,
    link_local_from_mac,
    multicast_mac,
    parse_ipv6,
    parse_quoted_ipv6,
    solicited_node,
)
from vipernet.wire.ipv6_ext import (
    ChainVerdict,
    ExtensionChain,
    FragmentInfo,
    walk_extension_headers,
)
from vipernet.wire.mld import MldQuery, MldV2Report, MulticastAddressRecord, build_mld, parse_mld
from vipernet.wire.ndp import (
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    build_ndp,
    parse_ndp,
)
from vipernet.wire.tcp import TcpFlags, TcpHeader, TcpOptions, build_tcp, parse_tcp
from vipernet.wire.udp import UdpHeader, build_udp, parse_udp

__all__ = [
    "BROADCAST_MAC",
    "ArpOp",
    "ArpPacket",
    "ChainVerdict",
    "EtherType",
    "EthernetHeader",
    "ExtensionChain",
    "FragmentInfo",
    "IPv4Header",
    "IPv6Header",
    "IcmpEcho",
    "IcmpError",
    "IcmpMessage",
    "IcmpOther",
    "IcmpType",
    "Icmpv6Echo",
    "Icmpv6Error",
    "Icmpv6Message",
    "Icmpv6Other",
    "Icmpv6ParamProblemCode",
    "Icmpv6TimeExceededCode",
    "Icmpv6Type",
    "Icmpv6UnreachableCode",
    "IpProto",
    "MldQuery",
    "MldV2Report",
    "MulticastAddressRecord",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "NextHeader",
    "Redirect",
    "RouterAdvertisement",
    "RouterSolicitation",
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
    "build_icmpv6",
    "build_icmpv6_error",
    "build_icmpv6_message",
    "build_ipv4",
    "build_ipv4_header",
    "build_ipv6",
    "build_ipv6_packet",
    "build_mld",
    "build_ndp",
    "build_tcp",
    "build_udp",
    "internet_checksum",
    "link_local_from_mac",
    "mac_from_str",
    "mac_to_str",
    "multicast_mac",
    "ones_complement_sum",
    "parse_arp",
    "parse_ethernet",
    "parse_icmp",
    "parse_icmpv6",
    "parse_ipv4",
    "parse_ipv6",
    "parse_mld",
    "parse_ndp",
    "parse_quoted_ipv4",
    "parse_quoted_ipv6",
    "parse_tcp",
    "parse_udp",
    "pseudo_header_sum",
    "pseudo_header_sum_v6",
    "solicited_node",
    "walk_extension_headers",
]
