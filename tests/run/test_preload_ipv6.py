"""``vipernet run`` for non-Python programs over IPv6: the LD_PRELOAD library's AF_INET6
sockets and AAAA lookups, on an IPv6 test bed.

The bed is ``tests/netd/test_netd_ipv6_apps.py``'s: the kernel side of the TAP has
fd0a:2::2 and fd0a:2::3, dnsmasq sends Router Advertisements (netd takes a SLAAC address
in fd0a:2::/64) and answers ``example.test`` with A 10.0.2.2 (nothing listens there on
port 80) and AAAA fd0a:2::2 (nginx).  The peers are kernel ones inside the namespace:
nginx, UDP echo servers (IPv6 and IPv4), sshd, ``nc``.  Unmodified curl, nc, ssh and a
small C program (``tests/run/programs/udp6_probe.c``) run under ``vipernet run`` in the
host namespace, which has no route to fd0a:2::/64: they can only reach the peers through
netd.  As in ``test_preload.py``, each test also checks netd saw the traffic:
``fdlink.attached`` counts one descriptor per socket, ``stat`` lists the program's
sockets as ``ipv6`` ones, and the stack's ``ipv6.rx.delivered`` counter grows.  The
library is compiled from source here with ``-Wall -Wextra -Werror``, as ``make setup``
does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.http.peers import Nginx
from tests.netd_rig import cli_env, start_udp_echo
from tests.ssh.sshd import Sshd
from tests.testbed import (
    DNS_SERVER6,
    GATEWAY,
    GATEWAY6,
    STACK_IP,
    TestBed,
    require_binary,
    stop_process,
    wait_for,
)
from vipernet.cli.cmd_run import PRELOAD_ENV
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "vipernet" / "preload" / "vipernet_preload.c"
PROGRAMS = Path(__file__).resolve().parent / "programs"
SIZE = 20 * 1024 * 1024
NC6_STACK, NC6_DUAL = 18186, 18187
SMALL = b"small over IPv6\n"

UDP6_ECHO = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("fd0a:2::2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""


@dataclass
class Bed6:
    bed: TestBed
    path: str  # netd's IPC socket
    library: str
    digest: str  # sha256 of nginx's /file
    stack6: str  # netd's SLAAC address
    udp6_echo: int
    udp4_echo: int
    sshd: Sshd

    def env(self) -> dict[str, str]:
        env = cli_env(VIPERNET_SOCKET=self.path, **{PRELOAD_ENV: self.library})
        env.pop("VIPERNET_TRANSPORT", None)
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        return env

    def argv(self, *command: str) -> list[str]:
        return [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", self.path,
                "--", *command]

    def run(self, *command: str, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """``vipernet run -- COMMAND`` from the host namespace."""
        return subprocess.run(self.argv(*command), env=self.env(), capture_output=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def compile(self, name: str) -> str:
        """A C program of tests/run/programs, built here (warning-free)."""
        out = self.bed.workdir / name
        if not out.exists():
            build = subprocess.run([require_binary("cc"), "-std=c11", "-O2", "-Wall", "-Wextra",
                                    "-Werror", "-D_FORTIFY_SOURCE=2", "-o", str(out),
                                    str(PROGRAMS / f"{name}.c")],
                                   capture_output=True, text=True, timeout=120)
            assert build.returncode == 0 and not build.stderr, build.stderr
        return str(out)

    def info(self) -> dict[str, object]:
        with netclient.connect(self.path) as client:
            info: dict[str, object] = client.info()
            return info

    def attached(self) -> int:
        counters = self.info()["netd_counters"]
        assert isinstance(counters, dict)
        return int(counters.get("fdlink.attached", 0))

    def delivered6(self) -> int:
        counters = self.info()["counters"]
        assert isinstance(counters, dict)
        return int(counters.get("ipv6.rx.delivered", 0))

    def sockets(self) -> list[dict[str, object]]:
        with netclient.connect(self.path) as client:
            rows: list[dict[str, object]] = client.stat()["sockets"]
            return rows


def _slaac(path: str) -> str | None:
    with netclient.connect(path) as client:
        for entry in client.info()["ipv6"]["addresses"]:
            if entry["state"] == "preferred" and entry["origin"] == "slaac":
                return str(entry["address"])
    return None


@pytest.fixture(scope="module")
def six() -> Iterator[Bed6]:
    cc = require_binary("cc")
    nginx_bin = require_binary("nginx")
    bed = TestBed("pr6")
    servers: list[Nginx] = []
    sshd = None
    try:
        library = bed.workdir / "libvipernet_preload.so"
        build = subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC",
                                "-shared", "-o", str(library), str(SOURCE), "-ldl",
                                "-lpthread"], capture_output=True, text=True, timeout=120)
        assert build.returncode == 0 and not build.stderr, build.stderr  # warning-free
        bed.enable_ipv6()

        def ready(host: str, port: int) -> bool:
            return bed.tcp_port_open(f"[{host.strip('[]')}]", port)

        nginx = Nginx(nginx_bin, f"[{GATEWAY6}]", prefix=bed.ns_argv([]), port=80,
                      ready=ready)
        servers.append(nginx)
        data = os.urandom(SIZE)
        nginx.add_file("file", data)
        nginx.add_file("small", SMALL)
        sshd = Sshd(address=GATEWAY6, port=22, prefix=bed.ns_argv([]), ready=ready,
                    user_keys=("ed25519",))
        echo6 = bed.start([sys.executable, "-c", UDP6_ECHO], stdout=subprocess.PIPE)
        assert echo6.stdout is not None
        udp6_echo = int(echo6.stdout.readline())
        _echo4, udp4_echo = start_udp_echo(bed)
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        env.pop("VIPERNET_TRANSPORT", None)
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        with (bed.workdir / "netd.err").open("wb") as err:
            netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                              f"tap:{bed.tap}", "--socket", path, "--dns", DNS_SERVER6],
                             env=env, stderr=err)
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None, (bed.workdir / "netd.err").read_text()
        bed.start_router_advertisements()  # SLAAC for netd, and example.test's AAAA
        wait_for(lambda: _slaac(path) is not None, timeout=30, what="netd's SLAAC address")
        stack6 = _slaac(path)
        assert stack6 is not None
        yield Bed6(bed, path, str(library), hashlib.sha256(data).hexdigest(), stack6,
                   udp6_echo, udp4_echo, sshd)
        assert netd.poll() is None, (bed.workdir / "netd.err").read_text()
    finally:
        if sshd is not None:
            sshd.stop()
        for server in servers:
            server.close()
        bed.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_curl_downloads_from_an_ipv6_literal_sha256_equal(six: Bed6) -> None:
    require_binary("curl")
    out = six.bed.workdir / "curl6.out"
    before, delivered = six.attached(), six.delivered6()
    result = six.run("curl", "-g", "-sS", "-o", str(out), f"http://[{GATEWAY6}]/file")
    assert result.returncode == 0, result.stderr
    assert _sha(out) == six.digest
    assert six.attached() == before + 1  # the one connection, through netd's fd plane
    # 20 MB of IPv6 segments came in through netd's stack (the host has no route there):
    # at least one per 64 KiB, the largest frame the TAP hands over (GRO).
    assert six.delivered6() - delivered >= SIZE // 65536


def test_curl_6_resolves_the_aaaa_record_through_netd(six: Bed6) -> None:
    require_binary("curl")
    before = six.attached()
    result = six.run("curl", "-6", "-sS", "http://example.test/small")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SMALL
    # The connection, and the UDP AF_INET6 socket curl opens first to see that IPv6
    # works (netd's too, like every AF_INET6 socket now).
    assert six.attached() - before in (1, 2)


def test_curl_without_a_family_takes_netd_s_ipv6_first_answer(six: Bed6) -> None:
    """example.test's A record (10.0.2.2) has nothing on port 80: only its AAAA (netd's
    first answer: the stack has an IPv6 source address) gives the page."""
    require_binary("curl")
    result = six.run("curl", "-sS", "-w", "%{remote_ip}", "http://example.test/small")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SMALL + GATEWAY6.encode()


def test_nc_u_exchanges_datagrams_with_a_kernel_ipv6_udp_echo(six: Bed6) -> None:
    nc = require_binary("nc")
    lines = [os.urandom(700).hex().encode() + b"\n" for _ in range(10)]  # 1401 bytes each
    before = six.attached()
    client = subprocess.Popen(six.argv(nc, "-6", "-u", GATEWAY6, str(six.udp6_echo)),
                              env=six.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert client.stdin is not None and client.stdout is not None
        echoed = []
        for line in lines:  # one at a time: each its own datagram, answered in turn
            client.stdin.write(line)
            client.stdin.flush()
            echoed.append(client.stdout.readline())
        assert echoed == lines
        assert six.attached() == before + 1  # one UDP descriptor, through netd
        rows = [r for r in six.sockets() if r["pid"] == client.pid]
        assert [(r["kind"], r["family"], r["remote"]) for r in rows] == [
            ("udp", "ipv6", f"[{GATEWAY6}]:{six.udp6_echo}")]
    finally:
        stop_process(client)
        for stream in (client.stdin, client.stdout, client.stderr):
            if stream is not None:
                stream.close()


def test_a_c_program_sees_ipv6_udp_names_and_options_as_on_linux(six: Bed6) -> None:
    probe = six.compile("udp6_probe")
    closed = 9  # nothing listens on discard: the kernel answers port unreachable
    before = six.attached()
    result = six.run(probe, GATEWAY6, str(six.udp6_echo), GATEWAY, str(six.udp4_echo),
                     str(closed), "example.test", timeout=90)
    lines = result.stdout.decode().splitlines()
    assert [line for line in lines if not line.startswith("ok ")] == [], result.stderr
    assert result.returncode == 0, result.stderr
    assert {line.split()[1] for line in lines} >= {
        "so_domain", "v6only_default", "v6only_after_bind", "getsockname",
        "boundaries_and_sources", "emsgsize", "mapped_ipv4", "sockaddr_in_on_inet6",
        "mapped_emsgsize", "getpeername", "connected_echo", "econnrefused", "v6only_on_inet",
        "tcp6", "tcp6_refuses_sockaddr_in", "ping6_refused", "gai_inet6", "gai_unspec",
        "gai_inet", "gai_v4_literal_inet6", "gai_v4mapped", "gai_v6_literal_inet",
        "gai_passive6", "gai_zone", "gethostbyname2", "getnameinfo"}
    assert six.attached() - before >= 4  # the UDP sockets and the TCP one, netd's


def _serve_nc_l(six: Bed6, port: int, sink: Path, *flags: str) -> subprocess.Popen[bytes]:
    """``nc -l PORT`` in the stack, what it receives written to ``sink`` (a file: a pipe
    left unread would stall the connection)."""
    nc = require_binary("nc")
    with sink.open("wb") as out:
        server = subprocess.Popen(six.argv(nc, *flags, "-l", str(port)), env=six.env(),
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.PIPE)
    wait_for(lambda: any(r["kind"] == "tcp" and r["family"] == "ipv6" and
                         str(r["local"]).endswith(f"]:{port}") for r in six.sockets()),
             what="nc -l listening on [::] in the stack")
    return server


def test_nc_6_listens_in_the_stack_and_receives_from_a_kernel_ipv6_client(
        six: Bed6) -> None:
    nc = require_binary("nc")
    data = os.urandom(8 << 20)
    received = six.bed.workdir / "nc6.out"
    server = _serve_nc_l(six, NC6_STACK, received, "-6")
    try:
        client = subprocess.run(six.bed.ns_argv([nc, "-N", six.stack6, str(NC6_STACK)]),
                                input=data, capture_output=True, timeout=60)
        assert client.returncode == 0, client.stderr
        server.communicate(timeout=60)
        assert _sha(received) == hashlib.sha256(data).hexdigest()
    finally:
        stop_process(server)


def test_a_dual_stack_listener_accepts_a_kernel_ipv4_client(six: Bed6) -> None:
    """``nc -6 -l`` binds [::]: an IPv4 client of the stack's 10.0.2.15 reaches it too
    (Linux's default, bindv6only 0), its peer reported as ::ffff:10.0.2.2."""
    nc = require_binary("nc")
    received = six.bed.workdir / "nc6dual.out"
    server = _serve_nc_l(six, NC6_DUAL, received, "-6", "-v")
    try:
        client = subprocess.run(six.bed.ns_argv([nc, "-N", STACK_IP, str(NC6_DUAL)]),
                                input=b"over IPv4\n", capture_output=True, timeout=60)
        assert client.returncode == 0, client.stderr
        _out, err = server.communicate(timeout=60)
        assert received.read_bytes() == b"over IPv4\n"
        assert f"::ffff:{GATEWAY}".encode() in err  # nc -v names the peer it accepted
    finally:
        stop_process(server)


def test_ssh_runs_a_command_on_a_kernel_sshd_over_ipv6(six: Bed6) -> None:
    ssh = require_binary("ssh")
    data = os.urandom(1 << 20)
    before = six.attached()
    result = six.run(ssh, "-6", "-i", str(six.sshd.user_keys["ed25519"]),
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", f"root@{GATEWAY6}",
                     "echo $SSH_CONNECTION; sha256sum", input=data)
    assert result.returncode == 0, result.stderr
    peer, digest = result.stdout.decode().splitlines()
    assert peer.split()[0] == six.stack6  # sshd saw the stack's SLAAC address
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()
    assert six.attached() == before + 1
