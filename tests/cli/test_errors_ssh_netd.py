"""``vipernet ssh`` and ``vipernet sftp`` when netd dies under a live session: one line
saying netd is gone (not that the server hung up) and OpenSSH's status 255.

Over netd's fd data plane the session's socket just reaches EOF, as it would if sshd
closed it; the CLI asks netd's socket to tell the two apart.  sshd runs in the test
namespace at 10.0.2.2; netd sits on the bed's TAP and is SIGKILLed mid-session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_error_lines import one_line
from tests.netd_rig import cli_env
from tests.ssh.sshd import Sshd
from tests.testbed import GATEWAY, TestBed, wait_for
from vipernet.cli.netd_common import NETD_LOST

pytestmark = pytest.mark.testbed


class Bed:
    def __init__(self) -> None:
        self.bed = TestBed("sl")
        self.sshd: Sshd | None = None
        try:
            self.sshd = Sshd(address=GATEWAY, port=22, prefix=self.bed.ns_argv([]),
                             ready=self.bed.tcp_port_open, user_keys=("ed25519",))
        except BaseException:
            self.bed.close()
            raise
        self.socket_path = str(self.bed.workdir / "netd.sock")
        self.env = cli_env(VIPERNET_SOCKET=self.socket_path)
        self.env.pop("VIPERNET_TRANSPORT", None)
        self.env.pop("VIPER_KERNEL_ENABLE_NET", None)
        self.netd: subprocess.Popen[bytes] | None = None

    def start_netd(self) -> subprocess.Popen[bytes]:
        with_socket = Path(self.socket_path)
        with_socket.unlink(missing_ok=True)
        netd = self.bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                               f"tap:{self.bed.tap}", "--socket", self.socket_path],
                              env=self.env)
        wait_for(lambda: with_socket.exists() or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None, "netd exited at start"
        self.netd = netd
        return netd

    def ssh_argv(self, command: str, *argv: str) -> list[str]:
        assert self.sshd is not None
        port_flag = "-P" if command == "sftp" else "-p"
        return [sys.executable, "-m", "vipernet.cli.main", command, port_flag, "22", "-i",
                str(self.sshd.user_keys["ed25519"]), "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.bed.workdir / 'kh'}", *argv]

    def close(self) -> None:
        if self.sshd is not None:
            self.sshd.stop()
        self.bed.close()


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    state = Bed()
    try:
        yield state
    finally:
        state.close()


def _kill_netd_once_started(bed: Bed, proc: subprocess.Popen[str]) -> tuple[int, str]:
    assert proc.stdout is not None and bed.netd is not None
    assert proc.stdout.readline() == "started\n"
    os.kill(bed.netd.pid, signal.SIGKILL)
    bed.netd.wait()
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ssh_says_netd_is_gone_when_it_dies_mid_session(bed: Bed) -> None:
    bed.start_netd()
    proc = subprocess.Popen(bed.ssh_argv("ssh", f"root@{GATEWAY}", "echo started; sleep 30"),
                            env=bed.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    status, err = _kill_netd_once_started(bed, proc)
    assert time.monotonic() - started < 25  # not the remote sleep running out
    assert (status, one_line(err)) == (255, f"vipernet ssh: {NETD_LOST}")


def test_ssh_still_says_the_server_closed_when_netd_is_alive(bed: Bed) -> None:
    # The other side of the check: sshd dropping the session is not blamed on netd.
    bed.start_netd()
    proc = subprocess.run(bed.ssh_argv("ssh", f"root@{GATEWAY}", "kill -9 $PPID"),
                          env=bed.env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 255
    assert "netd" not in proc.stderr
