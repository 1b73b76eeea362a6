"""Kernel mode (the stack inside this process) speaks IPv6 too: ``VIPERNET_IP6`` (auto by
default, as netd's ``--ip6``) and an IPv6 ``VIPERNET_DNS``; TCP and UDP over AF_INET6 and
an AAAA lookup against the kernel and dnsmasq in the test namespace."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.testbed import DNS_SERVER6, GATEWAY6, TestBed, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import default, inprocess

pytestmark = pytest.mark.testbed
STACK6 = "fd0a:2::15"

KERNEL_SERVER = """
import hashlib, socket
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.bind(("fd0a:2::2", 0))
srv.listen(1)
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.bind(("fd0a:2::2", srv.getsockname()[1]))
print(srv.getsockname()[1], flush=True)
data, peer = udp.recvfrom(65536)
udp.sendto(data[::-1], peer)
conn, _ = srv.accept()
h = hashlib.sha256()
while chunk := conn.recv(65536):
    h.update(chunk)
conn.sendall(h.hexdigest().encode())
conn.close()
"""


@pytest.fixture(scope="module")
def bed() -> Iterator[TestBed]:
    test_bed = TestBed("km6")
    try:
        test_bed.enable_ipv6()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("VIPER_KERNEL_ENABLE_NET", "1")
            env.setenv("VIPERNET_LINK", f"tap:{test_bed.tap}@{test_bed.name}")
            env.setenv("VIPERNET_IP6", f"{STACK6}/64")
            env.setenv("VIPERNET_DNS", DNS_SERVER6)
            env.delenv("VIPERNET_SOCKET", raising=False)
            default.reset_default_client()
            try:
                info = default.default_client().info()  # opens the TAP: the stack is up
                assert info["mode"] == "kernel"

                def static_ready() -> bool:
                    return any(e["address"] == STACK6 and e["state"] == "preferred"
                               for e in default.default_client().info()["ipv6"]["addresses"])

                wait_for(static_ready, timeout=20, what=f"DAD of {STACK6}")
                test_bed.start_router_advertisements()  # and dnsmasq's DNS on fd0a:2::3
                yield test_bed
            finally:
                default.reset_default_client()
                host, inprocess._host = inprocess._host, None
                if host is not None:
                    host.close()
    finally:
        test_bed.close()


def test_kernel_mode_carries_tcp_and_udp_over_ipv6(bed: TestBed) -> None:
    proc = bed.start([sys.executable, "-c", KERNEL_SERVER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    with vsocket.socket(vsocket.AF_INET6, vsocket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(b"over kernel-mode IPv6", (GATEWAY6, port))
        assert udp.recvfrom(100) == (b"over kernel-mode IPv6"[::-1], (GATEWAY6, port, 0, 0))
    blob = random.Random(2).randbytes(8 << 20)
    with vsocket.socket(vsocket.AF_INET6, vsocket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect((GATEWAY6, port))
        assert sock.getsockname()[0] == STACK6
        sock.sendall(blob)
        sock.shutdown(vsocket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(100):
            answer += chunk
    assert answer.decode() == hashlib.sha256(blob).hexdigest()


def test_kernel_mode_resolves_aaaa_over_an_ipv6_dns_server(bed: TestBed) -> None:
    infos = vsocket.getaddrinfo("example.test", 80, vsocket.AF_INET6, vsocket.SOCK_STREAM)
    assert [i[4] for i in infos] == [(GATEWAY6, 80, 0, 0)]
