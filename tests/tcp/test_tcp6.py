"""TCP over IPv6 between two sans-IO stacks: handshake, bulk both ways, half-close, refused
ports, dual-stack sockets (IPv4-mapped peers, IPV6_V6ONLY), and Packet Too Big."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import random
import socket
from ipaddress import IPv4Address, IPv4Interface, IPv6Address

import pytest

from tests.stack.helpers import A6, B6, MAC_A, Pair, dual_stack_pair
from vipernet.stack import Stack, StackConfig
from vipernet.wire.icmpv6 import Icmpv6Type, build_icmpv6_error
from vipernet.wire.ipv6 import parse_ipv6

AF_INET6 = int(socket.AF_INET6)


@pytest.fixture
def pair() -> Pair:
    return dual_stack_pair()


def _connect(pair: Pair, client: object, address: tuple[object, ...]) -> None:
    with pytest.raises(BlockingIOError):
        client.connect(address, pair.now)  # type: ignore[attr-defined]
    pair.advance(0.2)


def _transfer(pair: Pair, src: object, dst: object, blob: bytes) -> bytes:
    sent, got = 0, bytearray()
    for _ in range(20000):
        if sent < len(blob):
            with contextlib.suppress(BlockingIOError):
                sent += src.send(blob[sent:sent + 65536], pair.now)  # type: ignore[attr-defined]
        pair.advance(0.001, step=0.001)
        while True:
            try:
                chunk = dst.recv(1 << 20)  # type: ignore[attr-defined]
            except BlockingIOError:
                break
            if not chunk:
                return bytes(got)
            got += chunk
        if sent == len(blob) and len(got) == len(blob):
            return bytes(got)
    raise AssertionError(f"transfer stalled at {len(got)} of {len(blob)}")


def test_a_connection_over_ipv6_carries_bytes_both_ways_and_half_closes(pair: Pair) -> None:
    server = pair.b.tcp_socket(AF_INET6)
    server.bind(("::", 8080))
    server.listen(4)
    client = pair.a.tcp_socket(AF_INET6)
    _connect(pair, client, (B6, 8080))
    conn = server.accept()
    assert client.getpeername() == (B6, 8080, 0, 0)
    assert client.getsockname()[0] == A6
    assert conn.getpeername()[:2] == (A6, client.getsockname()[1])
    blob = random.Random(5).randbytes(3_000_000)
    got = _transfer(pair, client, conn, blob)
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
    back = _transfer(pair, conn, client, blob[::-1])
    assert back == blob[::-1]
    client.shutdown(1, pair.now)  # our FIN; the other direction still works
    pair.advance(0.2)
    assert conn.recv(100) == b""
    conn.send(b"after your FIN", pair.now)
    pair.advance(0.2)
    assert client.recv(100) == b"after your FIN"
    # every TCP segment went out in IPv6 frames, with the v6 MSS (1500 - 60, less options)
    v6 = [f for f in pair.frames_a_to_b if f[12:14] == b"\x86\xdd"]
    tcp = [parse_ipv6(memoryview(f)[14:]) for f in v6]
    assert sum(1 for h, _ in tcp if h.next_header == 6) > 100
    assert max(len(f) for f in v6) <= 1514
    assert client.connection.smss == 1500 - 60 - 12


def test_a_closed_ipv6_port_refuses(pair: Pair) -> None:
    client = pair.a.tcp_socket(AF_INET6)
    _connect(pair, client, (B6, 9))
    assert client.take_error() == errno.ECONNREFUSED


def test_a_dual_stack_listener_takes_ipv4_peers_as_mapped_addresses(pair: Pair) -> None:
    server = pair.b.tcp_socket(AF_INET6)
    server.bind(("::", 8081))
    server.listen(4)
    client = pair.a.tcp_socket()  # AF_INET
    _connect(pair, client, ("10.0.2.2", 8081))
    conn = server.accept()
    assert conn.getpeername() == ("::ffff:10.0.2.15", client.getsockname()[1], 0, 0)
    assert conn.getsockname() == ("::ffff:10.0.2.2", 8081, 0, 0)
    client.send(b"v4 into a v6 socket", pair.now)
    pair.advance(0.1)
    assert conn.recv(100) == b"v4 into a v6 socket"
    # and an AF_INET6 client reaches an IPv4 listener through a mapped address
    v4_server = pair.b.tcp_socket()
    v4_server.bind(("", 8082))
    v4_server.listen(1)
    mapped_client = pair.a.tcp_socket(AF_INET6)
    _connect(pair, mapped_client, ("::ffff:10.0.2.2", 8082))
    assert mapped_client.getpeername() == ("::ffff:10.0.2.2", 8082, 0, 0)
    assert v4_server.accept().getpeername()[0] == "10.0.2.15"


def test_v6only_listener_shares_its_port_with_an_ipv4_one(pair: Pair) -> None:
    v6 = pair.b.tcp_socket(AF_INET6)
    v6.setsockopt("IPV6_V6ONLY", 1)
    v6.bind(("::", 80))
    v6.listen(4)
    v4 = pair.b.tcp_socket()
    v4.bind(("", 80))  # nginx's "listen 80; listen [::]:80;"
    v4.listen(4)
    dual = pair.b.tcp_socket(AF_INET6)
    with pytest.raises(OSError) as busy:
        dual.bind(("::", 80))
    assert busy.value.errno == errno.EADDRINUSE
    c6, c4 = pair.a.tcp_socket(AF_INET6), pair.a.tcp_socket()
    _connect(pair, c6, (B6, 80))
    _connect(pair, c4, ("10.0.2.2", 80))
    assert v6.accept().getpeername()[0] == A6
    assert v4.accept().getpeername()[0] == "10.0.2.15"
    only6 = pair.a.tcp_socket(AF_INET6)
    only6.setsockopt("IPV6_V6ONLY", 1)
    with pytest.raises(OSError) as unreachable:
        only6.connect(("::ffff:10.0.2.2", 80), pair.now)
    assert unreachable.value.errno == errno.ENETUNREACH


def test_an_ipv4_socket_refuses_ipv6_and_ipv6_off_refuses_af_inet6() -> None:
    plain = Stack(StackConfig(mac=MAC_A, ip=IPv4Interface("10.0.2.15/24"),
                              gateway=IPv4Address("10.0.2.2")), now=0.0, rng=random.Random(1))
    with pytest.raises(OSError) as off:
        plain.tcp_socket(AF_INET6)
    assert off.value.errno == errno.EAFNOSUPPORT


def test_packet_too_big_lowers_the_mss_and_the_flight_is_resent_smaller(pair: Pair) -> None:
    server = pair.b.tcp_socket(AF_INET6)
    server.bind(("::", 8083))
    server.listen(1)
    client = pair.a.tcp_socket(AF_INET6)
    _connect(pair, client, (B6, 8083))
    conn = server.accept()
    client.send(b"x" * 100_000, pair.now)
    # A router with a 1280-byte next link drops the whole flight and says so with a
    # Packet Too Big (sent here by B): A's IPv6 layer records it, TCP shrinks its segments.
    dropped = [bytes(f.data) for f in pair.a.transmit()]
    first_big = next(f for f in dropped if f[12:14] == b"\x86\xdd" and len(f) > 1300)
    a6, b6 = IPv6Address(A6), IPv6Address(B6)
    ptb = build_icmpv6_error(Icmpv6Type.PACKET_TOO_BIG, 0, first_big[14:], b6, a6, mtu=1280)
    pair.b.ipv6.send(a6, 58, ptb, pair.now)
    pair.frames_a_to_b.clear()
    got = b""
    for _ in range(300):
        pair.advance(0.01, step=0.01)
        with contextlib.suppress(BlockingIOError):
            got += conn.recv(1 << 20)
        if len(got) == 100_000:
            break
    assert got == b"x" * 100_000
    assert client.connection.smss == 1280 - 60 - 12
    assert max(len(f) for f in pair.frames_a_to_b) <= 14 + 1280
    assert pair.a.counters.snapshot()["tcp.mss_lowered"] == 1
