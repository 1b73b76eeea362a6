"""Shared fixtures for the stack tests: a manual clock, a back-to-back pair of stacks, and
frame builders (made with vipernet.wire) for a hand-driven peer."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from vipernet.link.frame import Frame
from vipernet.stack import Stack, StackConfig
from vipernet.wire import (
    ArpOp,
    ArpPacket,
    EthernetHeader,
    EtherType,
    IcmpEcho,
    IcmpType,
    IpProto,
    IPv4Header,
    build_arp,
    build_ethernet,
    build_icmp,
    build_ipv4,
    build_udp,
    parse_arp,
    parse_ethernet,
    parse_icmp,
    parse_ipv4,
    parse_udp,
)

MAC_A = bytes.fromhex("525400123456")
MAC_B = bytes.fromhex("02000000000b")
MAC_PEER = bytes.fromhex("0200000000ee")
IP_A = IPv4Address("10.0.2.15")
IP_B = IPv4Address("10.0.2.2")
IP_PEER = IPv4Address("10.0.2.2")


def make_stack(*, mac: bytes = MAC_A, ip: str = "10.0.2.15/24", gateway: str | None = "10.0.2.2",
               now: float = 0.0, seed: int = 1, **kw: object) -> Stack:
    config = StackConfig(mac=mac, ip=IPv4Interface(ip),
                         gateway=None if gateway is None else IPv4Address(gateway), **kw)  # type: ignore[arg-type]
    return Stack(config, now=now, rng=random.Random(seed))


@dataclass
class Pair:
    """Two stacks on one cable, stepped by hand with a virtual clock."""

    a: Stack
    b: Stack
    now: float = 0.0
    frames_a_to_b: list[bytes] = field(default_factory=list)

    def pump(self, rounds: int = 20) -> None:
        """Move frames both ways until the cable is quiet."""
        for _ in range(rounds):
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                for frame in src.transmit():
                    moved = True
                    if src is self.a:
                        self.frames_a_to_b.append(bytes(frame.data))
                    dst.receive(frame, self.now)
            if not moved:
                return

    def advance(self, seconds: float, step: float = 0.1) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.a.poll(self.now)
            self.b.poll(self.now)
            self.pump()


def make_pair(**kw: object) -> Pair:
    a = make_stack(mac=MAC_A, ip="10.0.2.15/24", seed=1, **kw)  # type: ignore[arg-type]
    b = make_stack(mac=MAC_B, ip="10.0.2.2/24", gateway=None, seed=2, **kw)  # type: ignore[arg-type]
    pair = Pair(a=a, b=b)
    pair.pump()
    return pair


# -- a hand-driven peer ---------------------------------------------------------------------

def eth(payload: bytes, *, dst: bytes = MAC_A, src: bytes = MAC_PEER,
        ethertype: int = EtherType.IPV4) -> Frame:
    return Frame(build_ethernet(EthernetHeader(dst=dst, src=src, ethertype=ethertype), payload))


def ip_packet(payload: bytes, *, proto: int = IpProto.UDP, src: IPv4Address = IP_PEER,
              dst: IPv4Address = IP_A, ident: int = 7, offset: int = 0, mf: bool = False,
              ttl: int = 64) -> bytes:
    return build_ipv4(IPv4Header(src=src, dst=dst, proto=proto, ttl=ttl, ident=ident,
                                 fragment_offset=offset, more_fragments=mf), payload)


def udp_frame(data: bytes, *, sport: int = 5000, dport: int = 53, src: IPv4Address = IP_PEER,
              dst: IPv4Address = IP_A) -> Frame:
    return eth(ip_packet(build_udp(sport, dport, data, src=src, dst=dst), src=src, dst=dst))


def echo_request_frame(ident: int = 1, seq: int = 1, payload: bytes = b"ping",
                       dst: IPv4Address = IP_A) -> Frame:
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=ident, seq=seq, payload=payload))
    return eth(ip_packet(icmp, proto=IpProto.ICMP, dst=dst))


def arp_frame(op: ArpOp, *, sender_mac: bytes = MAC_PEER, sender_ip: IPv4Address = IP_PEER,
              target_mac: bytes = bytes(6), target_ip: IPv4Address = IP_A,
              dst: bytes = b"\xff" * 6) -> Frame:
    body = build_arp(ArpPacket(op=op, sender_mac=sender_mac, sender_ip=sender_ip,
                               target_mac=target_mac, target_ip=target_ip))
    return eth(body, dst=dst, src=sender_mac, ethertype=EtherType.ARP)


def teach_peer(stack: Stack, now: float = 0.0) -> None:
    """Let the stack learn the peer's MAC (a request from the peer aimed at it)."""
    stack.receive(arp_frame(ArpOp.REQUEST), now)
    stack.transmit()


def split(frame: Frame) -> tuple[EthernetHeader, bytes]:
    header, payload = parse_ethernet(bytes(frame.data))
    return header, bytes(payload)


def arps(frames: list[Frame]) -> list[ArpPacket]:
    out = []
    for f in frames:
        header, payload = split(f)
        if header.ethertype == EtherType.ARP:
            out.append(parse_arp(payload))
    return out


def ipv4s(frames: list[Frame]) -> list[tuple[IPv4Header, bytes]]:
    out = []
    for f in frames:
        header, payload = split(f)
        if header.ethertype == EtherType.IPV4:
            ip, body = parse_ipv4(payload)
            out.append((ip, bytes(body)))
    return out


__all__ = [
    "IP_A", "IP_B", "IP_PEER", "MAC_A", "MAC_B", "MAC_PEER", "Pair", "arp_frame", "arps",
    "echo_request_frame", "eth", "ip_packet", "ipv4s", "make_pair", "make_stack",
    "parse_icmp", "parse_udp", "split", "teach_peer", "udp_frame",
]


A6 = "fd00::a"
B6 = "fd00::b"


def dual_stack(mac: bytes, ip: str, ip6: str, seed: int) -> Stack:
    """A stack with a static IPv4 and IPv6 address (no DAD wait), for two-stack tests."""
    config = StackConfig(mac=mac, ip=IPv4Interface(ip), gateway=None, ip6="static",
                         ip6_address=IPv6Interface(ip6), ip6_dad_transmits=0)
    return Stack(config, now=0.0, rng=random.Random(seed))


def dual_stack_pair() -> Pair:
    """A (10.0.2.15, fd00::a) and B (10.0.2.2, fd00::b) on one cable, a second in."""
    pair = Pair(a=dual_stack(MAC_A, "10.0.2.15/24", A6 + "/64", 1),
                b=dual_stack(MAC_B, "10.0.2.2/24", B6 + "/64", 2))
    pair.advance(1.0)
    return pair
