"""``vipernet gateway --tap``: the Linux kernel of a namespace as the guest.

The namespace's kernel is the guest at 10.0.2.15/24 with its default route via 10.0.2.2;
its only interface is a TAP that a ``vipernet gateway`` process (in the root namespace,
where "the host" is) serves.  Everything the kernel reaches is on host loopback, exactly
as a QEMU guest behind libslirp would reach it: an HTTP server (download and upload,
sha256 end to end), dnsmasq as the DNS upstream of 10.0.2.3, and port forwards (TCP and
UDP) from host 127.0.0.1 into the namespace.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.kernel_guest import KernelGuest
from tests.testbed import require_binary, stop_process, wait_for
from tests.vm.hostserver import LoopbackDns, PayloadHttpServer, free_port, payload_sha256

pytestmark = pytest.mark.testbed

SRC = str(Path(__file__).resolve().parents[2] / "src")
SIZE = 24 * 1024 * 1024


@pytest.fixture(scope="module")
def dns_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """dnsmasq on a loopback address of its own, knowing guest.test: the 10.0.2.3 upstream."""
    with LoopbackDns(tmp_path_factory.mktemp("dns"), {"guest.test": "192.0.2.77"},
                     address="127.83.0.54") as dns:
        yield dns.address


@pytest.fixture(scope="module")
def served(dns_upstream: str) -> Iterator[tuple[KernelGuest, PayloadHttpServer, dict[str, int]]]:
    """The kernel guest, behind a gateway with one TCP and one UDP forward."""
    guest = KernelGuest("tap")
    http = PayloadHttpServer()
    forwards = {"tcp": free_port(), "udp": free_port(kind=socket.SOCK_DGRAM)}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "vipernet.cli.main", "gateway", "--tap", f"{guest.tap}@{guest.name}",
         "--forward", f"tcp:{forwards['tcp']}:8080", "--forward", f"udp:{forwards['udp']}:9090",
         "--dns-upstream", f"{dns_upstream}:53", "--ipv6", "off"],
        env={**os.environ, "PYTHONPATH": SRC}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _tcp_open(forwards["tcp"]) or gateway.poll() is not None,
                 what="the gateway's forward listener")
        assert gateway.poll() is None, gateway.stderr.read() if gateway.stderr else ""
        yield guest, http, forwards
    finally:
        stop_process(gateway)
        http.close()
        guest.close()


def _tcp_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_guest_pings_the_gateway(served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]]
                                     ) -> None:
    guest, _, _ = served
    out = guest.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.2.2"], check=False)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert b"3 received" in out.stdout


def test_download_and_upload_through_host_loopback(
        served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]]) -> None:
    guest, http, _ = served
    got = guest.run(["sh", "-c", f"curl -sf '{http.url(SIZE)}' | sha256sum"], timeout=120)
    assert got.stdout.split()[0].decode() == payload_sha256(SIZE)
    up = guest.run(["sh", "-c", f"curl -sf '{http.url(SIZE)}' | "
                    f"curl -sf --data-binary @- {http.upload_url()}"], timeout=120)
    assert up.stdout.decode().strip() == f"{SIZE} {payload_sha256(SIZE)}"


def test_a_name_resolves_through_the_dns_address(
        served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]]) -> None:
    guest, _, _ = served
    out = guest.run(["getent", "ahostsv4", "guest.test"], check=False)
    assert out.stdout.split()[:1] == [b"192.0.2.77"], out


def test_tcp_forward_reaches_a_server_in_the_guest(
        served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]]) -> None:
    guest, _, forwards = served
    payload = os.urandom(300_000)
    server = subprocess.Popen(guest.argv([sys.executable, "-c", _SERVE_ONCE, "8080"]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdin is not None
        assert server.stdout.readline() == b"ready\n"
        server.stdin.write(payload)
        server.stdin.close()
        with socket.create_connection(("127.0.0.1", forwards["tcp"]), timeout=20) as conn:
            received = b"".join(iter(lambda: conn.recv(65536), b""))
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_udp_forward_reaches_a_server_in_the_guest(
        served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]]) -> None:
    guest, _, forwards = served
    server = subprocess.Popen(guest.argv([sys.executable, "-c", _ECHO_UDP, "9090"]),
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(1.0)
            for i in range(3):
                message = f"datagram {i}".encode()
                answer = b""
                for _attempt in range(5):  # the first may wait for the guest's ARP answer
                    client.sendto(message, ("127.0.0.1", forwards["udp"]))
                    try:
                        answer = client.recv(100)
                        break
                    except TimeoutError:
                        continue
                assert answer == b"echo " + message
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def test_dhcp_hands_out_the_guest_address(
        served: tuple[KernelGuest, PayloadHttpServer, dict[str, int]], tmp_path: Path) -> None:
    guest, _, _ = served
    script = tmp_path / "lease.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "lease $ip $subnet $router $dns"\n')
    script.chmod(0o755)
    busybox = require_binary("busybox")
    out = guest.run([busybox, "udhcpc", "-i", guest.tap, "-n", "-q", "-f", "-t", "5",
                     "-s", str(script)], check=False, timeout=60)
    assert b"lease 10.0.2.15 255.255.255.0 10.0.2.2 10.0.2.3" in out.stdout, out


_SERVE_ONCE = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
data = sys.stdin.buffer.read()
c, _ = s.accept(); c.sendall(data); c.close()
"""

_ECHO_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2000); s.sendto(b"echo " + data, peer)
"""


def test_nothing_is_left_listening_after_the_gateway_stops() -> None:
    # The module fixture's teardown runs after this module; this checks the forward port
    # convention on a gateway of its own: SIGTERM closes its host listeners at once.
    guest = KernelGuest("stop")
    port = free_port()
    try:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "vipernet.cli.main", "gateway", "--tap",
             f"{guest.tap}@{guest.name}", "--forward", f"tcp:{port}:80"],
            env={**os.environ, "PYTHONPATH": SRC}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _tcp_open(port), what="the forward listener")
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=10) == 0
        time.sleep(0.05)
        assert not _tcp_open(port)
    finally:
        guest.close()
