"""The applications over IPv6 through netd: ``vipernet fetch`` from nginx (http and https
to an IPv6 literal, and to a name with an AAAA record) and ``vipernet ssh`` / ``sftp`` to
sshd on an IPv6 address, with the kernel's IPv6 on the test bed's TAP; names resolve
through the RDNSS server the Router Advertisements announce.

Every byte crosses our IPv6 and TCP (netd <-> TAP <-> the namespace's kernel <-> the
server); downloads and uploads are checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.http.certs import make_ca_and_server
from tests.http.peers import Nginx
from tests.netd_rig import cli_env
from tests.ssh.sshd import Sshd
from tests.testbed import GATEWAY6, TestBed, require_binary, wait_for
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed
SIZE = 20 * 1024 * 1024


@dataclass
class AppBed:
    bed: TestBed
    nginx: Nginx
    nginx_tls: Nginx
    sshd: Sshd
    env: dict[str, str]
    digest: str
    ca: Path

    def cli(self, *argv: str, timeout: float = 240,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "vipernet.cli.main", *argv],
                              env=self.env, capture_output=True, timeout=timeout, input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def ssh_cli(self, command: str, port_flag: str, *argv: str,
                timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        return self.cli(command, port_flag, "22", "-i", str(self.sshd.user_keys["ed25519"]),
                        "-o", "StrictHostKeyChecking=accept-new",
                        "-o", f"UserKnownHostsFile={self.bed.workdir / 'kh'}", *argv,
                        timeout=timeout)


def _listening(bed: TestBed) -> Callable[[str, int], bool]:
    """A ready(host, port) probe for a server on an IPv6 address inside the namespace."""
    return lambda host, port: bed.tcp_port_open(f"[{host.strip('[]')}]", port)


@pytest.fixture(scope="module")
def app_bed() -> Iterator[AppBed]:
    nginx_bin = require_binary("nginx")
    bed = TestBed("ap6")
    servers: list[Nginx] = []
    sshd = None
    try:
        bed.enable_ipv6()
        ready = _listening(bed)
        nginx = Nginx(nginx_bin, f"[{GATEWAY6}]", prefix=bed.ns_argv([]), port=80,
                      ready=ready)
        servers.append(nginx)
        data = os.urandom(SIZE)
        nginx.add_file("file", data)
        nginx.add_file("small", b"small over IPv6\n")
        ca, cert, key = make_ca_and_server(bed.workdir, "example.test",
                                           ip_addresses=[GATEWAY6])
        nginx_tls = Nginx(nginx_bin, f"[{GATEWAY6}]", prefix=bed.ns_argv([]), port=443,
                          ready=ready, tls=(cert, key))
        servers.append(nginx_tls)
        nginx_tls.add_file("file", data)
        sshd = Sshd(address=GATEWAY6, port=22, prefix=bed.ns_argv([]),
                    ready=ready, user_keys=("ed25519",))
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        env.pop("VIPERNET_TRANSPORT", None)
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        with (bed.workdir / "netd.err").open("wb") as err:
            # No --dns: the default 10.0.2.3 has no server here (port unreachable), so
            # names resolve through the RDNSS server the RAs announce (fd0a:2::3).
            proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                              f"tap:{bed.tap}", "--socket", path], env=env, stderr=err)
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
        bed.start_router_advertisements()  # SLAAC for netd, and example.test's AAAA

        def has_global() -> bool:
            with netclient.connect(path) as client:
                return any(e["state"] == "preferred" and e["origin"] == "slaac"
                           for e in client.info()["ipv6"]["addresses"])

        wait_for(has_global, timeout=30, what="netd's SLAAC address")
        yield AppBed(bed, nginx, nginx_tls, sshd, env, hashlib.sha256(data).hexdigest(), ca)
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
    finally:
        if sshd is not None:
            sshd.stop()
        for server in servers:
            server.close()
        bed.close()


def test_fetch_over_ipv6_from_nginx_by_literal_is_sha256_equal(app_bed: AppBed,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = app_bed.cli("fetch", f"http://[{GATEWAY6}]/file", "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == app_bed.digest


def test_fetch_https_over_ipv6_verifies_the_ip_address_in_the_certificate(
        app_bed: AppBed, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = app_bed.cli("fetch", "--cacert", str(app_bed.ca), f"https://[{GATEWAY6}]/file",
                       "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == app_bed.digest


def test_fetch_of_a_name_with_aaaa_and_a_goes_over_ipv6(app_bed: AppBed) -> None:
    # example.test has A 10.0.2.2 (nothing listens on it) and AAAA fd0a:2::2 (nginx):
    # the answer can only come over IPv6.
    proc = app_bed.cli("fetch", "http://example.test/small")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == b"small over IPv6\n"


def test_vipernet_ssh_over_ipv6_runs_a_command(app_bed: AppBed) -> None:
    for destination in (f"root@{GATEWAY6}", f"root@[{GATEWAY6}]"):
        r = app_bed.ssh_cli("ssh", "-p", destination, "echo over-ipv6; exit 3", timeout=120)
        assert r.returncode == 3, r.stderr.decode(errors="replace")
        assert r.stdout == b"over-ipv6\n"


def test_vipernet_sftp_over_ipv6_moves_20_mb_each_way_sha256_equal(app_bed: AppBed,
                                                                    tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    remote = app_bed.sshd.dir / "remote6.bin"
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} {remote}\nget {remote} {back}\nrm {remote}\n")
    r = app_bed.ssh_cli("sftp", "-P", "-b", str(batch), f"root@{GATEWAY6}")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not remote.exists()


RUN_PROGRAM = """
import socket, urllib.request
body = urllib.request.urlopen("http://[fd0a:2::2]/small", timeout=30).read()
with socket.create_connection(("example.test", 80), timeout=30) as s:
    family = s.family.name
    s.sendall(b"GET /small HTTP/1.0\\r\\nHost: example.test\\r\\n\\r\\n")
    reply = s.makefile("rb").read()
families = sorted({i[0].name for i in socket.getaddrinfo("example.test", 80)})
print(body.decode().strip(), family, reply.endswith(b"small over IPv6\\n"), *families)
"""


def _delivered6(app_bed: AppBed) -> int:
    with netclient.connect(app_bed.env["VIPERNET_SOCKET"]) as client:
        return int(client.info()["counters"].get("ipv6.rx.delivered", 0))


def test_vipernet_run_routes_an_unmodified_python_programs_ipv6(app_bed: AppBed) -> None:
    before = _delivered6(app_bed)
    r = app_bed.cli("run", "--", sys.executable, "-c", RUN_PROGRAM, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout.decode().split() == ["small", "over", "IPv6", "AF_INET6", "True",
                                         "AF_INET", "AF_INET6"]
    # The packets went through netd's stack, not the host's IPv6 (which has no route to
    # the namespace anyway): two connections' worth of segments and the DNS answers.
    assert _delivered6(app_bed) - before >= 8
