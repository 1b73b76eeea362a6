"""The network failures of fetch and ssh, against real misbehaving peers: one line on stderr
(what happened, what to do) and curl's or OpenSSH's exit status, never a traceback.

One test bed for the module: netd on its TAP, and in the namespace nginx (a 1 GiB sparse
file, so netd can be killed mid-body however fast the box), dnsmasq (example.test ->
10.0.2.2, every other name NXDOMAIN) and ``openssl s_server`` with a self-signed
certificate for example.test that nothing trusts.  Port 81 and 22 have no listener: the
kernel answers a SYN there with a RST.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.test_error_lines import one_line
from tests.http.peers import Nginx
from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, TestBed, require_binary, wait_for

pytestmark = pytest.mark.testbed
HUGE = 1 << 30


@dataclass
class Bed:
    bed: TestBed
    nginx: Nginx
    cert: Path  # the self-signed certificate s_server presents
    socket_path: str
    netd: subprocess.Popen[bytes] | None = None

    def start_netd(self) -> None:
        self.netd = self.bed.start([sys.executable, "-m", "vipernet.cli.main", "netd",
                                    "--link", f"tap:{self.bed.tap}", "--socket",
                                    self.socket_path], env=self.env)
        netd = self.netd
        wait_for(lambda: os.path.exists(self.socket_path) or netd.poll() is not None,
                 what="netd socket")
        assert netd.poll() is None, "netd exited at start"

    @property
    def env(self) -> dict[str, str]:
        env = cli_env(VIPERNET_SOCKET=self.socket_path)
        env.pop("VIPERNET_TRANSPORT", None)
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        return env

    def cli(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "vipernet.cli.main", *argv],
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def run(self, *argv: str) -> tuple[int, str]:
        """(exit status, the one stderr line)."""
        proc = self.cli(*argv)
        _out, err = proc.communicate(timeout=60)
        return proc.returncode, one_line(err)


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    cert, key = directory / "self.pem", directory / "self.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", f"/CN={name}", "-addext",
                    f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    nginx_bin = require_binary("nginx")
    openssl = require_binary("openssl")
    test_bed = TestBed("er")
    nginx = None
    try:
        nginx = Nginx(nginx_bin, GATEWAY, prefix=test_bed.ns_argv([]), port=80,
                      ready=test_bed.tcp_port_open)
        huge = nginx.www / "huge"
        with huge.open("wb") as f:
            f.truncate(HUGE)  # sparse: no time or disk spent making it
        os.chmod(huge, 0o644)
        test_bed.start_dnsmasq()
        cert, key = self_signed(test_bed.workdir, "example.test")
        test_bed.start([openssl, "s_server", "-accept", f"{GATEWAY}:4433", "-cert", str(cert),
                        "-key", str(key), "-www", "-quiet"], stdin=subprocess.DEVNULL)
        wait_for(lambda: test_bed.tcp_port_open(GATEWAY, 4433), what="openssl s_server")
        state = Bed(test_bed, nginx, cert, str(test_bed.workdir / "netd.sock"))
        state.start_netd()
        yield state
    finally:
        if nginx is not None:
            nginx.close()
        test_bed.close()


def test_fetch_of_a_refused_port_exits_7(bed: Bed) -> None:
    assert bed.run("fetch", f"http://{GATEWAY}:81/") == (
        7, f"vipernet fetch: http://{GATEWAY}:81/: cannot connect to {GATEWAY}:81: "
           "Connection refused")


def test_fetch_of_a_name_dnsmasq_says_is_nxdomain_exits_6(bed: Bed) -> None:
    status, line = bed.run("fetch", "http://nosuch.test/")
    assert status == 6
    assert line.startswith("vipernet fetch: http://nosuch.test/: cannot resolve 'nosuch.test'")
    assert "[Errno" not in line


def test_fetch_from_an_untrusted_self_signed_server_exits_60_and_says_what_to_do(
        bed: Bed) -> None:
    status, line = bed.run("fetch", "https://example.test:4433/")
    assert status == 60
    assert line.startswith("vipernet fetch: https://example.test:4433/: TLS handshake with "
                           "example.test failed: ")
    assert line.endswith("(--cacert FILE trusts the server's CA; -k skips the check)")


def test_fetch_under_the_wrong_host_name_exits_60(bed: Bed) -> None:
    status, line = bed.run("fetch", "--cacert", str(bed.cert), "--resolve",
                           f"wrong.test:4433:{GATEWAY}", "https://wrong.test:4433/")
    assert status == 60
    assert "hostname 'wrong.test' matches none of the certificate's DNS names " \
           "['example.test']" in line


def test_ssh_and_sftp_to_a_closed_port_exit_255(bed: Bed) -> None:
    assert bed.run("ssh", "-o", "StrictHostKeyChecking=no", f"root@{GATEWAY}", "true") == (
        255, f"vipernet ssh: connect to host {GATEWAY} port 22: Connection refused")
    assert bed.run("sftp", "-P", "81", f"root@{GATEWAY}") == (
        255, f"vipernet sftp: connect to host {GATEWAY} port 81: Connection refused")


def test_ssh_to_a_name_that_does_not_resolve_exits_255(bed: Bed) -> None:
    status, line = bed.run("ssh", "root@nosuch.test", "true")
    assert status == 255
    assert line.startswith("vipernet ssh: Could not resolve hostname nosuch.test: ")


def test_netd_killed_mid_download_exits_56_and_keeps_the_part_file(bed: Bed,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "huge"
    part = tmp_path / "huge.part"
    fetch = bed.cli("fetch", "--no-progress", f"http://{GATEWAY}/huge", "-o", str(out))
    try:
        wait_for(lambda: (part.exists() and part.stat().st_size > 1 << 20) or
                 fetch.poll() is not None, timeout=30, what="the download under way")
        assert bed.netd is not None
        os.kill(bed.netd.pid, signal.SIGKILL)
        _out, err = fetch.communicate(timeout=30)
    finally:
        if fetch.poll() is None:
            fetch.kill()
            fetch.communicate()
        if bed.netd is not None:
            bed.netd.wait(10)
        # A killed netd leaves its socket file; gone, start_netd sees the new one appear.
        Path(bed.socket_path).unlink(missing_ok=True)
        bed.start_netd()  # for the tests after this one
    line = one_line(err)
    assert fetch.returncode == 56  # curl: (56) Failure when receiving data from the peer
    received = part.stat().st_size
    assert 1 << 20 < received < HUGE and not out.exists()
    assert line == (f"vipernet fetch: http://{GATEWAY}/huge: lost the connection to netd "
                    "(stopped or killed?); start it again with 'vipernet netd'; partial "
                    f"download: {received} of {HUGE} bytes received; partial data left in "
                    f"{part}")
    with part.open("rb") as f:
        assert f.read(1 << 20) == bytes(1 << 20)  # what arrived is the file's beginning
