"""VirtualHosts, sans-IO: frame dispatch, ARP and ping per host, TCP from many hosts,
create/destroy at run time, and the deadline heap (only due hosts are polled)."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Interface

import pytest

from tests.vhosts.helpers import BROADCAST, PEER_IP, PEER_MAC, make_wire
from vipernet.link.frame import Frame
from vipernet.vhosts import HostExists, mac_for
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet, parse_ethernet

FIRST = IPv4Address("10.0.3.1")


def arp_request(target: IPv4Address) -> Frame:
    packet = ArpPacket(op=ArpOp.REQUEST, sender_mac=PEER_MAC, sender_ip=PEER_IP.ip,
                       target_mac=bytes(6), target_ip=target)
    return Frame(build_ethernet(EthernetHeader(dst=BROADCAST, src=PEER_MAC,
                                               ethertype=EtherType.ARP), build_arp(packet)))


def test_an_arp_request_is_answered_by_the_one_host_it_asks_about() -> None:
    wire = make_wire(200)
    for offset in (0, 57, 199):
        target = FIRST + offset
        assert wire.hosts.receive(arp_request(target), wire.now)
        frames = wire.hosts.transmit()
        assert len(frames) == 1  # one host answered, nobody else said anything
        header, payload = parse_ethernet(frames[0].data)
        reply = parse_arp(payload)
        assert (header.dst, header.src) == (PEER_MAC, mac_for(target))
        assert (reply.op, reply.sender_ip, reply.sender_mac) == (ArpOp.REPLY, target,
                                                                 mac_for(target))
    # An address no host has is not taken (netd's own stack would get it).
    before = wire.hosts.counters["rx.not_ours"]
    assert not wire.hosts.receive(arp_request(FIRST + 200), wire.now)
    assert wire.hosts.transmit() == []
    assert wire.hosts.counters["rx.not_ours"] == before + 1


def test_frames_go_by_destination_mac_and_a_foreign_one_is_left_alone() -> None:
    wire = make_wire(3)
    foreign = Frame(build_ethernet(EthernetHeader(dst=bytes.fromhex("020000000099"),
                                                  src=PEER_MAC, ethertype=EtherType.IPV4),
                                   b"\x45" + bytes(19)))
    assert not wire.hosts.receive(foreign, wire.now)
    assert not wire.hosts.receive(Frame(b"\x00" * 5), wire.now)  # runt: not ours, no crash
    unicast = Frame(build_ethernet(EthernetHeader(dst=mac_for(FIRST + 1), src=PEER_MAC,
                                                  ethertype=EtherType.IPV4), bytes(20)))
    assert wire.hosts.receive(unicast, wire.now)  # taken; the host counts it as malformed
    host = wire.hosts.get(FIRST + 1)
    assert host is not None and host.counters["stack.rx.internal_error"] == 0


def test_every_host_answers_ping_from_its_own_address() -> None:
    wire = make_wire(50)
    ping = wire.peer.ping_socket()
    for offset in range(50):
        ping.send_echo(str(FIRST + offset), offset, b"hello", wire.now)
        wire.pump()
        reply = ping.recv_reply()
        assert (reply.src, reply.seq, reply.payload) == (FIRST + offset, offset, b"hello")


def test_many_hosts_connect_over_tcp_and_the_peer_sees_each_address() -> None:
    wire = make_wire(100)
    listener = wire.peer.tcp_socket()
    listener.bind(("0.0.0.0", 8080))
    listener.listen(200)
    clients = []
    for host in wire.hosts:
        sock = host.tcp_socket()
        with pytest.raises(BlockingIOError):
            sock.connect(("10.0.2.2", 8080), wire.now)
        wire.hosts.touch(host)
        clients.append(sock)
    wire.pump(50)
    assert all(sock.writable and not sock.take_error() for sock in clients)
    peers = set()
    while listener.readable:
        child = listener.accept()
        peers.add(child.getpeername()[0])
    assert peers == {str(FIRST + i) for i in range(100)}
    # The readiness changes reached the switch's set, one per client at least.
    assert set(clients) <= wire.hosts.take_changed()


def test_hosts_come_and_go_at_run_time() -> None:
    wire = make_wire(1000)
    assert len(wire.hosts) == 1000
    for offset in range(0, 1000, 2):
        assert wire.hosts.remove(FIRST + offset)
    assert not wire.hosts.remove(FIRST)  # already gone
    assert len(wire.hosts) == 500
    assert FIRST not in wire.hosts and FIRST + 1 in wire.hosts
    assert not wire.hosts.receive(arp_request(FIRST), wire.now)
    assert wire.hosts.receive(arp_request(FIRST + 1), wire.now)
    with pytest.raises(HostExists):
        wire.hosts.add(IPv4Interface(f"{FIRST + 1}/16"), wire.now)
    again = wire.hosts.add(IPv4Interface(f"{FIRST}/16"), wire.now)
    frames = wire.hosts.transmit()
    assert len(frames) == 2  # the ARP reply of .2, and the newcomer's gratuitous ARP
    assert again.config.mac == mac_for(FIRST)
    assert wire.hosts.counters["hosts.removed"] == 500


def test_only_hosts_with_a_due_deadline_are_polled() -> None:
    wire = make_wire(1000)
    assert wire.hosts.next_deadline() is None  # 1,000 idle hosts: nothing to do, ever
    lonely = wire.hosts.get(FIRST + 500)
    assert lonely is not None
    sock = lonely.tcp_socket()
    with pytest.raises(BlockingIOError):
        sock.connect(("10.0.9.9", 80), wire.now)  # nobody answers ARP for this one
    wire.hosts.touch(lonely)
    requests = [f for f in wire.hosts.transmit() if bytes(f.data[0:6]) == BROADCAST]
    assert len(requests) == 1
    due = wire.hosts.next_deadline()
    assert due is not None and wire.now < due <= wire.now + 1.0
    wire.hosts.poll(due - 0.001)
    assert wire.hosts.counters.get("polls", 0) == 0
    for _ in range(3):  # ARP retries at 1 and 2 s, then the host gives up at 3 s
        due = wire.hosts.next_deadline()
        assert due is not None
        wire.hosts.poll(due)
        wire.hosts.transmit()
    assert wire.hosts.counters["polls"] == 3  # the one host, three times; no other
    assert lonely.counters["arp.tx.request"] == 3
    wire.hosts.poll(wire.now + 30)
    wire.hosts.transmit()
    assert sock.take_error() == errno.EHOSTUNREACH or not sock.writable


def test_a_removed_host_is_never_polled_again() -> None:
    wire = make_wire(10)
    host = wire.hosts.get(FIRST + 3)
    assert host is not None
    sock = host.tcp_socket()
    with pytest.raises(BlockingIOError):
        sock.connect(("10.0.9.9", 80), wire.now)
    wire.hosts.touch(host)
    wire.hosts.transmit()
    assert wire.hosts.next_deadline() is not None
    wire.hosts.remove(FIRST + 3)
    assert wire.hosts.next_deadline() is None
    wire.hosts.poll(wire.now + 60)
    assert wire.hosts.transmit() == []
    assert wire.hosts.counters.get("polls", 0) == 0
