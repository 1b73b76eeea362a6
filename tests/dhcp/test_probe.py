"""Address conflict detection: ARP probes before a new address is used, DHCPDECLINE on a
conflict (RFC 2131 3.1.5, RFC 5227 2.1.1), and DNS servers that change at renewal."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dhcp.server import (
    CLIENT_MAC,
    OFFERED,
    SERVER_IP,
    ScriptedServerDevice,
    reply,
    request_of,
)
from vipernet.dhcp.client import DhcpClient, DhcpConfig, LeaseLost, LeaseObtained, State
from vipernet.dhcp.codec import MessageType, OptionCode
from vipernet.dhcp.driver import DhcpDevice
from vipernet.dhcp.frames import is_arp_frame, parse_arp_frame
from vipernet.link.frame import Frame
from vipernet.netd.dhcp_lease import NETD_DHCP, follow_lease
from vipernet.netd.protocol import Code
from vipernet.stack import Stack, StackConfig
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp
from vipernet.wire.ethernet import BROADCAST_MAC, EthernetHeader, EtherType, build_ethernet

PROBING = DhcpConfig(arp_probes=2, probe_interval=0.5, probe_wait=1.0, decline_backoff=10.0)
OTHER_MAC = bytes.fromhex("02000000beef")


def acked(config: DhcpConfig = PROBING, now: float = 0.0) -> DhcpClient:
    """A client whose REQUEST was just ACKed (its first probe is in the transmit queue)."""
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(3), config=config)
    client.start(now)
    [discover] = client.transmit()
    client.receive(reply(request_of(discover), MessageType.OFFER), now)
    [request] = client.transmit()
    client.receive(reply(request_of(request), MessageType.ACK), now)
    return client


def arp_frame(op: ArpOp, sender_mac: bytes, sender_ip: str, target_ip: str) -> Frame:
    packet = ArpPacket(op=op, sender_mac=sender_mac, sender_ip=IPv4Address(sender_ip),
                       target_mac=bytes(6), target_ip=IPv4Address(target_ip))
    return Frame(build_ethernet(EthernetHeader(dst=BROADCAST_MAC, src=sender_mac,
                                               ethertype=EtherType.ARP), build_arp(packet)))


def test_an_ack_is_probed_with_arp_from_zero_before_the_lease_is_used() -> None:
    client = acked()
    assert client.state is State.CHECKING and client.probing
    assert client.take_events() == []  # not usable yet
    [frame] = client.transmit()
    assert is_arp_frame(frame.data) and frame.data[0:6] == BROADCAST_MAC
    probe = parse_arp_frame(frame)
    assert (probe.op, probe.sender_mac, probe.sender_ip, probe.target_ip) == (
        ArpOp.REQUEST, CLIENT_MAC, IPv4Address(0), OFFERED)
    assert client.next_deadline() == 0.5
    client.poll(0.5)
    assert len(client.transmit()) == 1  # the second probe
    assert client.next_deadline() == 1.5  # then probe_wait
    client.poll(1.0)
    assert client.state is State.CHECKING
    client.poll(1.5)
    [event] = client.take_events()
    assert isinstance(event, LeaseObtained) and event.lease.address.ip == OFFERED
    assert client.state is State.BOUND and not client.probing
    assert client.counters["tx.arp_probe"] == 2


def test_an_arp_reply_from_the_address_declines_it_and_starts_over_after_the_backoff() -> None:
    client = acked()
    client.transmit()
    client.receive_arp(arp_frame(ArpOp.REPLY, OTHER_MAC, str(OFFERED), "0.0.0.0"), 0.2)
    [frame] = client.transmit()
    decline = request_of(frame)
    assert frame.data[0:6] == BROADCAST_MAC
    assert decline.message_type == MessageType.DECLINE
    assert decline.option(OptionCode.REQUESTED_IP) == OFFERED.packed
    assert decline.option(OptionCode.SERVER_ID) == SERVER_IP.packed
    assert decline.ciaddr == IPv4Address(0)
    [event] = client.take_events()
    assert isinstance(event, LeaseLost) and event.reason == "declined"
    assert client.state is State.INIT and client.lease is None
    assert client.next_deadline() == 10.2
    client.poll(10.1)
    assert client.transmit() == []
    client.poll(10.2)
    [again] = client.transmit()
    assert request_of(again).message_type == MessageType.DISCOVER
    assert client.state is State.SELECTING


def test_another_host_probing_for_the_same_address_is_a_conflict() -> None:
    client = acked()
    client.receive_arp(arp_frame(ArpOp.REQUEST, OTHER_MAC, "0.0.0.0", str(OFFERED)), 0.1)
    assert client.counters["arp.conflict"] == 1 and client.state is State.INIT


def test_our_own_probe_and_unrelated_arp_are_not_conflicts() -> None:
    client = acked()
    [own] = client.transmit()
    client.receive_arp(own, 0.1)  # looped back
    client.receive_arp(arp_frame(ArpOp.REQUEST, OTHER_MAC, "10.0.2.2", "10.0.2.99"), 0.1)
    client.receive_arp(arp_frame(ArpOp.REQUEST, OTHER_MAC, "10.0.2.2", str(OFFERED)), 0.1)
    client.receive_arp(Frame(b"\xff" * 12 + b"\x08\x06" + b"\x00" * 5), 0.1)  # truncated
    assert client.state is State.CHECKING
    assert client.counters["arp.conflict"] == 0 and client.counters["rx.arp.malformed"] == 1


def test_without_probes_an_ack_binds_at_once_and_arp_is_ignored() -> None:
    client = acked(DhcpConfig())
    assert client.state is State.BOUND and not client.probing
    client.receive_arp(arp_frame(ArpOp.REPLY, OTHER_MAC, str(OFFERED), "0.0.0.0"), 0.1)
    assert client.state is State.BOUND


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_handed_in_as_arp_never_raise(junk: bytes) -> None:
    client = acked()
    client.receive_arp(Frame(b"\xff" * 12 + b"\x08\x06" + junk), 0.1)
    assert client.state in (State.CHECKING, State.INIT)


def test_dns_servers_changed_at_renewal_reach_the_stack_and_netd_s_resolver() -> None:
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(3))
    client.start(0.0)
    [discover] = client.transmit()
    client.receive(reply(request_of(discover), MessageType.OFFER), 0.0)
    [request] = client.transmit()
    client.receive(reply(request_of(request), MessageType.ACK), 0.0)
    [event] = client.take_events()
    lease = event.lease
    stack = Stack(StackConfig(mac=CLIENT_MAC, ip=lease.address, gateway=lease.router,
                              dns=lease.dns), now=0.0, rng=random.Random(1))
    resolver = SimpleNamespace(servers=["10.0.2.3"])
    netd = SimpleNamespace(stack=stack,
                           service=SimpleNamespace(extensions={Code.DNS_RESOLVE: resolver}))
    wire = ScriptedServerDevice()
    device = DhcpDevice(wire, client)
    follow_lease(device, netd)
    wire.dns = bytes((192, 0, 2, 53, 192, 0, 2, 54))  # the server's DNS list changed
    device.receive(lease.renew_at)  # T1: REQUEST out, ACK queued
    device.receive(lease.renew_at + 0.01)
    assert client.counters["tx.renew"] == 1 and client.state is State.BOUND
    new = (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))
    assert stack.config.dns == new
    assert resolver.servers == ["192.0.2.53", "192.0.2.54"]
    assert stack.config.ip == lease.address  # nothing else moved


def test_netd_probes_new_addresses() -> None:
    assert NETD_DHCP.arp_probes >= 1
