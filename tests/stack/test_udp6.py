"""UDP over IPv6 between two sans-IO stacks: datagrams both ways (fragmented ones too),
the mandatory checksum, ICMPv6 port unreachable to a connected socket, and dual-stack
sockets (IPv4-mapped peers, IPV6_V6ONLY sharing a port with an AF_INET socket)."""

from __future__ import annotations

import errno
import random
import socket
from ipaddress import IPv6Address

import pytest

from tests.stack.helpers import A6, B6, Pair, dual_stack_pair
from vipernet.wire.ipv6 import IPv6Header, build_ipv6_packet
from vipernet.wire.udp import build_udp

AF_INET6 = int(socket.AF_INET6)


@pytest.fixture
def pair() -> Pair:
    return dual_stack_pair()


def test_datagrams_cross_ipv6_both_ways_with_boundaries_and_sources(pair: Pair) -> None:
    server = pair.b.udp_socket(AF_INET6)
    server.bind(("::", 5353))
    client = pair.a.udp_socket(AF_INET6)
    client.sendto(b"first", (B6, 5353), pair.now)
    client.sendto(b"", (B6, 5353), pair.now)
    pair.advance(0.05)
    data, source = server.recvfrom(100)
    assert data == b"first"
    assert source == (A6, client.getsockname()[1], 0, 0)
    assert server.recvfrom(100)[0] == b""
    server.sendto(b"back", source, pair.now)
    pair.advance(0.05)
    assert client.recvfrom(100) == (b"back", (B6, 5353, 0, 0))
    assert client.getsockname()[0] == "::"
    assert pair.b.counters["udp.rx.datagrams"] == 2


def test_a_datagram_larger_than_the_mtu_is_fragmented_and_reassembled(pair: Pair) -> None:
    server = pair.b.udp_socket(AF_INET6)
    server.bind((B6, 9000))
    client = pair.a.udp_socket(AF_INET6)
    client.connect((B6, 9000), pair.now)
    blob = random.Random(3).randbytes(30_000)
    client.send(blob, pair.now)
    pair.advance(0.05)
    assert server.recv(65536) == blob
    assert pair.a.counters["ipv6.tx.fragments"] >= 20
    with pytest.raises(OSError) as info:
        client.send(bytes(65528), pair.now)
    assert info.value.errno == errno.EMSGSIZE


def test_a_connected_socket_hears_icmpv6_port_unreachable(pair: Pair) -> None:
    client = pair.a.udp_socket(AF_INET6)
    client.connect((B6, 4444), pair.now)
    client.send(b"anyone?", pair.now)
    pair.advance(0.05)
    assert pair.b.counters["udp.rx.no_socket"] == 1
    with pytest.raises(ConnectionRefusedError):
        client.recv(100)
    # An unconnected socket ignores the error, as Linux without IPV6_RECVERR.
    loose = pair.a.udp_socket(AF_INET6)
    loose.sendto(b"anyone?", (B6, 4445), pair.now)
    pair.advance(2.0)
    with pytest.raises(BlockingIOError):
        loose.recvfrom(100)


def _inject(pair: Pair, checksum: int) -> None:
    """A datagram from A6 to B6:7000 with the given checksum field, straight into B."""
    src, dst = IPv6Address(A6), IPv6Address(B6)
    segment = bytearray(build_udp(1234, 7000, b"payload", src=src, dst=dst))
    segment[6:8] = checksum.to_bytes(2, "big")
    header = IPv6Header(src=src, dst=dst, next_header=17)
    pair.b.ipv6.receive(memoryview(build_ipv6_packet(header, segment)), None, pair.now)


def test_a_zero_or_wrong_checksum_over_ipv6_is_a_counted_drop(pair: Pair) -> None:
    server = pair.b.udp_socket(AF_INET6)
    server.bind(("::", 7000))
    _inject(pair, 0)
    _inject(pair, 0x1234)
    with pytest.raises(BlockingIOError):
        server.recvfrom(100)
    assert pair.b.counters["udp.rx.bad_checksum"] == 2


def test_a_dual_stack_socket_serves_ipv4_peers_in_the_mapped_form(pair: Pair) -> None:
    server = pair.b.udp_socket(AF_INET6)
    server.bind(("::", 6000))
    v4 = pair.a.udp_socket()
    v4.sendto(b"over v4", ("10.0.2.2", 6000), pair.now)
    pair.advance(0.05)
    data, source = server.recvfrom(100)
    assert data == b"over v4"
    assert source == ("::ffff:10.0.2.15", v4.getsockname()[1], 0, 0)
    server.sendto(b"reply", source, pair.now)
    pair.advance(0.05)
    assert v4.recvfrom(100) == (b"reply", ("10.0.2.2", 6000))
    # An AF_INET6 client reaching an IPv4 server through a mapped address.
    client = pair.a.udp_socket(AF_INET6)
    client.connect(("::ffff:10.0.2.2", 6000), pair.now)
    assert client.getpeername() == ("::ffff:10.0.2.2", 6000, 0, 0)
    client.send(b"mapped", pair.now)
    pair.advance(0.05)
    assert server.recvfrom(100)[1][0] == "::ffff:10.0.2.15"


def test_v6only_shares_a_port_with_ipv4_and_refuses_mapped_peers(pair: Pair) -> None:
    v6 = pair.b.udp_socket(AF_INET6)
    v6.setsockopt("IPV6_V6ONLY", 1)
    v6.bind(("::", 7100))
    v4 = pair.b.udp_socket()
    v4.bind(("0.0.0.0", 7100))  # no EADDRINUSE: the V6ONLY socket takes only IPv6
    dual = pair.b.udp_socket(AF_INET6)
    with pytest.raises(OSError) as info:
        dual.bind(("::", 7100))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        v6.sendto(b"x", ("::ffff:10.0.2.15", 9), pair.now)
    assert info.value.errno == errno.ENETUNREACH
    with pytest.raises(OSError) as info:
        v6.setsockopt("IPV6_V6ONLY", 0)
    assert info.value.errno == errno.EINVAL
    sender4, sender6 = pair.a.udp_socket(), pair.a.udp_socket(AF_INET6)
    sender4.sendto(b"to v4", ("10.0.2.2", 7100), pair.now)
    sender6.sendto(b"to v6", (B6, 7100), pair.now)
    pair.advance(0.05)
    assert v4.recvfrom(100)[0] == b"to v4"
    assert v6.recvfrom(100)[0] == b"to v6"


def test_binding_checks_the_address_and_the_family_options(pair: Pair) -> None:
    sock = pair.a.udp_socket(AF_INET6)
    with pytest.raises(OSError) as info:
        sock.bind(("fd00::99", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL
    sock.bind(("::ffff:10.0.2.15", 0))  # IPv4 only from now on
    assert sock.getsockname()[0] == "::ffff:10.0.2.15"
    with pytest.raises(OSError) as info:
        sock.sendto(b"x", (B6, 9), pair.now)
    assert info.value.errno == errno.ENETUNREACH
    v4 = pair.a.udp_socket()
    with pytest.raises(OSError) as info:
        v4.setsockopt("IPV6_V6ONLY", 1)
    assert info.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError) as info:
        pair.a.udp_socket(AF_INET6).sendto(b"x", ("::", 9), pair.now)
    assert info.value.errno == errno.EINVAL
