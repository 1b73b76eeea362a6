"""The TCP and UDP interop tests, unchanged, through netd and in kernel mode.

Each test below uses only the ``vipernet.socket`` module API (no client argument, no mode
check).  The ``mode`` fixture runs the whole module twice against the Linux kernel in a
test namespace: once with ``VIPERNET_SOCKET`` naming a ``vipernet netd --link tap:...``
process, once with ``VIPER_KERNEL_ENABLE_NET=1 VIPERNET_LINK=tap:...@NS``, where the stack
runs inside this test process.  The environment is the only difference, which is what the
issue asks of kernel mode ("runs the TCP and UDP interop tests unchanged").
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.netd_rig import cli_env, start_udp_echo
from tests.testbed import GATEWAY, STACK_IP, TestBed, stop_process, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import default, inprocess

pytestmark = pytest.mark.testbed


@dataclass
class Mode:
    name: str
    bed: TestBed
    udp_echo: int


def _close_in_process_stack() -> None:
    # Kernel mode keeps one stack per process (inprocess._host) and has no public way to
    # drop it; it must be closed before the namespace that holds its TAP goes away.
    host = inprocess._host
    inprocess._host = None
    if host is not None:
        host.close()


@pytest.fixture(scope="module", params=["netd", "kernel"])
def mode(request: pytest.FixtureRequest) -> Iterator[Mode]:
    bed = TestBed("kmi")
    try:
        with pytest.MonkeyPatch.context() as env:
            if request.param == "netd":
                path = str(bed.workdir / "netd.sock")
                proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                                  f"tap:{bed.tap}", "--socket", path],
                                 env=cli_env(VIPERNET_SOCKET=path))
                wait_for(lambda: os.path.exists(path) or proc.poll() is not None,
                         timeout=30, what="netd's socket")
                assert proc.poll() is None, "netd exited"
                env.setenv("VIPERNET_SOCKET", path)
                env.delenv("VIPER_KERNEL_ENABLE_NET", raising=False)
            else:
                env.setenv("VIPER_KERNEL_ENABLE_NET", "1")
                env.setenv("VIPERNET_LINK", f"tap:{bed.tap}@{bed.name}")
                env.delenv("VIPERNET_SOCKET", raising=False)
            default.reset_default_client()
            _, port = start_udp_echo(bed)
            try:
                info = default.default_client().info()
                assert info.get("mode", "netd") == request.param  # the mode really in use
                assert info["ip"] == STACK_IP
                assert (info["pid"] == os.getpid()) == (request.param == "kernel")
                yield Mode(request.param, bed, port)
            finally:
                default.reset_default_client()
                _close_in_process_stack()
    finally:
        bed.close()


@pytest.mark.parametrize("size", [1, 1472, 8192])
def test_udp_datagrams_echo_intact_through_the_kernel(mode: Mode, size: int) -> None:
    payload = os.urandom(size)
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        assert sock.sendto(payload, (GATEWAY, mode.udp_echo)) == size
        data, peer = sock.recvfrom(65535)
    assert (data, peer) == (payload, (GATEWAY, mode.udp_echo))


def test_connected_udp_to_a_closed_kernel_port_raises_connection_refused(mode: Mode) -> None:
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.connect((GATEWAY, 9))  # nothing listens on discard in the namespace
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                sock.recv(100)


def test_tcp_connect_to_a_closed_kernel_port_is_refused(mode: Mode) -> None:
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        with pytest.raises(ConnectionRefusedError):
            sock.connect((GATEWAY, 1))


# The kernel's side: in "upload-first" order it reads to EOF (our half-close), reports
# the sha256, then sends its own blob and closes; in "download-first" order it sends and
# half-closes first, then reads ours to EOF.  Either way one side sends after the other
# has shut its direction down.
KERNEL_PEER = """
import hashlib, socket, sys
order, size = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.bind(("10.0.2.2", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
blob = bytes((i * 131 + 7) & 0xFF for i in range(size))
def upload():
    h, got = hashlib.sha256(), 0
    while data := conn.recv(1 << 16):
        h.update(data)
        got += len(data)
    print(got, h.hexdigest(), flush=True)
def download():
    conn.sendall(blob)
    conn.shutdown(socket.SHUT_WR)
    print(hashlib.sha256(blob).hexdigest(), flush=True)
if order == "upload-first":
    upload(); download()
else:
    download(); upload()
conn.close()
"""


def _receive_all(sock: vsocket.socket) -> tuple[int, str]:
    h, got = hashlib.sha256(), 0
    while chunk := sock.recv(1 << 18):
        h.update(chunk)
        got += len(chunk)
    return got, h.hexdigest()


@pytest.mark.parametrize("order", ["upload-first", "download-first"])
def test_tcp_transfer_both_ways_with_half_close_matches_sha256(mode: Mode, order: str) -> None:
    size = 2 * 1024 * 1024
    server = mode.bed.start([sys.executable, "-c", KERNEL_PEER, order, str(size)],
                            stdout=subprocess.PIPE)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    payload = os.urandom(size)
    try:
        with vsocket.create_connection((GATEWAY, port), timeout=30) as sock:
            assert sock.getpeername() == (GATEWAY, port)
            if order == "upload-first":
                sock.sendall(payload)
                sock.shutdown(vsocket.SHUT_WR)  # our half-close: the kernel sees EOF ...
                got, digest = server.stdout.readline().decode().split()
                assert (int(got), digest) == (size, hashlib.sha256(payload).hexdigest())
                received = _receive_all(sock)  # ... and still sends to us
                expected = server.stdout.readline().decode().strip()
            else:
                received = _receive_all(sock)  # the kernel half-closed: EOF here ...
                expected = server.stdout.readline().decode().strip()
                sock.sendall(payload)  # ... and we still send to it
                sock.shutdown(vsocket.SHUT_WR)
                got, digest = server.stdout.readline().decode().split()
                assert (int(got), digest) == (size, hashlib.sha256(payload).hexdigest())
        assert received == (size, expected)
    finally:
        stop_process(server)


def test_the_kernel_connects_to_a_vipernet_listener(mode: Mode) -> None:
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen(4)
        listener.settimeout(10)
        port = listener.getsockname()[1]
        script = (f"import socket; s=socket.create_connection(('{STACK_IP}', {port}), "
                  "timeout=10); s.sendall(b'hello from the kernel'); "
                  "s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())")
        client = subprocess.Popen(mode.bed.ns_argv([sys.executable, "-c", script]),
                                  stdout=subprocess.PIPE, text=True)
        conn, peer = listener.accept()
        with conn:
            conn.settimeout(10)
            assert peer[0] == GATEWAY
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            assert data == b"hello from the kernel"
            conn.sendall(b"hello from vipernet")
        assert client.communicate(timeout=10)[0].strip() == "hello from vipernet"
