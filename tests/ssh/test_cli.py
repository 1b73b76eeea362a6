"""``vipernet ssh`` / ``vipernet sftp`` end to end against sshd (host sockets:
VIPERNET_TRANSPORT=os), including an interactive shell driven through a pty pair, and
ssh-audit's client audit of our algorithms."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.ssh.sshd import Sshd, free_port
from tests.testbed import require_binary
from vipernet.ssh.client import SSHClient
from vipernet.ssh.errors import SSHError

pytestmark = pytest.mark.testbed
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict[str, str]:
    return dict(os.environ, VIPERNET_TRANSPORT="os", PYTHONPATH=SRC, TERM="xterm")


def _argv(sshd: Sshd, tmp_path: Path, command: str, port_flag: str) -> list[str]:
    return [sys.executable, "-m", "vipernet.cli.main", command, port_flag, str(sshd.port),
            "-i", str(sshd.user_keys["ed25519"]), "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={tmp_path / 'kh'}"]


def test_vipernet_ssh_runs_a_command_and_returns_its_exit_status(sshd: Sshd,
                                                                  tmp_path: Path) -> None:
    r = subprocess.run([*_argv(sshd, tmp_path, "ssh", "-p"), "root@127.0.0.1",
                        "echo out; echo err >&2; exit 7"], env=_env(), capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")


def test_vipernet_ssh_shows_the_server_banner_on_stderr(tmp_path: Path) -> None:
    banner = tmp_path / "banner"
    banner.write_text("Authorised use only.\n")
    server = Sshd(extra=f"Banner {banner}\n", user_keys=("ed25519",))
    try:
        r = subprocess.run([*_argv(server, tmp_path, "ssh", "-p"), "root@127.0.0.1", "true"],
                           env=_env(), capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=30)
    finally:
        server.stop()
    assert (r.returncode, r.stderr) == (0, b"Authorised use only.\n")


def test_vipernet_ssh_forwards_stdin_to_the_command(sshd: Sshd, tmp_path: Path) -> None:
    data = os.urandom(500_000)
    r = subprocess.run([*_argv(sshd, tmp_path, "ssh", "-p"), "root@127.0.0.1", "sha256sum"],
                       env=_env(), capture_output=True, input=data, timeout=30)
    assert r.returncode == 0
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_vipernet_ssh_refuses_a_changed_host_key_with_status_255(sshd: Sshd,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "kh").write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                                 "AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n")
    r = subprocess.run([*_argv(sshd, tmp_path, "ssh", "-p"), "root@127.0.0.1", "true"],
                       env=_env(), capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} in {bytes(seen)[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {marker!r}: {bytes(seen)[-500:]!r}")
            seen.extend(chunk)


class PtyChild:
    """``vipernet ...`` run with a new pty as its controlling terminal; ``fd`` is the master
    side.  Leaving the ``with`` kills the child if it still runs and closes the pty."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.reaped = False

    def wait_exit(self, seen: bytearray, timeout: float = 15.0) -> int:
        """Its exit status, reading (into ``seen``) what it writes meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.reaped = True
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"{bytes(seen)[-300:]!r}: the command did not exit")
            if select.select([self.fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    seen.extend(os.read(self.fd, 4096))

    def __enter__(self) -> PtyChild:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_interactive_shell_through_a_pty_types_a_command_reads_output_and_exits(
        sshd: Sshd, tmp_path: Path) -> None:
    seen = bytearray()
    with PtyChild([*_argv(sshd, tmp_path, "ssh", "-p"), "root@127.0.0.1"], _env()) as child:
        fd = child.fd
        _read_until(fd, b"# ", seen)  # root's shell prompt: the remote side is ready
        os.write(fd, b"echo vn-$((40+2)); tty\r")
        _read_until(fd, b"vn-42", seen)
        _read_until(fd, b"/dev/pts/", seen)
        # Resize our terminal: the kernel sends SIGWINCH, vipernet ssh sends window-change.
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        time.sleep(0.3)
        os.write(fd, b"stty size\r")
        _read_until(fd, b"33 111", seen)
        os.write(fd, b"exit 5\r")
        assert child.wait_exit(seen) == 5


def test_vipernet_sftp_batch_put_ls_rename_get_rm(sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(1_500_000))
    work = tmp_path / "remote"
    batch = tmp_path / "batch"
    batch.write_text(f"mkdir {work}\ncd {work}\nput {local} one.bin\nls\nrename one.bin "
                     f"two.bin\nls -l\nget two.bin {tmp_path / 'back.bin'}\nrm two.bin\n"
                     f"-rm does-not-exist\ncd ..\nrmdir {work}\npwd\n")
    r = subprocess.run([*_argv(sshd, tmp_path, "sftp", "-P"), "-b", str(batch),
                        "root@127.0.0.1"], env=_env(), capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "one.bin" in out and "two.bin" in out and "-rw" in out
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert not work.exists()


def test_vipernet_sftp_batch_stops_at_the_first_error(sshd: Sshd, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.write_text(f"get {tmp_path / 'missing'}\nmkdir {tmp_path / 'never'}\n")
    r = subprocess.run([*_argv(sshd, tmp_path, "sftp", "-P"), "-b", str(batch),
                        "root@127.0.0.1"], env=_env(), capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert b"No such file" in r.stderr or b"no such file" in r.stderr.lower()
    assert not (tmp_path / "never").exists()


def test_ssh_audit_client_mode_lists_our_algorithms_and_strict_kex(tmp_path: Path) -> None:
    audit = require_binary("ssh-audit")
    ss = require_binary("ss")

    def listening(port: int) -> bool:
        return bool(subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True,
                                   text=True).stdout.strip())

    # free_port() lets the port go before ssh-audit binds it: under load another socket can
    # take it in between (ssh-audit then exits), so another port then.
    for _attempt in range(4):
        port = free_port()
        proc = subprocess.Popen([audit, "-c", "-p", str(port), "-n", "-t", "10"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:  # without connecting
            if listening(port):
                break
            time.sleep(0.05)
        if proc.poll() is None:
            break
        proc.communicate()
    try:
        assert listening(port), "ssh-audit did not listen"
        with pytest.raises(SSHError):  # ssh-audit hangs up after reading our KEXINIT
            SSHClient.connect("127.0.0.1", port, username="audit",
                              verify_host_key=lambda key: None, timeout=10)
        out = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "SSH-2.0-vipernet" in out
    for alg in ("curve25519-sha256", "curve25519-sha256@libssh.org",
                "kex-strict-c-v00@openssh.com", "ssh-ed25519", "rsa-sha2-512",
                "rsa-sha2-256", "aes128-ctr", "aes256-ctr", "hmac-sha2-256",
                "hmac-sha1"):
        assert f") {alg} " in out or f") {alg}\n" in out, alg
    assert "(key) ssh-rsa " not in out  # no SHA-1 RSA signatures offered


def test_interactive_sftp_on_a_tty_asks_about_the_host_key_and_shows_progress(
        sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(30_000_000))
    argv = [*_argv(sshd, tmp_path, "sftp", "-P"), "root@127.0.0.1"]
    argv[argv.index("StrictHostKeyChecking=accept-new")] = "StrictHostKeyChecking=ask"
    seen = bytearray()
    with PtyChild(argv, _env(), cwd=tmp_path) as child:
        fd = child.fd
        _read_until(fd, b"(yes/no)? ", seen)
        assert b"ssh-ed25519 key fingerprint is SHA256:" in seen
        os.write(fd, b"yes\n")
        _read_until(fd, b"sftp> ", seen)
        os.write(fd, f"put payload.bin {tmp_path / 'remote.bin'}\n".encode())
        _read_until(fd, b"100.0%", seen)
        _read_until(fd, b"sftp> ", seen)
        assert b"MB/s" in seen
        os.write(fd, b"bye\n")
        assert child.wait_exit(seen) == 0
    assert (tmp_path / "remote.bin").read_bytes() == local.read_bytes()
    assert (tmp_path / "kh").read_text().startswith("|1|")  # the answer was recorded


def test_vipernet_ssh_asks_for_the_password_on_the_terminal(
        sshd: Sshd, tmp_path: Path, throwaway_user: tuple[str, str]) -> None:
    name, password = throwaway_user
    argv = [sys.executable, "-m", "vipernet.cli.main", "ssh", "-p", str(sshd.port), "-o",
            "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
            f"{name}@127.0.0.1", "id -un; exit 9"]
    env = dict(_env(), HOME=str(tmp_path))  # no default keys to try first
    seen = bytearray()
    with PtyChild(argv, env) as child:
        _read_until(child.fd, f"{name}@127.0.0.1's password: ".encode(), seen)
        os.write(child.fd, password.encode() + b"\n")
        _read_until(child.fd, name.encode() + b"\r\n", seen)
        assert child.wait_exit(seen) == 9
        assert password.encode() not in seen  # not echoed


def test_the_shell_runs_with_the_local_terminal_raw_and_restores_it_on_exit(
        sshd: Sshd, tmp_path: Path) -> None:
    seen = bytearray()
    with PtyChild([*_argv(sshd, tmp_path, "ssh", "-p"), "root@127.0.0.1"], _env()) as child:
        fd = child.fd
        cooked = termios.tcgetattr(fd)[3]  # lflag, before vipernet ssh changes it
        _read_until(fd, b"# ", seen)
        lflag = termios.tcgetattr(fd)[3]  # the master reads the terminal's settings
        assert cooked & termios.ICANON and not lflag & (termios.ICANON | termios.ECHO
                                                        | termios.ISIG)
        # Raw: Ctrl-C is a byte for the remote shell (which interrupts its sleep), not a
        # SIGINT for vipernet ssh.
        # The job says when it runs (then it is the terminal's foreground job): a fixed pause
        # could send the Ctrl-C before, under load, and leave the sleep running.
        os.write(fd, b"sh -c 'echo asleep-$((6*7)); exec sleep 30'\r")
        _read_until(fd, b"asleep-42", seen)
        os.write(fd, b"\x03")
        os.write(fd, b"echo alive-$((1+1))\r")
        _read_until(fd, b"alive-2", seen, timeout=10)
        os.write(fd, b"exit 0\r")
        assert child.wait_exit(seen) == 0
        assert termios.tcgetattr(fd)[3] == cooked  # the saved settings came back
