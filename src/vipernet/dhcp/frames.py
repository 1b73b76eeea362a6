"""The DHCP client's own Ethernet frames: it talks before the stack has an address.

A DISCOVER leaves from 0.0.0.0:68 to 255.255.255.255:67 and the OFFER may come back to an
address nobody has yet, so the client cannot use a stack socket.  It builds whole frames
(Ethernet + IPv4 + UDP, :mod:`vipernet.wire`) and is handed every received frame that is
IPv4/UDP to port 68 (:func:`is_dhcp_reply_frame` is the cheap test the device wrapper runs
on every frame).  Frames from a kernel with checksum offload carry a partial UDP checksum
(``Offload.needs_csum``); those are trusted, as everywhere else in vipernet.

Before it uses a new address the client also probes it with ARP (RFC 5227 2.1.1: sender
IP 0.0.0.0, so no host learns a binding from the probe): :func:`build_arp_probe`, and
:func:`is_arp_frame` / :func:`parse_arp_frame` for what comes back.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from vipernet.dhcp.codec import DhcpFormatError, DhcpMessage, build_dhcp, parse_dhcp
from vipernet.link.frame import Frame
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.errors import WireError
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4, parse_ipv4
from vipernet.wire.udp import build_udp, parse_udp

CLIENT_PORT = 68
SERVER_PORT = 67
BROADCAST_IP = IPv4Address("255.255.255.255")
ZERO_IP = IPv4Address(0)

_UDP = int(IpProto.UDP)


def is_dhcp_reply_frame(data: bytes | bytearray | memoryview) -> bool:
    """IPv4, UDP, no IP options-aware parse needed: destination port 68 (cheap, no copy)."""
    if len(data) < 14 + 20 + 8 or data[12] != 0x08 or data[13] != 0x00:
        return False
    if data[14 + 9] != _UDP:
        return False
    ihl = (data[14] & 0x0F) * 4
    at = 14 + ihl + 2
    return len(data) >= at + 2 and data[at] == 0 and data[at + 1] == CLIENT_PORT


def build_frame(message: DhcpMessage, *, src_mac: bytes, dst_mac: bytes = BROADCAST_MAC,
                src_ip: IPv4Address = ZERO_IP, dst_ip: IPv4Address = BROADCAST_IP) -> bytes:
    """One Ethernet frame carrying ``message`` from port 68 to port 67 (TTL 64, DF off)."""
    payload = build_dhcp(message)
    udp = build_udp(CLIENT_PORT, SERVER_PORT, payload, src=src_ip, dst=dst_ip)
    ip = build_ipv4(IPv4Header(src=src_ip, dst=dst_ip, proto=IpProto.UDP, ttl=64), udp)
    return build_ethernet(EthernetHeader(dst=dst_mac, src=src_mac, ethertype=EtherType.IPV4),
                          ip)


def parse_frame(frame: Frame) -> tuple[bytes, IPv4Address, DhcpMessage]:
    """(source MAC, source IP, message) of a DHCP frame; WireError/DhcpFormatError if bad."""
    data = memoryview(frame.data)
    if len(data) < 14:
        raise WireError("ethernet", "length", len(data), "length >= 14")
    trusted = frame.offload is not None and (frame.offload.needs_csum
                                             or frame.offload.data_valid)
    header, payload = parse_ipv4(data[14:], verify_checksum=True)
    if header.is_fragment:
        raise WireError("ipv4", "fragment", header.fragment_offset, "DHCP replies not fragmented")
    if header.proto != IpProto.UDP:
        raise WireError("ipv4", "proto", header.proto, "proto == UDP")
    udp, body = parse_udp(payload, src=header.src, dst=header.dst, verify_checksum=not trusted)
    if udp.dst_port != CLIENT_PORT or udp.src_port != SERVER_PORT:
        raise DhcpFormatError("udp ports", f"{udp.src_port}->{udp.dst_port}", "67 -> 68")
    return bytes(data[6:12]), header.src, parse_dhcp(body)


def is_arp_frame(data: bytes | bytearray | memoryview) -> bool:
    return len(data) >= 14 and data[12] == 0x08 and data[13] == 0x06


def parse_arp_frame(frame: Frame) -> ArpPacket:
    """The ARP packet in a frame (WireError if it is not a well-formed one)."""
    data = memoryview(frame.data)
    if not is_arp_frame(data):
        raise WireError("ethernet", "ethertype", bytes(data[12:14]).hex(), "ethertype == ARP")
    return parse_arp(data[14:])


def build_arp_probe(*, mac: bytes, address: IPv4Address) -> bytes:
    """An ARP probe for ``address``: "who has it?", asked from 0.0.0.0, broadcast."""
    probe = ArpPacket(op=ArpOp.REQUEST, sender_mac=mac, sender_ip=ZERO_IP,
                      target_mac=bytes(6), target_ip=address)
    return build_ethernet(EthernetHeader(dst=BROADCAST_MAC, src=mac, ethertype=EtherType.ARP),
                          build_arp(probe))
