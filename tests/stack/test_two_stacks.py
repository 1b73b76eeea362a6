"""Two stacks back to back over an in-memory cable, driven by a virtual clock."""

from __future__ import annotations

import hashlib

from tests.stack.helpers import make_pair


def test_two_stacks_resolve_each_other_and_exchange_a_udp_datagram() -> None:
    pair = make_pair()
    server = pair.b.udp_socket()
    server.bind(("", 7))
    client = pair.a.udp_socket()
    client.connect(("10.0.2.2", 7), pair.now)
    client.send(b"hello", pair.now)
    pair.pump()
    data, (host, port) = server.recvfrom(2048)
    assert data == b"hello"
    assert host == "10.0.2.15"
    server.sendto(data.upper(), (host, port), pair.now)
    pair.pump()
    assert client.recv(2048) == b"HELLO"
    assert pair.a.counters["arp.resolve.ok"] == 1


def test_two_stacks_exchange_8k_datagrams_both_ways_through_fragmentation() -> None:
    pair = make_pair()
    server = pair.b.udp_socket()
    server.bind(("", 9))
    client = pair.a.udp_socket()
    client.connect(("10.0.2.2", 9), pair.now)
    payload = bytes(range(256)) * 32  # 8 KiB
    client.send(payload, pair.now)
    pair.pump()
    got, peer = server.recvfrom(65536)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert pair.a.counters["ipv4.tx.fragments"] == 6  # 8192 + 8 bytes over 1480-byte pieces
    assert all(len(f) <= 1514 for f in pair.frames_a_to_b)
    server.sendto(got[::-1], peer, pair.now)
    pair.pump()
    assert client.recv(65536) == payload[::-1]
    assert pair.b.counters["ipv4.reasm.complete"] == 1
    assert pair.a.counters["ipv4.reasm.complete"] == 1


def test_two_stacks_ping_each_other_and_replies_carry_arrival_time() -> None:
    pair = make_pair()
    ping = pair.a.ping_socket()
    for seq in range(3):
        pair.now += 1.0
        ping.send_echo("10.0.2.2", seq, b"x" * 56, pair.now)
        pair.pump()
        reply = ping.recv_reply()
        assert (reply.seq, reply.payload, reply.received_at) == (seq, b"x" * 56, pair.now)
        assert str(reply.src) == "10.0.2.2"
    assert pair.b.counters["icmp.tx.echo_reply"] == 3
