"""``vipernet ssh`` / ``vipernet sftp`` over the vipernet stack: netd on a TAP, sshd at
10.0.2.2 inside the test namespace.  Every byte crosses our TCP/IP stack."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ssh.sshd import Sshd
from tests.testbed import GATEWAY, TestBed, wait_for

pytestmark = pytest.mark.testbed
SRC = str(Path(__file__).resolve().parents[2] / "src")
SIZE = 50 * 1024 * 1024


@dataclass
class StackBed:
    bed: TestBed
    sshd: Sshd
    env: dict[str, str]

    def cli(self, command: str, port_flag: str, *argv: str, timeout: float = 300,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "vipernet.cli.main", command, port_flag, "22", "-i",
             str(self.sshd.user_keys["ed25519"]), "-o", "StrictHostKeyChecking=accept-new",
             "-o", f"UserKnownHostsFile={self.bed.workdir / 'kh'}", *argv],
            env=self.env, capture_output=True, timeout=timeout, input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL)


@pytest.fixture(scope="module")
def stack_bed() -> Iterator[StackBed]:
    bed = TestBed("ssh")
    sshd = None
    try:
        sshd = Sshd(address=GATEWAY, port=22, prefix=bed.ns_argv([]), ready=bed.tcp_port_open,
                    user_keys=("ed25519",))
        path = str(bed.workdir / "netd.sock")
        env = {**os.environ, "PYTHONPATH": SRC, "VIPERNET_SOCKET": path}
        env.pop("VIPERNET_TRANSPORT", None)
        err = open(bed.workdir / "netd.err", "wb")  # noqa: SIM115
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env, stderr=err)
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        if proc.poll() is not None:
            pytest.fail(f"netd exited: {(bed.workdir / 'netd.err').read_text()}")
        yield StackBed(bed, sshd, env)
    finally:
        if sshd is not None:
            sshd.stop()
        bed.close()


def test_vipernet_ssh_through_netd_runs_a_command_with_status_and_stderr(
        stack_bed: StackBed) -> None:
    r = stack_bed.cli("ssh", "-p", f"root@{GATEWAY}",
                      "echo over-the-stack; echo err >&2; exit 4", timeout=120)
    assert r.returncode == 4, r.stderr.decode(errors="replace")
    assert (r.stdout, r.stderr) == (b"over-the-stack\n", b"err\n")


def test_vipernet_sftp_through_netd_moves_50_mb_each_way_sha256_equal(
        stack_bed: StackBed, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    remote = stack_bed.sshd.dir / "remote.bin"
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} {remote}\nget {remote} {back}\nrm {remote}\n")
    r = stack_bed.cli("sftp", "-P", "-b", str(batch), f"root@{GATEWAY}")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    digest = hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert not remote.exists()
    local.unlink()
    back.unlink()
