"""vipernet.socket end to end without root: our stack against a peer stack in memory.

Stack A (ours) and stack B (the peer) share a MemoryLink.  A is reached either through a
real netd (AF_UNIX IPC, daemon loop in a thread) or in-process (kernel mode); every test
runs in both modes, so both backends prove the same socket behaviour.  B runs an echo
service on UDP port 7 and TCP port 7 from a runtime hook.
"""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from tests.netd_rig import OURS, PEER, PeerEcho, memory_netd
from vipernet.link.memory import MemoryLink
from vipernet.netclient.client import NetClient, connect
from vipernet.netclient.inprocess import InProcessStack
from vipernet.netclient.sockets import (
    AF_INET,
    IPPROTO_TCP,
    SHUT_WR,
    SOCK_DGRAM,
    SOCK_STREAM,
    TCP_NODELAY,
    socket,
)
from vipernet.stack import Stack, StackConfig


@pytest.fixture(params=["netd", "kernel"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NetClient]:
    if request.param == "netd":
        with memory_netd(tmp_path) as path:
            client = connect(path)
            try:
                yield client
            finally:
                client.close_channel()
    else:
        ours, theirs = MemoryLink.pair()
        peer = PeerEcho(theirs)
        now = time.monotonic()
        stack = Stack(StackConfig(ip=IPv4Interface(f"{OURS}/24"), gateway=IPv4Address(PEER),
                                  dns=()), capabilities=ours.capabilities, now=now,
                      rng=random.Random(1))
        host = InProcessStack(stack, ours, link="memory")
        client = NetClient(host.channel())
        try:
            yield client
        finally:
            client.close_channel()
            host.close()
            peer.close()


def udp(client: NetClient) -> socket:
    sock = socket(AF_INET, SOCK_DGRAM, client=client)
    sock.settimeout(5)
    return sock


def test_udp_datagrams_echo_intact_up_to_8k(client: NetClient) -> None:
    with udp(client) as sock:
        for size in (0, 1, 1472, 1473, 8192):
            payload = random.randbytes(size)
            assert sock.sendto(payload, (PEER, 7)) == size
            data, peer = sock.recvfrom(65535)
            assert (data, peer) == (payload, (PEER, 7))


def test_connected_udp_send_recv_and_names(client: NetClient) -> None:
    with udp(client) as sock:
        sock.connect((PEER, 7))
        sock.send(b"hello")
        assert sock.recv(100) == b"hello"
        assert sock.getpeername() == (PEER, 7)
        assert sock.getsockname()[1] > 0


def test_recv_into_fills_the_buffer(client: NetClient) -> None:
    with udp(client) as sock:
        sock.sendto(b"abcdef", (PEER, 7))
        buffer = bytearray(10)
        assert sock.recv_into(buffer) == 6
        assert bytes(buffer[:6]) == b"abcdef"


def test_recv_timeout_raises_timeout_error_after_the_timeout(client: NetClient) -> None:
    with udp(client) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.settimeout(0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert 0.15 < time.monotonic() - started < 5


def test_non_blocking_recv_raises_blocking_io_error(client: NetClient) -> None:
    with udp(client) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        assert sock.getblocking() is False and sock.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            sock.recv(10)


def test_connected_udp_to_a_closed_port_raises_connection_refused(client: NetClient) -> None:
    with udp(client) as sock:
        sock.connect((PEER, 9))
        sock.send(b"?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(10)


def test_two_threads_block_on_two_sockets_independently(client: NetClient) -> None:
    with udp(client) as waiting, udp(client) as busy:
        waiting.bind(("0.0.0.0", 0))
        got: list[bytes] = []
        thread = threading.Thread(target=lambda: got.append(waiting.recv(100)))
        thread.start()
        for i in range(20):
            busy.sendto(b"%d" % i, (PEER, 7))
            assert busy.recvfrom(100)[0] == b"%d" % i
        assert thread.is_alive() and not got
        busy.sendto(b"wake", ("10.0.2.15", waiting.getsockname()[1]))
        thread.join(5)
        assert got == [b"wake"]


def test_a_closed_socket_raises_ebadf(client: NetClient) -> None:
    sock = udp(client)
    sock.close()
    sock.close()  # idempotent, as the stdlib
    with pytest.raises(OSError) as info:
        sock.sendto(b"x", (PEER, 7))
    assert info.value.errno == errno.EBADF


def test_ping_through_the_client_reports_ttl_and_rtt(client: NetClient) -> None:
    reply = client.ping(PEER, 3, b"p" * 56, 5.0)
    assert (reply.source, reply.seq, reply.ttl, reply.size) == (PEER, 3, 64, 64)
    assert 0 < reply.rtt_ns < 5e9


def test_stat_lists_our_sockets_with_owner_and_kind(client: NetClient) -> None:
    with udp(client) as sock:
        sock.bind(("0.0.0.0", 0))
        port = sock.getsockname()[1]
        rows = client.stat()["sockets"]
        assert any(r["kind"] == "udp" and r["local"] == f"0.0.0.0:{port}" for r in rows)
    assert not any(r["local"] == f"0.0.0.0:{port}" for r in client.stat()["sockets"])


def test_tcp_echo_with_sendall_makefile_and_shutdown(client: NetClient) -> None:
    sock = socket(AF_INET, SOCK_STREAM, client=client)
    sock.settimeout(10)
    try:
        sock.connect((PEER, 7))
    except OSError as exc:
        sock.close()
        pytest.skip(f"TCP not usable in this build: {exc}")
    with sock:
        sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        payload = random.randbytes(300_000)  # two SEND messages of <= 256 KiB
        sock.sendall(payload)
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
        assert bytes(received) == payload
        with sock.makefile("rwb") as stream:
            stream.write(b"line one\nline two\n")
            stream.flush()
            assert stream.readline() == b"line one\n"
            assert stream.readline() == b"line two\n"
        sock.shutdown(SHUT_WR)
        assert sock.recv(10) == b""


def test_connect_to_a_closed_tcp_port_is_refused(client: NetClient) -> None:
    with socket(AF_INET, SOCK_STREAM, client=client) as sock:
        sock.settimeout(10)
        with pytest.raises(ConnectionRefusedError):
            sock.connect((PEER, 1))


def test_poll_reports_the_socket_that_became_readable(client: NetClient) -> None:
    from vipernet.netclient.sockets import poll

    with udp(client) as quiet, udp(client) as talker:
        quiet.bind(("0.0.0.0", 0))
        talker.sendto(b"x", (PEER, 7))
        ready = poll([(quiet, 1), (talker, 1)], timeout=5)
        assert [(s is talker, ev) for s, ev in ready] == [(True, 1)]
        assert poll([(quiet, 1)], timeout=0.1) == []


def test_getaddrinfo_of_a_literal_needs_no_resolver(client: NetClient) -> None:
    from vipernet.netclient.sockets import SOCK_STREAM as STREAM
    from vipernet.netclient.sockets import getaddrinfo

    assert getaddrinfo("10.0.2.2", 80, type=STREAM) == [
        (AF_INET, STREAM, IPPROTO_TCP, "", ("10.0.2.2", 80))]


def test_many_threads_share_one_channel_without_mixing_replies(client: NetClient) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with udp(client) as sock:
                for i in range(30):
                    message = b"%d-%d" % (n, i)
                    sock.sendto(message, (PEER, 7))
                    assert sock.recvfrom(100)[0] == message
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert not any(t.is_alive() for t in threads)
