"""ARP: announcing, answering, learning, resolving with a bounded queue, retrying, expiring."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Interface

import pytest

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    MAC_A,
    MAC_PEER,
    arp_frame,
    arps,
    ipv4s,
    make_stack,
    split,
    teach_peer,
)
from vipernet.wire import ArpOp


def test_stack_announces_itself_with_a_gratuitous_arp_at_start_up() -> None:
    stack = make_stack()
    [frame] = stack.transmit()
    header, _ = split(frame)
    [arp] = arps([frame])
    assert header.dst == b"\xff" * 6
    assert (arp.op, arp.sender_ip, arp.target_ip, arp.sender_mac) == (
        ArpOp.REQUEST, IP_A, IP_A, MAC_A)
    assert len(frame.data) >= 60  # padded to the Ethernet minimum


def test_stack_answers_a_request_for_its_address_and_learns_the_asker() -> None:
    stack = make_stack()
    stack.transmit()
    stack.receive(arp_frame(ArpOp.REQUEST), 0.0)
    [reply] = arps(stack.transmit())
    assert (reply.op, reply.sender_mac, reply.sender_ip) == (ArpOp.REPLY, MAC_A, IP_A)
    assert (reply.target_mac, reply.target_ip) == (MAC_PEER, IP_PEER)
    assert stack.arp_entries(0.0) == {IP_PEER: MAC_PEER}


def test_stack_ignores_a_request_for_another_address_and_learns_nothing() -> None:
    stack = make_stack()
    stack.transmit()
    stack.receive(arp_frame(ArpOp.REQUEST, target_ip=IPv4Address("10.0.2.99")), 0.0)
    assert stack.transmit() == []
    assert stack.arp_entries(0.0) == {}


def test_send_to_an_unknown_neighbour_queues_behind_one_request_and_flushes_on_reply() -> None:
    stack = make_stack()
    stack.transmit()
    sock = stack.udp_socket()
    for i in range(3):
        sock.sendto(b"%d" % i, ("10.0.2.2", 9), 0.0)
    [request] = arps(stack.transmit())
    assert (request.op, request.target_ip) == (ArpOp.REQUEST, IP_PEER)
    stack.receive(arp_frame(ArpOp.REPLY, target_mac=MAC_A, dst=MAC_A), 0.1)
    frames = stack.transmit()
    assert [body[8:] for _ip, body in ipv4s(frames)] == [b"0", b"1", b"2"]
    assert all(split(f)[0].dst == MAC_PEER for f in frames)
    assert stack.counters["arp.resolve.ok"] == 1


def test_arp_queue_overflow_drops_the_oldest_packet_and_counts_it() -> None:
    stack = make_stack(arp_queue_limit=4)
    stack.transmit()
    sock = stack.udp_socket()
    for i in range(6):
        sock.sendto(b"%d" % i, ("10.0.2.2", 9), 0.0)
    stack.receive(arp_frame(ArpOp.REPLY, target_mac=MAC_A, dst=MAC_A), 0.1)
    frames = [f for f in stack.transmit() if split(f)[0].ethertype == 0x0800]
    assert [body[8:] for _ip, body in ipv4s(frames)] == [b"2", b"3", b"4", b"5"]
    assert stack.counters["arp.queue.overflow"] == 2


def test_unanswered_arp_is_retried_then_the_connected_socket_gets_ehostunreach() -> None:
    stack = make_stack()
    stack.transmit()
    sock = stack.udp_socket()
    sock.connect(("10.0.2.77", 9), 0.0)
    sock.send(b"x", 0.0)
    requests = len(arps(stack.transmit()))
    now = 0.0
    while now < 5.0:
        deadline = stack.next_deadline()
        if deadline is None:
            break
        now = deadline
        stack.poll(now)
        requests += len(arps(stack.transmit()))
    assert requests == 3
    assert stack.counters["arp.resolve.failed"] == 1
    assert 2.9 < now < 3.1  # three requests a second apart, then the wait for the last
    assert sock.readable
    with pytest.raises(OSError) as info:
        sock.recv(10)
    assert info.value.errno == errno.EHOSTUNREACH
    assert stack.next_deadline() is None


def test_arp_entry_expires_after_its_lifetime_and_is_asked_for_again() -> None:
    stack = make_stack()
    teach_peer(stack, 0.0)
    sock = stack.udp_socket()
    sock.sendto(b"early", ("10.0.2.2", 9), 1.0)
    assert arps(stack.transmit()) == []
    sock.sendto(b"late", ("10.0.2.2", 9), 61.0)
    [request] = arps(stack.transmit())
    assert request.target_ip == IP_PEER
    assert stack.counters["arp.cache.expired"] == 1


def test_arp_entry_in_use_near_expiry_is_refreshed_once_without_queueing() -> None:
    stack = make_stack()
    teach_peer(stack, 0.0)
    sock = stack.udp_socket()
    sent = []
    for t in (56.0, 57.0):
        sock.sendto(b"x", ("10.0.2.2", 9), t)
        sent.append(stack.transmit())
    assert [len(arps(f)) for f in sent] == [1, 0]  # one refresh request, not two
    assert all(len(ipv4s(f)) == 1 for f in sent)  # data still flowed


def test_arp_claiming_our_address_from_another_mac_is_a_counted_conflict() -> None:
    stack = make_stack()
    stack.transmit()
    stack.receive(arp_frame(ArpOp.REPLY, sender_ip=IP_A, target_ip=IP_A), 0.0)
    assert stack.counters["arp.rx.address_conflict"] == 1
    assert stack.arp_entries(0.0) == {}


def test_set_address_announces_the_new_address() -> None:
    stack = make_stack()
    stack.transmit()
    stack.set_address(IPv4Interface("10.0.2.16/24"), 1.0, gateway=IPv4Address("10.0.2.2"))
    [arp] = arps(stack.transmit())
    assert arp.sender_ip == arp.target_ip == IPv4Address("10.0.2.16")


def test_off_link_destination_is_sent_to_the_gateways_mac() -> None:
    stack = make_stack()
    teach_peer(stack)  # the peer is the gateway 10.0.2.2
    stack.udp_socket().sendto(b"far", ("192.0.2.1", 9), 0.0)
    [frame] = stack.transmit()
    assert split(frame)[0].dst == MAC_PEER
    [(ip, _body)] = ipv4s([frame])
    assert ip.dst == IPv4Address("192.0.2.1") and ip.ttl == 64


def test_off_link_destination_without_a_gateway_is_enetunreach() -> None:
    stack = make_stack(gateway=None)
    with pytest.raises(OSError) as info:
        stack.udp_socket().sendto(b"far", ("192.0.2.1", 9), 0.0)
    assert info.value.errno == errno.ENETUNREACH


def test_set_address_keeps_an_on_link_gateway_and_drops_an_off_link_one() -> None:
    stack = make_stack()
    stack.set_address(IPv4Interface("10.0.2.20/24"), 1.0)
    assert stack.config.gateway == IPv4Address("10.0.2.2")
    stack.set_address(IPv4Interface("192.168.7.5/24"), 2.0)
    assert stack.config.gateway is None
    stack.set_address(IPv4Interface("192.168.7.5/24"), 3.0, gateway=IPv4Address("192.168.7.1"))
    assert stack.config.gateway == IPv4Address("192.168.7.1")
    sock = stack.udp_socket()
    sock.sendto(b"x", ("8.8.8.8", 53), 4.0)
    [request] = [a for a in arps(stack.transmit()) if a.target_ip != a.sender_ip]
    assert request.target_ip == IPv4Address("192.168.7.1")
    assert request.sender_ip == IPv4Address("192.168.7.5")
