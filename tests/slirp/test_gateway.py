"""The user-mode gateway: a guest stack reaches host loopback through SlirpDevice (no root)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.slirp.rig import HostServer, Rig
from vipernet.slirp.config import Forward, SlirpConfig


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def test_the_gateway_answers_ping(rig: Rig) -> None:
    ping = rig.guest.ping_socket()
    ping.send_echo("10.0.2.2", 1, b"hello", time.monotonic())
    replies = []

    def got() -> bool:
        try:
            replies.append(ping.recv_reply())
        except BlockingIOError:
            return False
        return True

    rig.until(got)
    assert str(replies[0].src) == "10.0.2.2" and replies[0].payload == b"hello"


def test_a_download_from_host_loopback_is_byte_exact(rig: Rig) -> None:
    blob = os.urandom(4 * 1024 * 1024)
    server = HostServer(lambda conn: conn.sendall(blob))
    try:
        sock = rig.connect(("10.0.2.2", server.port))
        got = bytearray()
        done = [False]

        def drain() -> bool:
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    return False
                if not data:
                    done[0] = True
                    return True
                got.extend(data)

        rig.until(drain, timeout=60)
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        sock.close(time.monotonic())
        rig.until(lambda: not rig.device._relays, timeout=10)
        assert not server.errors
    finally:
        server.close()


def test_an_upload_reaches_the_host_whole_and_the_reply_comes_back(rig: Rig) -> None:
    blob = os.urandom(1024 * 1024)
    received: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        received.append(b"".join(chunks))
        conn.sendall(hashlib.sha256(received[0]).hexdigest().encode())

    server = HostServer(handler)
    try:
        sock = rig.connect(("10.0.2.2", server.port))
        view = memoryview(blob)
        sent = [0]

        def push() -> bool:
            while sent[0] < len(blob):
                try:
                    sent[0] += sock.send(view[sent[0]:sent[0] + 65536], time.monotonic())
                except BlockingIOError:
                    return False
            return True

        rig.until(push, timeout=60)
        sock.shutdown(socket.SHUT_WR, time.monotonic())
        answer = bytearray()

        def drain() -> bool:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return False
            answer.extend(data)
            return not data

        rig.until(drain, timeout=30)
        assert bytes(answer) == hashlib.sha256(blob).hexdigest().encode()
        assert received == [blob]
    finally:
        server.close()


def test_a_closed_host_port_is_refused_to_the_guest(rig: Rig) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    sock = rig.connect(("10.0.2.2", port))
    assert sock.take_error() == errno.ECONNREFUSED
    assert rig.device.counters["tcp.host_refused"] == 1


def test_restrict_refuses_destinations_other_than_gateway_and_dns() -> None:
    rig = Rig(SlirpConfig(restrict=True))
    try:
        sock = rig.connect(("192.0.2.1", 80))
        assert sock.take_error() == errno.ECONNREFUSED
        assert rig.device.counters["tcp.refused"] == 1
    finally:
        rig.close()


def udp_echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.1)

    def serve() -> None:
        while server.fileno() >= 0:
            try:
                data, peer = server.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            server.sendto(b"echo:" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def udp_round_trip(rig: Rig, address: tuple[str, int],
                   payload: bytes) -> tuple[bytes, tuple[str, int]]:
    sock = rig.guest.udp_socket()
    sock.sendto(payload, address, time.monotonic())
    result: list[tuple[bytes, tuple[str, int]]] = []

    def got() -> bool:
        try:
            result.append(sock.recvfrom(65535))
        except BlockingIOError:
            return False
        return True

    rig.until(got)
    sock.close(time.monotonic())
    return result[0]


def test_udp_to_the_gateway_reaches_host_loopback_and_the_answer_comes_from_the_gateway(
        rig: Rig) -> None:
    server, thread = udp_echo_server()
    try:
        port = server.getsockname()[1]
        data, peer = udp_round_trip(rig, ("10.0.2.2", port), b"x" * 3000)  # fragments both ways
        assert data == b"echo:" + b"x" * 3000
        assert peer == ("10.0.2.2", port)
    finally:
        server.close()
        thread.join(timeout=5)


def test_dns_at_10_0_2_3_goes_to_the_configured_upstream() -> None:
    server, thread = udp_echo_server()
    rig = Rig(SlirpConfig(dns_upstream=("127.0.0.1", server.getsockname()[1])))
    try:
        data, peer = udp_round_trip(rig, ("10.0.2.3", 53), b"query")
        assert data == b"echo:query" and peer == ("10.0.2.3", 53)
        assert rig.device.counters["arp.dns_answered"] >= 1
    finally:
        rig.close()
        server.close()
        thread.join(timeout=5)


def test_a_host_port_forward_reaches_a_guest_listener() -> None:
    forward = Forward(host_port=0, guest_port=8080)
    rig = Rig(SlirpConfig(forwards=(forward,)))
    try:
        listener = rig.guest.tcp_socket()
        listener.bind(("", 8080))
        listener.listen(4)
        host, port = rig.device.forward_address(forward)
        client = socket.create_connection((host, port), timeout=10)
        client.setblocking(False)
        accepted: list[object] = []

        def accept() -> bool:
            try:
                accepted.append(listener.accept())
            except BlockingIOError:
                return False
            return True

        rig.until(accept)
        conn = accepted[0]
        client.sendall(b"ping from the host")
        got = bytearray()

        def read() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.extend(conn.recv(4096))  # type: ignore[attr-defined]
            return bytes(got) == b"ping from the host"

        rig.until(read)
        conn.send(b"pong from the guest", time.monotonic())  # type: ignore[attr-defined]
        answer = bytearray()

        def read_host() -> bool:
            with contextlib.suppress(BlockingIOError):
                answer.extend(client.recv(4096))
            return bytes(answer) == b"pong from the guest"

        rig.until(read_host)
        assert peer_is_gateway(conn)
        client.close()
    finally:
        rig.close()


def peer_is_gateway(conn: object) -> bool:
    return conn.getpeername()[0] == "10.0.2.2"  # type: ignore[attr-defined]


def test_config_parses_link_options() -> None:
    config = SlirpConfig.from_argument("restrict,forward=tcp:8080:80,dns=127.0.0.1:5353")
    assert config.restrict and config.dns_upstream == ("127.0.0.1", 5353)
    assert config.forwards == (Forward(host_port=8080, guest_port=80),)
    from vipernet.slirp.config import SlirpConfigError

    udp = SlirpConfig.from_argument("forward=udp:5353:53").forwards
    assert udp == (Forward(host_port=5353, guest_port=53, protocol="udp"),)
    for bad in ("bogus", "forward=sctp:1:2", "forward=tcp:x:2", "dns=nohost"):
        with pytest.raises(SlirpConfigError):
            SlirpConfig.from_argument(bad)


def test_the_gateway_hands_out_10_0_2_15_by_dhcp(rig: Rig) -> None:
    import random as _random

    from vipernet.dhcp import DhcpClient, acquire

    client = DhcpClient(mac=bytes.fromhex("525400123456"), rng=_random.Random(4))
    lease = acquire(rig.device, client, timeout=10.0)
    assert str(lease.address) == "10.0.2.15/24"
    assert str(lease.router) == "10.0.2.2" and [str(d) for d in lease.dns] == ["10.0.2.3"]
    assert rig.device.counters["dhcp.offer"] == 1 and rig.device.counters["dhcp.ack"] == 1


def test_a_request_for_another_address_is_nakked() -> None:
    from ipaddress import IPv4Address, IPv4Interface

    from vipernet.dhcp.codec import DhcpMessage, MessageType, Op, OptionCode
    from vipernet.slirp.dhcp_server import answer

    request = DhcpMessage(op=Op.BOOTREQUEST, xid=5, chaddr=bytes(6), options=(
        (OptionCode.MESSAGE_TYPE, bytes((MessageType.REQUEST,))),
        (OptionCode.REQUESTED_IP, IPv4Address("10.0.2.99").packed)))
    reply = answer(request, address=IPv4Interface("10.0.2.15/24"),
                   server=IPv4Address("10.0.2.2"), dns=IPv4Address("10.0.2.3"))
    assert reply is not None and reply.message_type == MessageType.NAK and reply.xid == 5
    release = DhcpMessage(op=Op.BOOTREQUEST, xid=6, chaddr=bytes(6), options=(
        (OptionCode.MESSAGE_TYPE, bytes((MessageType.RELEASE,))),))
    assert answer(release, address=IPv4Interface("10.0.2.15/24"),
                  server=IPv4Address("10.0.2.2"), dns=IPv4Address("10.0.2.3")) is None


def test_a_refused_datagram_comes_back_to_the_guest_as_port_unreachable(rig: Rig) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now: the host answers ICMP port unreachable
    sock = rig.guest.udp_socket()
    sock.connect(("10.0.2.2", port), time.monotonic())
    sock.send(b"anyone?", time.monotonic())
    assert rig.recv_errors(sock) == [errno.ECONNREFUSED]
    assert rig.device.counters["udp.unreachable_sent"] == 1


def test_fifty_concurrent_connections_each_get_their_own_bytes(rig: Rig) -> None:
    def handler(conn: socket.socket) -> None:
        tag = conn.recv(16)
        conn.sendall(tag * 4096)  # 64 KiB naming the connection it belongs to

    server = HostServer(handler)
    try:
        socks = []
        for i in range(50):
            sock = rig.guest.tcp_socket()
            with contextlib.suppress(BlockingIOError):
                sock.connect(("10.0.2.2", server.port), time.monotonic())
            socks.append((f"conn{i:012d}".encode(), sock, bytearray()))
        rig.until(lambda: all(s.writable for _, s, _ in socks), timeout=30)
        for tag, sock, _ in socks:
            sock.send(tag, time.monotonic())
        done: set[bytes] = set()

        def drain() -> bool:
            for tag, sock, got in socks:
                if tag in done:
                    continue
                while True:
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        break
                    if not data:
                        done.add(tag)
                        break
                    got.extend(data)
            return len(done) == len(socks)

        rig.until(drain, timeout=60)
        for tag, sock, got in socks:
            assert bytes(got) == tag * 4096
            sock.close(time.monotonic())
        assert not server.errors
    finally:
        server.close()
