"""TCP against the Linux kernel on a real TAP (test bed), stack in-process via Runtime.

Both directions move 100 MB (``VIPERNET_TCP_INTEROP_MB`` to change) and compare sha256 on
both sides; the connection that uploads also checks half-close (the kernel answers after our
FIN).  Also: RST from a closed port is ConnectionRefusedError, an unreachable host fails,
200 sequential and 100 concurrent connections.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.tcp.kernel_rig import CLIENT, Rig, close_rig, open_rig, pseudo_random_sha256
from tests.testbed import GATEWAY

pytestmark = pytest.mark.testbed

MB = int(os.environ.get("VIPERNET_TCP_INTEROP_MB", "100"))


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = open_rig("tcp")
    try:
        yield r
        assert r.stack.counters["stack.rx.internal_error"] == 0
        assert r.stack.counters["stack.poll.internal_error"] == 0
    finally:
        close_rig(r)


def upload_and_check(rig: Rig, size: int, seed: int = 7) -> float:
    """vipernet client -> kernel sink; half-close; the kernel answers with sha256 + length."""
    port = rig.start_server("sink")
    data = os.urandom(1 << 20)
    want = hashlib.sha256()
    sock = rig.connect(rig.kernel_host, port)
    t0 = time.perf_counter()
    for _ in range(size >> 20):
        rig.sendall(sock, data)
        want.update(data)
    rig.shutdown_write(sock)
    answer = bytearray()
    rig.recv_all(sock, answer.extend, timeout=120)
    elapsed = time.perf_counter() - t0
    rig.close(sock)
    digest, length = answer.decode().split()
    assert int(length) == size
    assert digest == want.hexdigest()
    return elapsed


def download_and_check(rig: Rig, size: int, seed: int = 11) -> float:
    """kernel client -> vipernet listener."""
    lst = rig.call(lambda: rig.stack.tcp_socket(rig.family))
    rig.call(lambda: lst.bind(("", 5001)))
    rig.call(lambda: lst.listen(8))
    proc = rig.bed.start([sys.executable, "-c", CLIENT, "5001", str(size), str(seed)],
                         stdout=subprocess.PIPE, env=rig.client_env())
    sock = rig.accept(lst)
    t0 = time.perf_counter()
    got = hashlib.sha256()
    n = rig.recv_all(sock, got.update, timeout=120)
    elapsed = time.perf_counter() - t0
    rig.close(sock)
    rig.close(lst)
    assert proc.stdout is not None
    kernel_digest = proc.stdout.readline().decode().strip()
    assert n == size
    assert got.hexdigest() == kernel_digest == pseudo_random_sha256(size, seed)
    return elapsed


def test_upload_to_the_kernel_arrives_sha256_equal_with_half_close(rig: Rig) -> None:
    elapsed = upload_and_check(rig, MB << 20)
    print(f"upload {MB} MB: {MB / elapsed:.0f} MB/s")


def test_download_from_the_kernel_arrives_sha256_equal(rig: Rig) -> None:
    elapsed = download_and_check(rig, MB << 20)
    print(f"download {MB} MB: {MB / elapsed:.0f} MB/s")


def test_connect_to_a_closed_port_is_refused(rig: Rig) -> None:
    with pytest.raises(ConnectionRefusedError):
        rig.connect(GATEWAY, 9)


def test_connect_to_an_unreachable_host_fails(rig: Rig) -> None:
    t0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        rig.connect("10.0.2.99", 80, timeout=60)
    assert exc.value.errno in (errno.EHOSTUNREACH, errno.ETIMEDOUT)
    assert time.monotonic() - t0 < 30


def test_two_hundred_sequential_connections(rig: Rig) -> None:
    port = rig.start_server("echo")
    for i in range(200):
        sock = rig.connect(GATEWAY, port)
        msg = f"hello {i}".encode() * 10
        rig.sendall(sock, msg)
        rig.shutdown_write(sock)
        back = bytearray()
        rig.recv_all(sock, back.extend)
        assert bytes(back) == msg
        rig.close(sock)


def test_one_hundred_concurrent_connections(rig: Rig) -> None:
    port = rig.start_server("echo")
    socks = [rig.connect(GATEWAY, port) for _ in range(100)]
    msgs = [os.urandom(3000 + i) for i in range(100)]
    for s, m in zip(socks, msgs, strict=True):
        rig.sendall(s, m)
        rig.shutdown_write(s)
    for s, m in zip(socks, msgs, strict=True):
        back = bytearray()
        rig.recv_all(s, back.extend)
        assert bytes(back) == m
        rig.close(s)
    assert rig.runtime.wait_until(
        lambda: all(c.state.name in ("TIME_WAIT", "CLOSED")
                    for c in rig.stack.tcp.conns.values()), 10)
