"""Frames for the link tests, built with vipernet.wire."""

from __future__ import annotations

from ipaddress import IPv4Address

from vipernet.link.frame import Frame, GsoType, Offload
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet
from vipernet.wire.icmp import IcmpEcho, IcmpType, build_icmp
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4, build_ipv4_header
from vipernet.wire.tcp import NO_OPTIONS, TcpFlags, TcpHeader, TcpOptions, build_tcp
from vipernet.wire.udp import build_udp

STACK_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("525400abcdef")
STACK_IP = IPv4Address("10.0.2.15")
GATEWAY_IP = IPv4Address("10.0.2.2")
ETH_LEN = 14
IP_LEN = 20
TCP_LEN = 20


def ether(payload: bytes, ethertype: EtherType = EtherType.IPV4, *,
          dst: bytes = PEER_MAC, src: bytes = STACK_MAC) -> bytes:
    return build_ethernet(EthernetHeader(dst=dst, src=src, ethertype=ethertype), payload)


def arp_request(target: IPv4Address = GATEWAY_IP, *, mac: bytes = STACK_MAC,
                ip: IPv4Address = STACK_IP) -> bytes:
    packet = ArpPacket(op=ArpOp.REQUEST, sender_mac=mac, sender_ip=ip,
                       target_mac=bytes(6), target_ip=target)
    return ether(build_arp(packet), EtherType.ARP, dst=BROADCAST_MAC, src=mac)


def icmp_echo(seq: int, payload: bytes, *, dst_mac: bytes = PEER_MAC,
              dst: IPv4Address = GATEWAY_IP, ident: int = 0x4242) -> bytes:
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=ident, seq=seq,
                               payload=payload))
    ip = build_ipv4(IPv4Header(src=STACK_IP, dst=dst, proto=IpProto.ICMP, ident=seq), icmp)
    return ether(ip, dst=dst_mac)


def udp_frame(payload: bytes, *, sport: int = 40000, dport: int = 7,
              ident: int = 1) -> bytes:
    udp = build_udp(sport, dport, payload, src=STACK_IP, dst=GATEWAY_IP)
    return ether(build_ipv4(IPv4Header(src=STACK_IP, dst=GATEWAY_IP, proto=IpProto.UDP,
                                       ident=ident), udp))


def tcp_frame(payload: bytes, *, seq: int = 1000, flags: TcpFlags = TcpFlags.ACK | TcpFlags.PSH,
              ident: int = 7, partial: bool = False, dst_mac: bytes = PEER_MAC,
              src: IPv4Address = STACK_IP, dst: IPv4Address = GATEWAY_IP,
              sport: int = 40000, dport: int = 5001, ack: int = 1,
              options: TcpOptions = NO_OPTIONS) -> bytes:
    header = TcpHeader(src_port=sport, dst_port=dport, seq=seq, ack=ack, flags=flags,
                       window=65535, options=options)
    segment = build_tcp(header, payload, src=src, dst=dst, partial_checksum=partial)
    ip = build_ipv4_header(IPv4Header(src=src, dst=dst, proto=IpProto.TCP, ident=ident,
                                      dont_fragment=True), len(segment))
    return ether(ip + segment, dst=dst_mac)


def partial_tcp(payload: bytes, **kwargs: object) -> Frame:
    """A TCP frame with a partial checksum, as a stack using tx checksum offload sends it."""
    data = tcp_frame(payload, partial=True, **kwargs)  # type: ignore[arg-type]
    return Frame(data, Offload(needs_csum=True, csum_start=ETH_LEN + IP_LEN, csum_offset=16))


def gso_tcp(payload: bytes, mss: int, **kwargs: object) -> Frame:
    """A TCPV4 GSO frame with a partial checksum, as a stack using TSO sends it."""
    data = tcp_frame(payload, partial=True, **kwargs)  # type: ignore[arg-type]
    return Frame(data, Offload(needs_csum=True, csum_start=ETH_LEN + IP_LEN, csum_offset=16,
                               gso_type=GsoType.TCPV4, gso_size=mss,
                               hdr_len=ETH_LEN + IP_LEN + TCP_LEN))
