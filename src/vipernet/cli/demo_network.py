"""Where the demo runs: the default user-mode network, or a throw-away TAP namespace.

Both give the stack the spec's QEMU SLiRP view of the world — gateway 10.0.2.2, DNS
10.0.2.3, stack 10.0.2.15/24 — and both start real servers the demo then talks to:

* :class:`UserModeNetwork` (the default, no root): ``netd --link user``; the servers listen on
  host loopback, which the built-in gateway maps to 10.0.2.2, and DNS queries to 10.0.2.3
  go to a dnsmasq on host loopback.
* :class:`TapNetwork` (``--link tap``, root): a namespace whose TAP is the gateway's side; the
  servers listen on 10.0.2.2 inside it and dnsmasq on 10.0.2.3.

:meth:`DemoNetwork.close` removes every process, file and namespace either one made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DemoNetwork:
    """Processes and files of one demo run; subclasses say where servers listen."""

    link: str
    server_ip: str  # where the servers listen, as seen by the host
    dns_listen: tuple[str, int]  # where dnsmasq listens, as seen by the host
    http_port: int
    https_port: int
    description: str

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="vipernet-demo-"))
        self.processes: list[subprocess.Popen[bytes]] = []

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """How to run a server or netd in this network."""
        return list(argv)

    def start(self, argv: Sequence[str], *, log: str,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - the child keeps its own copy
        proc = subprocess.Popen(self.wrap(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
        out.close()
        self.processes.append(proc)
        return proc

    def listening(self, proto: str, ip: str, port: int) -> bool:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        out = subprocess.run(self.wrap(["ss", flag, f"src {ip}:{port}"]),
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
        shutil.rmtree(self.workdir, ignore_errors=True)


class UserModeNetwork(DemoNetwork):
    def __init__(self) -> None:
        super().__init__()
        self.server_ip = "127.0.0.1"
        self.dns_listen = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
        self.http_port = free_port()
        self.https_port = free_port()
        self.link = f"user:dns={self.dns_listen[0]}:{self.dns_listen[1]}"
        self.description = ("built-in user-mode networking (no root): gateway 10.0.2.2 = host "
                            "loopback, DNS 10.0.2.3 -> a dnsmasq on host loopback")


class TapNetwork(DemoNetwork):
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise DemoSetupError("--link tap builds a network namespace and a TAP: run as root")
        super().__init__()
        self.name = f"vipernet-demo-{os.getpid()}"
        self.tap = "vndemo0"
        self.server_ip = GATEWAY
        self.dns_listen = (DNS_SERVER, 53)
        self.http_port = 80
        self.https_port = 443
        self.link = f"tap:{self.tap}"
        self.description = (f"namespace {self.name}, TAP {self.tap}: the kernel answers at "
                            "10.0.2.2 and 10.0.2.3")
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
            subprocess.run(self.wrap(argv), check=True, capture_output=True)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        super().close()
        if self._created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self._created = False
