"""``vipernet fetch`` over the vipernet stack: netd on a TAP, nginx at 10.0.2.2 in the namespace.

The bytes cross our TCP/IP stack end to end (netd <-> TAP <-> the namespace's kernel <->
nginx); the download is checked by sha256 and keep-alive by the client's counters.
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

from tests.http.certs import make_ca_and_server
from tests.http.peers import Nginx
from tests.testbed import GATEWAY, TestBed, require_binary, wait_for
from tests.tls.netd_bed import start_netd

pytestmark = pytest.mark.testbed
SIZE = 50 * 1024 * 1024


@dataclass
class StackBed:
    bed: TestBed
    nginx: Nginx
    env: dict[str, str]
    digest: str
    ca: Path

    def fetch(self, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "vipernet.cli.main", "fetch", *argv],
                              env=self.env, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack_bed() -> Iterator[StackBed]:
    nginx_bin = require_binary("nginx")
    openssl = require_binary("openssl")
    bed = TestBed("http")
    nginx = None
    try:
        nginx = Nginx(nginx_bin, GATEWAY, prefix=bed.ns_argv([]), port=80,
                      ready=bed.tcp_port_open, log_requests=True)
        data = os.urandom(SIZE)
        nginx.add_file("file", data)
        nginx.add_file("small", b"small over the stack\n")
        bed.start_dnsmasq()  # example.test -> 10.0.2.2, every other name NXDOMAIN
        ca, cert, key = make_ca_and_server(bed.workdir, "example.test")
        www = bed.workdir / "tls-www"
        www.mkdir()
        (www / "hello.txt").write_bytes(b"hello over vipernet TCP and vipernet TLS\n")
        bed.start([openssl, "s_server", "-accept", f"{GATEWAY}:4433", "-cert", str(cert),
                   "-key", str(key), "-tls1_3", "-WWW", "-quiet"], cwd=str(www),
                  stdin=subprocess.DEVNULL)
        # And one with -www, which answers any GET with a page describing the session.
        bed.start([openssl, "s_server", "-accept", f"{GATEWAY}:4434", "-cert", str(cert),
                   "-key", str(key), "-tls1_3", "-www", "-quiet"], cwd=str(www),
                  stdin=subprocess.DEVNULL)
        wait_for(lambda: bed.tcp_port_open(GATEWAY, 4433), what="openssl s_server -WWW")
        wait_for(lambda: bed.tcp_port_open(GATEWAY, 4434), what="openssl s_server -www")
        env = start_netd(bed)
        yield StackBed(bed, nginx, env, hashlib.sha256(data).hexdigest(), ca)
    finally:
        if nginx is not None:
            nginx.close()
        bed.close()


def test_fetch_of_50_mb_through_netd_is_sha256_equal(stack_bed: StackBed,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = stack_bed.fetch(f"http://{GATEWAY}/file", "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == stack_bed.digest


def test_sequential_requests_through_netd_reuse_one_tcp_connection(
        stack_bed: StackBed) -> None:
    url = f"http://{GATEWAY}/small"
    proc = stack_bed.fetch("-v", url, url, url)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == b"small over the stack\n" * 3
    assert b"connections opened 1, reused 2" in proc.stderr
    # nginx agrees: the three requests arrived over one and the same TCP connection.
    served = stack_bed.nginx.requests()[-3:]
    assert [request for _, request in served] == ["GET /small HTTP/1.1"] * 3
    assert len({connection for connection, _ in served}) == 1


def test_https_through_netd_to_openssl_s_server_with_a_test_ca(stack_bed: StackBed) -> None:
    proc = stack_bed.fetch("--cacert", str(stack_bed.ca), "--resolve",
                           f"example.test:4433:{GATEWAY}", "https://example.test:4433/hello.txt")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == b"hello over vipernet TCP and vipernet TLS\n"


def test_https_through_netd_to_openssl_s_server_www_reports_a_tls13_session(
        stack_bed: StackBed) -> None:
    proc = stack_bed.fetch("--cacert", str(stack_bed.ca), "--resolve",
                           f"example.test:4434:{GATEWAY}", "https://example.test:4434/")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # s_server's own account of the session it served us.
    assert b"New, TLSv1.3, Cipher is TLS_" in proc.stdout, proc.stdout[-2000:]


def test_names_resolve_through_netd_dns_and_unknown_names_exit_6(stack_bed: StackBed) -> None:
    ok = stack_bed.fetch("http://example.test/small")
    assert ok.returncode == 0, ok.stderr.decode(errors="replace")
    assert ok.stdout == b"small over the stack\n"
    missing = stack_bed.fetch("http://no-such-name.invalid/")
    assert missing.returncode == 6, missing.stderr.decode(errors="replace")
    assert missing.stdout == b""
