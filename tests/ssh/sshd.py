"""A throw-away OpenSSH sshd on host loopback for the interop tests.

Each test module starts its own: host keys (ed25519 + RSA) and client keys made by
``ssh-keygen`` in a temp dir, its own config (``StrictModes no``, ``UsePAM no``, a PidFile
and AuthorizedKeysFile in the temp dir), a free high port.  ``stop()`` kills it and removes
the directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.testbed import require_binary, stop_process, unavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sshd:
    def __init__(self, *, extra: str = "", host_keys: tuple[str, ...] = ("ed25519", "rsa"),
                 user_keys: tuple[str, ...] = ("ed25519", "rsa"), address: str = "127.0.0.1",
                 port: int | None = None, prefix: Sequence[str] = (),
                 ready: Callable[[str, int], bool] | None = None) -> None:
        if os.geteuid() != 0:
            unavailable("sshd interop tests need root")
        self.binary = require_binary("sshd")
        self.keygen = require_binary("ssh-keygen")
        self.dir = Path(tempfile.mkdtemp(prefix="vipernet-ssh-"))
        self.address = address
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.prefix = list(prefix)  # e.g. ``ip netns exec NS`` to run it in a namespace
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_keys: dict[str, Path] = {}
        self.user_keys: dict[str, Path] = {}
        try:
            self._setup(extra, host_keys, user_keys)
        except BaseException:
            self.stop()
            raise

    def _keygen(self, kind: str, path: Path, passphrase: str = "") -> None:
        bits = ["-b", "2048"] if kind == "rsa" else []
        subprocess.run([self.keygen, "-q", "-t", kind, *bits, "-N", passphrase, "-C", "t",
                        "-f", str(path)], check=True, capture_output=True)

    def _setup(self, extra: str, host_keys: tuple[str, ...], user_keys: tuple[str, ...]) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        for kind in host_keys:
            path = self.dir / f"host_{kind}"
            self._keygen(kind, path)
            self.host_keys[kind] = path
        auth = []
        for kind in user_keys:
            path = self.dir / f"id_{kind}"
            self._keygen(kind, path)
            self.user_keys[kind] = path
            auth.append((self.dir / f"id_{kind}.pub").read_text())
        (self.dir / "authorized_keys").write_text("".join(auth))
        self.config = self.dir / "sshd_config"
        # free_port() lets go of the port before sshd binds it: under load another socket can
        # take it in between (sshd then exits, "Address already in use").  Another port then,
        # unless the caller chose this one.
        for attempt in range(5):
            if self._start(extra):
                return
            log = (self.dir / "sshd.log").read_text(errors="replace")
            if self.fixed_port or attempt == 4 or "already in use" not in log:
                raise RuntimeError(f"sshd exited: {log}")
            self.port = free_port()

    def _start(self, extra: str) -> bool:
        """Start sshd on ``self.port``; False if it exited (its log says why)."""
        # sshd keeps the first value it reads for an option: the extras go first so they win.
        lines = [extra, f"Port {self.port}", f"ListenAddress {self.address}",
                 *[f"HostKey {p}" for p in self.host_keys.values()],
                 f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", "StrictModes no",
                 f"PidFile {self.dir / 'sshd.pid'}", "UsePAM no", "PermitRootLogin yes",
                 "Subsystem sftp internal-sftp", "LogLevel ERROR", "MaxStartups 50"]
        self.config.write_text("\n".join(lines) + "\n")
        if hasattr(self, "log"):
            self.log.close()
        self.log = open(self.dir / "sshd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*self.prefix, self.binary, "-D", "-e", "-f",
                                      str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if self.ready is not None:
                if self.ready(self.address, self.port):
                    return True
                time.sleep(0.05)
                continue
            try:  # ours only once it says "SSH-" (whoever took the port might listen)
                with socket.create_connection((self.address, self.port), timeout=2) as probe:
                    if probe.recv(4) == b"SSH-":
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def client_key(self, kind: str, passphrase: str) -> Path:
        path = self.dir / f"extra_{kind}"
        self._keygen(kind, path, passphrase)
        with open(self.dir / "authorized_keys", "a") as f:
            f.write((self.dir / f"extra_{kind}.pub").read_text())
        return path

    def host_public(self, kind: str) -> str:
        return (self.dir / f"host_{kind}.pub").read_text().split()[1]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
