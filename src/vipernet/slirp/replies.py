"""Frames the gateway makes up itself: an RST for a refused connection, an ICMP port
unreachable for a refused datagram, an ARP reply for the DNS address, a DHCP reply
(broadcast: the guest has no address yet); for IPv6 the same RST and port unreachable,
the Neighbor Advertisements for the gateway's and DNS addresses and the Router
Advertisement.

The gateway stack is an IPv6 *host*: it cannot advertise a prefix, and its Neighbor
Advertisements would not carry the Router flag (a guest that sees R=0 for its router
must drop it from its default router list, RFC 4861 7.2.5), so those are made here."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from vipernet.dhcp.codec import DhcpMessage, build_dhcp
from vipernet.link.frame import Frame
from vipernet.slirp.nat import ETH, TCP, Packet
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp
from vipernet.wire.checksum import internet_checksum, pseudo_header_sum_v6
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet
from vipernet.wire.icmp import IcmpError, IcmpType, UnreachableCode, build_icmp
from vipernet.wire.icmpv6 import Icmpv6Type, Icmpv6UnreachableCode, build_icmpv6_error
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4
from vipernet.wire.ipv6 import ALL_NODES, IPv6Header, NextHeader, build_ipv6_packet, multicast_mac
from vipernet.wire.ndp import (
    NDP_HOP_LIMIT,
    RouterAdvertisement,
    build_neighbor_advertisement,
    build_router_advertisement,
)
from vipernet.wire.tcp import TcpFlags, TcpHeader, build_tcp
from vipernet.wire.udp import build_udp

_SYN, _ACK = int(TcpFlags.SYN), int(TcpFlags.ACK)
_BROADCAST_IP = IPv4Address("255.255.255.255")
_ANY4 = IPv4Address(0)
IPV6_HEADER = 40
_U16 = struct.Struct("!H")


def rst_for(frame: Frame, packet: Packet, gateway_mac: bytes) -> Frame:
    """The RST (RFC 793 "reset generation") that ``packet``'s destination would answer."""
    data = frame.data
    l4 = packet.l4
    seq = int.from_bytes(data[l4 + 4:l4 + 8], "big")
    ack = int.from_bytes(data[l4 + 8:l4 + 12], "big")
    if packet.ipv6:  # IPv6's payload length leaves its fixed header out
        ip_len = IPV6_HEADER + ((data[ETH + 4] << 8) | data[ETH + 5])
    else:
        ip_len = (data[ETH + 2] << 8) | data[ETH + 3]
    hlen = (data[l4 + 12] >> 4) * 4
    seg_len = max(0, ip_len - (l4 - ETH) - hlen)
    if packet.tcp_flags & _SYN:
        seg_len += 1
    if packet.tcp_flags & _ACK:
        header = TcpHeader(src_port=packet.dport, dst_port=packet.sport, seq=ack, ack=0,
                           flags=TcpFlags.RST, window=0)
    else:
        header = TcpHeader(src_port=packet.dport, dst_port=packet.sport, seq=0,
                           ack=(seq + seg_len) & 0xFFFFFFFF,
                           flags=TcpFlags.RST | TcpFlags.ACK, window=0)
    if packet.ipv6:
        return _rst6(header, packet, bytes(data[6:12]), gateway_mac)
    src, dst = IPv4Address(packet.dst), IPv4Address(packet.src)
    tcp = build_tcp(header, b"", src=src, dst=dst)
    ip = build_ipv4(IPv4Header(src=src, dst=dst, proto=IpProto.TCP), tcp)
    return Frame(build_ethernet(EthernetHeader(dst=bytes(data[6:12]), src=gateway_mac,
                                               ethertype=EtherType.IPV4), ip))


def arp_reply(request: ArpPacket, mac: bytes) -> Frame:
    """"``request.target_ip`` is at ``mac``", to the asker."""
    reply = ArpPacket(op=ArpOp.REPLY, sender_mac=mac, sender_ip=request.target_ip,
                      target_mac=request.sender_mac, target_ip=request.sender_ip)
    return Frame(build_ethernet(EthernetHeader(dst=request.sender_mac, src=mac,
                                               ethertype=EtherType.ARP), build_arp(reply)))


def dhcp_reply_frame(reply: DhcpMessage, server: IPv4Address, server_mac: bytes) -> Frame:
    """``reply`` from ``server``:67 to 255.255.255.255:68, Ethernet broadcast."""
    udp = build_udp(67, 68, build_dhcp(reply), src=server, dst=_BROADCAST_IP)
    ip = build_ipv4(IPv4Header(src=server, dst=_BROADCAST_IP, proto=IpProto.UDP), udp)
    return Frame(build_ethernet(EthernetHeader(dst=BROADCAST_MAC, src=server_mac,
                                               ethertype=EtherType.IPV4), ip))


def port_unreachable(quote: bytes, *, src: IPv4Address, dst_mac: bytes,
                     gateway_mac: bytes) -> Frame:
    """ICMP destination unreachable (port) from ``src``, quoting the guest's datagram
    (``quote``: its IP header and first 8 payload bytes, as the guest sent them)."""
    guest = IPv4Address(quote[12:16])
    icmp = build_icmp(IcmpError(type=IcmpType.DEST_UNREACHABLE, code=UnreachableCode.PORT,
                                quoted=quote))
    ip = build_ipv4(IPv4Header(src=src, dst=guest, proto=IpProto.ICMP), icmp)
    return Frame(build_ethernet(EthernetHeader(dst=dst_mac, src=gateway_mac,
                                               ethertype=EtherType.IPV4), ip))


# -- IPv6 ---------------------------------------------------------------------------------


def _ipv6_frame(src: IPv6Address, dst: IPv6Address, next_header: int, payload: bytes, *,
                dst_mac: bytes, src_mac: bytes, hop_limit: int = 64) -> Frame:
    ip = build_ipv6_packet(IPv6Header(src=src, dst=dst, next_header=next_header,
                                      hop_limit=hop_limit), payload)
    return Frame(build_ethernet(EthernetHeader(dst=dst_mac, src=src_mac,
                                               ethertype=EtherType.IPV6), ip))


def _rst6(header: TcpHeader, packet: Packet, guest_mac: bytes, gateway_mac: bytes) -> Frame:
    src, dst = IPv6Address(packet.dst), IPv6Address(packet.src)
    # build_tcp sums an IPv4 pseudo-header: build without addresses, then sum IPv6's.
    segment = bytearray(build_tcp(header, b"", src=_ANY4, dst=_ANY4))
    segment[16:18] = bytes(2)
    _U16.pack_into(segment, 16, internet_checksum(
        segment, pseudo_header_sum_v6(src, dst, TCP, len(segment))))
    return _ipv6_frame(src, dst, NextHeader.TCP, bytes(segment), dst_mac=guest_mac,
                       src_mac=gateway_mac)


def port_unreachable6(quote: bytes, *, src: IPv6Address, dst_mac: bytes,
                      gateway_mac: bytes) -> Frame:
    """ICMPv6 destination unreachable (port, RFC 4443 3.1) from ``src``, quoting the
    guest's datagram (its IPv6 header and the start of its payload)."""
    guest = IPv6Address(quote[8:24])
    icmp = build_icmpv6_error(Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT, quote,
                              src, guest)
    return _ipv6_frame(src, guest, NextHeader.ICMPV6, icmp, dst_mac=dst_mac,
                       src_mac=gateway_mac)


def neighbor_advertisement(target: IPv6Address, *, dst: IPv6Address, dst_mac: bytes,
                           gateway_mac: bytes, router: bool) -> Frame:
    """``target`` is at ``gateway_mac`` (RFC 4861 7.2.4): solicited to a unicast asker, or
    unsolicited to all-nodes when the asker had no address yet (DAD, src ::)."""
    solicited = not dst.is_multicast
    icmp = build_neighbor_advertisement(target, target, dst, gateway_mac, router=router,
                                        solicited=solicited, override=True)
    return _ipv6_frame(target, dst, NextHeader.ICMPV6, icmp, dst_mac=dst_mac,
                       src_mac=gateway_mac, hop_limit=NDP_HOP_LIMIT)


def router_advertisement(advertisement: RouterAdvertisement, *, src: IPv6Address,
                         gateway_mac: bytes) -> Frame:
    """``advertisement`` from the gateway's link-local ``src`` to all-nodes (RFC 4861 6.2.6:
    solicited ones too, so one frame serves every guest)."""
    icmp = build_router_advertisement(advertisement, src, ALL_NODES)
    return _ipv6_frame(src, ALL_NODES, NextHeader.ICMPV6, icmp,
                       dst_mac=multicast_mac(ALL_NODES), src_mac=gateway_mac,
                       hop_limit=NDP_HOP_LIMIT)
