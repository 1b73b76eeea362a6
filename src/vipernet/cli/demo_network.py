"""A throw-away network for the demo: a namespace whose TAP plays QEMU SLiRP's host side.

Inside the namespace the kernel answers at 10.0.2.2 (gateway, web servers) and 10.0.2.3
(dnsmasq); the stack sits on the TAP at 10.0.2.15.  Nothing leaves the namespace, and
:meth:`DemoNetwork.close` removes every process, file and the namespace itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

GATEWAY = "10.0.2.2"
DNS_SERVER = "10.0.2.3"


class DemoSetupError(RuntimeError):
    """The demo network could not be built (not root, a tool missing, ...)."""


def find_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise DemoSetupError(f"{name} is not installed (run `make test` or scripts/setup.sh)")


class DemoNetwork:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise DemoSetupError("the demo builds a network namespace and a TAP: run it as root")
        self.name = f"vipernet-demo-{os.getpid()}"
        self.tap = "vndemo0"
        self.workdir = Path(tempfile.mkdtemp(prefix="vipernet-demo-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self._created = False
        try:
            self._create()
        except (subprocess.CalledProcessError, OSError) as exc:
            self.close()
            raise DemoSetupError(f"could not build the demo network: {exc}") from exc

    def _create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self._created = True
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"],
            ["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.disable_ipv6=1"],
            ["ip", "addr", "add", f"{GATEWAY}/24", "dev", self.tap],
            ["ip", "addr", "add", f"{DNS_SERVER}/24", "dev", self.tap],
            ["ip", "link", "set", self.tap, "up"],
        ):
            subprocess.run(self.inside(argv), check=True, capture_output=True)

    def inside(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def start(self, argv: Sequence[str], *, log: str,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - the child keeps its own copy
        proc = subprocess.Popen(self.inside(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
        out.close()
        self.processes.append(proc)
        return proc

    def listening(self, proto: str, ip: str, port: int) -> bool:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        out = subprocess.run(self.inside(["ss", flag, f"src {ip}:{port}"]),
                             capture_output=True, text=True).stdout
        return bool(out.strip())

    def wait_listening(self, proto: str, ip: str, port: int, what: str,
                       timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening(proto, ip, port):
                return
            time.sleep(0.05)
        raise DemoSetupError(f"{what} did not start listening on {ip}:{port}")

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self.processes.clear()
        if self._created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self._created = False
        shutil.rmtree(self.workdir, ignore_errors=True)
