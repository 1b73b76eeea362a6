"""netd with IPv6 on a real TAP: SLAAC from dnsmasq's RAs, pings both ways, GET_INFO,
AF_INET6 sockets, AAAA lookups and Happy Eyeballs.

netd runs with its default ``--ip6 auto`` and ``--dns fd0a:2::3``; the kernel side has
IPv6 on (fd0a:2::2, ::3) and dnsmasq advertises fd0a:2::/64 with RDNSS and answers
example.test with 10.0.2.2 and fd0a:2::2.  The CLI (``vipernet ping -6``, ``vipernet info
--json``, ``vipernet dig -t AAAA``) goes through NET_PING6, GET_INFO and
NET_DNS_RESOLVE_ALL; ``vipernet.socket`` AF_INET6 sockets through the address6 layouts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from tests.netd_rig import cli_env, vipernet_cli
from tests.testbed import DNS_SERVER6, GATEWAY6, PREFIX6, TestBed, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import client as netclient
from vipernet.netclient import default as default_module
from vipernet.netd import protocol as p

pytestmark = pytest.mark.testbed

PREFIX = IPv6Network(f"{PREFIX6}/64")


@dataclass
class Netd6:
    bed: TestBed
    path: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return vipernet_cli(*argv, env=self.env, timeout=60)

    def ipv6(self) -> dict[str, Any]:
        with netclient.connect(self.path) as client:
            info: dict[str, Any] = client.info()["ipv6"]
            return info

    def address(self, where: IPv6Network | None) -> IPv6Address | None:
        for entry in self.ipv6()["addresses"]:
            address = IPv6Address(entry["address"])
            if entry["state"] != "preferred":
                continue
            if (where is None and address.is_link_local) or (where and address in where):
                return address
        return None


@pytest.fixture(scope="module")
def netd6() -> Iterator[Netd6]:
    bed = TestBed("n6")
    try:
        bed.enable_ipv6()
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        # The resolver's server is dnsmasq's IPv6 address: DNS reached over IPv6.
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path, "--dns", DNS_SERVER6], env=env,
                         stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
        bed.start_router_advertisements()
        rig = Netd6(bed, path, env, proc)
        wait_for(lambda: rig.address(PREFIX) is not None and rig.address(None) is not None,
                 timeout=30, what="netd's SLAAC address")
        yield rig
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
    finally:
        bed.close()


def test_get_info_reports_addresses_router_prefix_and_rdnss(netd6: Netd6) -> None:
    info = netd6.ipv6()
    assert info["mode"] == "auto" and info["enabled"]
    origins = {e["origin"] for e in info["addresses"] if e["state"] == "preferred"}
    assert origins == {"link-local", "slaac"}
    assert str(PREFIX) in info["prefixes"]
    assert len(info["routers"]) == 1 and IPv6Address(info["routers"][0]).is_link_local
    assert info["dns"] == [DNS_SERVER6]
    assert "ff02::1" in info["groups"]


def test_kernel_pings_netd_over_ipv6_and_learns_its_mac(netd6: Netd6) -> None:
    target = str(netd6.address(PREFIX))
    out = netd6.bed.ns(["ping", "-6", "-n", "-c", "5", "-i", "0.1", "-W", "2", "-s", "8000",
                        target], check=False).stdout
    assert "5 packets transmitted, 5 received" in out, out
    neigh = netd6.bed.ns(["ip", "-6", "neigh", "show", target]).stdout
    assert "52:54:00:12:34:56" in neigh, neigh


def test_vipernet_ping_6_reaches_the_kernel(netd6: Netd6) -> None:
    result = netd6.cli("ping", "-6", "-c", "3", "-i", "0.2", "-s", "2000", GATEWAY6)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"2008 bytes from {GATEWAY6}: icmp_seq=") == 3, result.stdout
    assert "3 packets transmitted, 3 received" in result.stdout


def test_vipernet_ping_6_to_a_silent_address_reports_unreachable(netd6: Netd6) -> None:
    result = netd6.cli("ping", "-c", "1", "-W", "5", f"{PREFIX6}99")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Destination Host Unreachable" in result.stdout, result.stdout


def test_ping6_request_with_a_truncated_address_is_einval(netd6: Netd6) -> None:
    with netclient.connect(netd6.path) as client:
        with pytest.raises(OSError) as caught:
            client._call(p.Code.PING6, p.Empty(), 2.0)
        assert caught.value.errno == 22
        assert client.ping6(GATEWAY6, 1, b"x", 3.0).source == GATEWAY6  # channel intact


def test_vipernet_info_json_carries_ipv6(netd6: Netd6) -> None:
    result = netd6.cli("info", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ipv6"]["dns"] == [DNS_SERVER6]


KERNEL_TCP_SERVER = """
import hashlib, random, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
while True:
    conn, peer = srv.accept()
    mode = conn.recv(1)
    if mode == b"u":  # upload: read to EOF, answer the sha256
        h = hashlib.sha256()
        while chunk := conn.recv(1 << 16):
            h.update(chunk)
        conn.sendall(h.hexdigest().encode())
    else:  # download: 4 MB from a seeded generator
        conn.sendall(random.Random(7).randbytes(4 << 20))
    conn.close()
"""


def _kernel_server(netd6: Netd6, host: str) -> int:
    proc = netd6.bed.start([sys.executable, "-c", KERNEL_TCP_SERVER, host],
                           stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def _recv_all(sock: vsocket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def test_an_af_inet6_tcp_socket_through_netd_carries_4_mb_each_way(netd6: Netd6) -> None:
    port = _kernel_server(netd6, GATEWAY6)
    ours = str(netd6.address(PREFIX))
    with netclient.connect(netd6.path) as client:
        blob = random.Random(3).randbytes(4 << 20)
        with vsocket.socket(vsocket.AF_INET6, vsocket.SOCK_STREAM, client=client) as sock:
            sock.settimeout(30)
            sock.connect((GATEWAY6, port))
            assert sock.getpeername() == (GATEWAY6, port, 0, 0)
            assert sock.getsockname()[0] == ours
            sock.sendall(b"u" + blob)
            sock.shutdown(vsocket.SHUT_WR)
            assert _recv_all(sock).decode() == hashlib.sha256(blob).hexdigest()
        with vsocket.socket(vsocket.AF_INET6, vsocket.SOCK_STREAM, client=client) as sock:
            sock.settimeout(30)
            sock.connect((GATEWAY6, port))
            sock.sendall(b"d")
            got = _recv_all(sock)
        assert hashlib.sha256(got).digest() == hashlib.sha256(
            random.Random(7).randbytes(4 << 20)).digest()


UDP6_ECHO = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("fd0a:2::2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
"""


def test_an_af_inet6_udp_socket_through_netd_exchanges_8k_datagrams(netd6: Netd6) -> None:
    proc = netd6.bed.start([sys.executable, "-c", UDP6_ECHO], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    with netclient.connect(netd6.path) as client, vsocket.socket(
            vsocket.AF_INET6, vsocket.SOCK_DGRAM, client=client) as sock:
        sock.settimeout(5)
        for size in (1, 1232, 8192, 30000):
            data = random.randbytes(size)
            sock.sendto(data, (GATEWAY6, port))
            back, source = sock.recvfrom(65536)
            assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), size
            assert source == (GATEWAY6, port, 0, 0)
        assert sock.getsockname()[0] == "::"


KERNEL_CLIENTS = """
import socket, sys
for host in (sys.argv[1], "10.0.2.15"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_connection((host, int(sys.argv[2])), timeout=10) as s:
        s.sendall(host.encode())
        s.shutdown(socket.SHUT_WR)
        print(s.recv(100).decode(), flush=True)
"""


def test_a_dual_stack_listener_through_netd_accepts_ipv6_and_ipv4_clients(
        netd6: Netd6) -> None:
    ours = str(netd6.address(PREFIX))
    with netclient.connect(netd6.path) as client, vsocket.socket(
            vsocket.AF_INET6, vsocket.SOCK_STREAM, client=client) as listener:
        listener.bind(("::", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        assert listener.getsockname() == ("::", port, 0, 0)
        kernel = subprocess.Popen(netd6.bed.ns_argv([sys.executable, "-c", KERNEL_CLIENTS, ours,
                                                     str(port)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peers = []
        try:
            for _ in range(2):
                listener.settimeout(20)
                conn, peer = listener.accept()
                with conn:
                    conn.settimeout(10)
                    said = _recv_all(conn).decode()
                    conn.sendall(f"{said} as {peer[0]}".encode())
                peers.append(peer)
            out, err = kernel.communicate(timeout=30)
        finally:
            kernel.kill()
            kernel.wait()
        # The kernel picks fd0a:2::2 or ::3 as its source; either is on the link's prefix.
        lines = out.split("\n")
        assert lines[0].startswith(f"{ours} as "), err
        assert IPv6Address(lines[0].split(" as ")[1]) in {IPv6Address(GATEWAY6),
                                                          IPv6Address(DNS_SERVER6)}
        assert lines[1] == "10.0.2.15 as ::ffff:10.0.2.2", err
        assert all(len(p) == 4 for p in peers)


def test_ipv6_v6only_is_refused_on_an_af_inet_socket_through_netd(netd6: Netd6) -> None:
    with netclient.connect(netd6.path) as client:
        with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_STREAM, client=client) as sock:
            with pytest.raises(OSError) as caught:
                sock.setsockopt(vsocket.IPPROTO_IPV6, vsocket.IPV6_V6ONLY, 1)
            assert caught.value.errno == errno.ENOPROTOOPT
        with vsocket.socket(vsocket.AF_INET6, vsocket.SOCK_DGRAM, client=client) as sock:
            sock.setsockopt(vsocket.IPPROTO_IPV6, vsocket.IPV6_V6ONLY, 1)
            sock.settimeout(5)
            # Through the descriptor a datagram's error comes back on the next call.
            sock.sendto(b"x", ("::ffff:10.0.2.2", 9))
            with pytest.raises(OSError) as caught:
                sock.recvfrom(100)
            assert caught.value.errno == errno.ENETUNREACH


def test_resolve_all_over_an_ipv6_server_gives_aaaa_first_and_a(netd6: Netd6) -> None:
    with netclient.connect(netd6.path) as client:
        assert client.resolve_all("example.test") == [GATEWAY6, "10.0.2.2"]
        assert client.resolve_all("example.test", p.WANT_AAAA) == [GATEWAY6]
        assert client.resolve("example.test") == ["10.0.2.2"]  # the spec's code: A only
        with pytest.raises(OSError) as caught:
            client.resolve_all("absent.test")
        assert caught.value.errno == errno.ENOENT
        with pytest.raises(OSError) as caught:
            client._call(p.Code.DNS_RESOLVE_ALL, p.ResolveAllRequest(
                timeout_ms=1000, families=0x04, hostname="example.test"), 2.0)
        assert caught.value.errno == errno.EINVAL
    result = netd6.cli("dig", "-t", "AAAA", "example.test")
    assert result.returncode == 0, result.stderr
    assert f"example.test.\t\tIN\tAAAA\t{GATEWAY6}" in result.stdout, result.stdout
    short = netd6.cli("dig", "example.test", "AAAA", "+short")
    assert short.stdout.split() == [GATEWAY6], short.stdout + short.stderr


def test_getaddrinfo_and_create_connection_race_ipv6_then_fall_back_to_ipv4(
        netd6: Netd6, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vipernet.socket.create_connection`` with Happy Eyeballs v2 (RFC 8305)."""
    monkeypatch.setenv("VIPERNET_SOCKET", netd6.path)
    default_module.reset_default_client()
    try:
        _race_through_the_default_client(netd6)
    finally:
        default_module.reset_default_client()


def _race_through_the_default_client(netd6: Netd6) -> None:
    infos = vsocket.getaddrinfo("example.test", 80, type=vsocket.SOCK_STREAM)
    assert [(i[0], i[4]) for i in infos] == [(vsocket.AF_INET6, (GATEWAY6, 80, 0, 0)),
                                             (vsocket.AF_INET, ("10.0.2.2", 80))]
    # A server on both families: the IPv6 attempt, first, wins.
    both = _kernel_server(netd6, "::")
    with vsocket.create_connection(("example.test", both), timeout=10) as sock:
        assert sock.family == vsocket.AF_INET6
        assert sock.getpeername()[:2] == (GATEWAY6, both)
        sock.sendall(b"d")
        assert len(_recv_all(sock)) == 4 << 20
    # A server on IPv4 only: the IPv6 attempt is refused and the race goes on to IPv4.
    only4 = _kernel_server(netd6, "10.0.2.2")
    started = time.monotonic()
    with vsocket.create_connection(("example.test", only4), timeout=10) as sock:
        assert sock.family == vsocket.AF_INET
        assert sock.getpeername() == ("10.0.2.2", only4)
    assert time.monotonic() - started < 5
