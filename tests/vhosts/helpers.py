"""A sans-IO wire for virtual-host tests: one ordinary Stack (the "kernel") facing a
VirtualHosts switch, frames carried by hand under a manual clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from vipernet.link.frame import Frame
from vipernet.stack import Stack, StackConfig
from vipernet.vhosts import VirtualHosts, parse_host_range

PEER_MAC = bytes.fromhex("0a0000000002")
PEER_IP = IPv4Interface("10.0.2.2/16")
BROADCAST = b"\xff" * 6


@dataclass
class Wire:
    peer: Stack
    hosts: VirtualHosts
    now: float = 100.0
    to_peer: list[Frame] = field(default_factory=list)  # every frame the hosts sent
    not_taken: list[Frame] = field(default_factory=list)  # peer frames no host took

    def pump(self, rounds: int = 20) -> None:
        """Carry frames both ways until the wire is quiet (timers are not fired)."""
        for _ in range(rounds):
            moved = False
            for frame in self.hosts.transmit():
                moved = True
                self.to_peer.append(frame)
                if bytes(frame.data[0:6]) in (PEER_MAC, BROADCAST):
                    self.peer.receive(frame, self.now)
            for frame in self.peer.transmit():
                moved = True
                if not self.hosts.receive(frame, self.now):
                    self.not_taken.append(frame)
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        """Move the clock and fire what is due on both sides."""
        self.now += seconds
        self.hosts.poll(self.now)
        due = self.peer.next_deadline()
        if due is not None and due <= self.now:
            self.peer.poll(self.now)
        self.pump()


def make_wire(count: int, first: str = "10.0.3.1") -> Wire:
    now = 100.0
    peer = Stack(StackConfig(mac=PEER_MAC, ip=PEER_IP, gateway=None, dns=(), ip6="off"),
                 now=now, rng=random.Random(1))
    hosts = VirtualHosts(now=now, rng=random.Random(2))
    if count:
        hosts.add_range(parse_host_range(f"{count}@{first}/16"), now)
    wire = Wire(peer, hosts, now)
    wire.pump()
    wire.to_peer.clear()
    return wire


def host_ip(first: str, offset: int) -> IPv4Address:
    return IPv4Address(first) + offset
