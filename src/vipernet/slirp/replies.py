"""Frames the gateway makes up itself: an RST for a refused connection, an ICMP port
unreachable for a refused datagram, an ARP reply for the DNS address, a DHCP reply
(broadcast: the guest has no address yet)."""

from __future__ import annotations

from ipaddress import IPv4Address

from vipernet.dhcp.codec import DhcpMessage, build_dhcp
from vipernet.link.frame import Frame
from vipernet.slirp.nat import ETH, Packet
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet
from vipernet.wire.icmp import IcmpError, IcmpType, UnreachableCode, build_icmp
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4
from vipernet.wire.tcp import TcpFlags, TcpHeader, build_tcp
from vipernet.wire.udp import build_udp

_SYN, _ACK = int(TcpFlags.SYN), int(TcpFlags.ACK)
_BROADCAST_IP = IPv4Address("255.255.255.255")


def rst_for(frame: Frame, packet: Packet, gateway_mac: bytes) -> Frame:
    """The RST (RFC 793 "reset generation") that ``packet``'s destination would answer."""
    data = frame.data
    l4 = packet.l4
    seq = int.from_bytes(data[l4 + 4:l4 + 8], "big")
    ack = int.from_bytes(data[l4 + 8:l4 + 12], "big")
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
