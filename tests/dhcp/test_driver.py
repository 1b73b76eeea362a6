"""DhcpDevice and acquire(): the client under a stack, over an in-memory wire."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

import pytest

from tests.dhcp.server import CLIENT_MAC, ScriptedServerDevice, parse_frame_as_server, reply
from vipernet.dhcp.client import DhcpClient, DhcpConfig, LeaseObtained, LeaseRenewed, State
from vipernet.dhcp.codec import MessageType
from vipernet.dhcp.driver import DhcpDevice, DhcpTimeout, acquire
from vipernet.link.frame import Frame
from vipernet.link.memory import MemoryLink
from vipernet.stack import Stack, StackConfig


def test_acquire_returns_the_first_lease() -> None:
    device = ScriptedServerDevice()
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(1))
    lease = acquire(device, client, timeout=5.0)
    assert lease.address == IPv4Interface("10.0.2.15/24")
    assert device.seen == [MessageType.DISCOVER, MessageType.REQUEST]
    assert client.state is State.BOUND


def test_acquire_times_out_with_a_typed_error_when_nobody_answers() -> None:
    device = ScriptedServerDevice(answer=False)
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(1),
                        config=DhcpConfig(first_retransmit=0.05, jitter=0.01))
    with pytest.raises(DhcpTimeout, match="no DHCP lease"):
        acquire(device, client, timeout=0.3)
    assert device.seen.count(MessageType.DISCOVER) >= 2  # it retried meanwhile


def test_the_device_keeps_dhcp_frames_from_the_stack_and_renews_at_t1() -> None:
    server = ScriptedServerDevice(lease=120)
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(2))
    lease = acquire(server, client, timeout=5.0)
    device = DhcpDevice(server, client)
    stack = Stack(StackConfig(mac=CLIENT_MAC, ip=lease.address, gateway=lease.router),
                  now=0.0, rng=random.Random(3))
    device.attach(stack)
    assert device.next_deadline() == pytest.approx(lease.renew_at)
    before = len(server.seen)
    assert device.receive(lease.renew_at) == []  # T1: the renewal goes out, the ACK comes in
    assert server.seen[before:] == [MessageType.REQUEST]
    assert device.receive(lease.renew_at + 0.01) == []  # the ACK went to the client only
    assert isinstance(list(device.events)[-1], LeaseRenewed)
    assert client.state is State.BOUND
    assert stack.counters.snapshot().get("udp.rx.no_socket", 0) == 0


def test_a_changed_address_on_renewal_moves_the_stack() -> None:
    server = ScriptedServerDevice()
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(2))
    lease = acquire(server, client, timeout=5.0)
    stack = Stack(StackConfig(mac=CLIENT_MAC, ip=lease.address, gateway=lease.router),
                  now=0.0, rng=random.Random(3))
    device = DhcpDevice(server, client)
    device.attach(stack)
    server.yiaddr = IPv4Address("10.0.2.16")
    device.receive(lease.renew_at)
    device.receive(lease.renew_at + 0.01)
    assert stack.config.ip == IPv4Interface("10.0.2.16/24")


def test_other_frames_pass_through_to_the_stack_unchanged() -> None:
    a, b = MemoryLink.pair()
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(1))
    device = DhcpDevice(a, client)
    arp = Frame(b"\xff" * 6 + bytes(6) + b"\x08\x06" + bytes(28))
    b.send(arp, 0.0)
    assert [f.data for f in device.receive(0.0)] == [arp.data]
    device.send(Frame(b"\x01" * 60), 0.0)
    assert [f.data for f in b.receive(0.0)] == [b"\x01" * 60]


def test_a_started_client_puts_its_discover_on_the_wire_through_the_device() -> None:
    a, b = MemoryLink.pair()
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(1))
    device = DhcpDevice(a, client)
    client.start(0.0)
    events: list[object] = []
    device.on_event = lambda event, now: events.append(event)
    device.receive(0.0)
    [frame] = b.receive(0.0)
    _, _, message = parse_frame_as_server(frame)
    assert message.message_type == MessageType.DISCOVER
    b.send(reply(message, MessageType.OFFER), 0.1)
    device.receive(0.1)
    [frame] = b.receive(0.1)
    _, _, request = parse_frame_as_server(frame)
    b.send(reply(request, MessageType.ACK), 0.2)
    device.receive(0.2)
    assert isinstance(events[-1], LeaseObtained)
    device.release(0.3)
    assert parse_frame_as_server(b.receive(0.3)[0])[2].message_type == MessageType.RELEASE
