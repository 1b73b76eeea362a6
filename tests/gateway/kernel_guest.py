"""The kernel of a fresh namespace as a gateway's guest: a TAP at 10.0.2.15/24, default
route via 10.0.2.2, and a resolv.conf naming 10.0.2.3 for commands run inside.

The TAP has the virtio-net header on (``vnet_hdr``), so a gateway that opens it exchanges
64 KiB GSO frames with the kernel, as a VM's virtio-net with TSO would.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

from tests.testbed import require_root

_counter = itertools.count()


class KernelGuest:
    """A namespace whose kernel sits on a TAP at 10.0.2.15/24, default via 10.0.2.2."""

    def __init__(self, tag: str) -> None:
        require_root()
        n = next(_counter)
        self.name = f"vg-{tag}-{os.getpid()}-{n}"
        self.tap = f"gt{os.getpid() % 100000}-{n}"
        self.etc = Path("/etc/netns") / self.name  # ip netns exec bind-mounts its files
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            for argv in (["ip", "link", "set", "lo", "up"],
                         ["ip", "tuntap", "add", "dev", self.tap, "mode", "tap", "vnet_hdr"],
                         ["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.disable_ipv6=1"],
                         ["ip", "link", "set", self.tap, "address", "52:54:00:12:34:56"],
                         ["ip", "addr", "add", "10.0.2.15/24", "dev", self.tap],
                         ["ip", "link", "set", self.tap, "up"],
                         ["ip", "route", "add", "default", "via", "10.0.2.2"]):
                self.run(argv)
            self.etc.mkdir(parents=True, exist_ok=True)
            (self.etc / "resolv.conf").write_text("nameserver 10.0.2.3\n")
        except BaseException:
            self.close()
            raise

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], *, timeout: float = 60, check: bool = True,
            **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(argv), check=check, capture_output=True,
                              timeout=timeout, **kwargs)  # type: ignore[call-overload]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)
