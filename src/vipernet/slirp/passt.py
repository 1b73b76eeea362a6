"""``--link passt``: start Debian's ``passt`` and attach to it over the QEMU stream protocol.

passt is a user-mode network back end: it answers ARP and DHCP for the guest and carries
the guest's TCP/UDP/ICMP through the host's own sockets (the gateway address stands for
the host's loopback).  We start it in the foreground (``-f``) for one client only (``-1``,
so it exits when we disconnect) on a UNIX socket in a private temporary directory, wait
for the socket, and talk to it with :class:`vipernet.link.qemu.StreamDevice`.  Closing the
device stops passt and removes the directory.

passt needs an interface with a default route in its namespace to choose as its
"template"; without one it exits at once, which :meth:`PasstDevice.start` reports with the
last line passt printed.  The stack learns its address from passt's DHCP
(``vipernet netd --link passt --ip dhcp``) or is told the same values statically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from vipernet.errors import VipernetError
from vipernet.link.frame import Frame

DEFAULT_ADDRESS = IPv4Interface("10.0.2.15/24")
DEFAULT_GATEWAY = IPv4Address("10.0.2.2")
DEFAULT_DNS = IPv4Address("10.0.2.3")


class PasstError(VipernetError, OSError):
    """passt is missing or did not start."""


def passt_argv(binary: str, socket_path: str, *, address: IPv4Interface = DEFAULT_ADDRESS,
               gateway: IPv4Address = DEFAULT_GATEWAY, dns: IPv4Address = DEFAULT_DNS,
               as_root: bool | None = None) -> list[str]:
    """The command line: IPv4 only, one client, foreground, log to stderr."""
    argv = [binary, "-f", "-e", "-4", "-1"]
    if as_root if as_root is not None else os.geteuid() == 0:
        argv += ["--runas", "0:0"]  # passt drops to nobody otherwise and loses the socket dir
    argv += ["-s", socket_path, "-a", str(address.ip), "-n", str(address.network.prefixlen),
             "-g", str(gateway), "-D", str(dns)]
    return argv


class PasstDevice:
    """A running passt plus the stream device attached to it (a ``Device``)."""

    def __init__(self, inner: Any, process: subprocess.Popen[bytes], workdir: Path) -> None:
        self.inner = inner
        self.process = process
        self.workdir = workdir
        self.capabilities = inner.capabilities
        self.counters = inner.counters
        self.name = f"passt[{process.pid}]"

    @classmethod
    def start(cls, *, mtu: int = 1500, binary: str | None = None, timeout: float = 10.0,
              address: IPv4Interface = DEFAULT_ADDRESS, gateway: IPv4Address = DEFAULT_GATEWAY,
              dns: IPv4Address = DEFAULT_DNS) -> PasstDevice:
        from vipernet.link.qemu import StreamDevice

        found = binary or shutil.which("passt") or (
            "/usr/bin/passt" if os.path.exists("/usr/bin/passt") else None)
        if found is None:
            raise PasstError("passt is not installed (Debian package 'passt')")
        workdir = Path(tempfile.mkdtemp(prefix="vipernet-passt-"))
        sock = workdir / "passt.sock"
        log_path = workdir / "passt.log"
        argv = passt_argv(found, str(sock), address=address, gateway=gateway, dns=dns)
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not sock.exists():
                if process.poll() is not None:
                    raise PasstError(f"passt exited with status {process.returncode}: "
                                     f"{_last_line(log_path)}")
                if time.monotonic() > deadline:
                    raise PasstError(f"passt did not create its socket within {timeout:g}s")
                time.sleep(0.02)
            inner = StreamDevice.connect(str(sock), mtu=mtu, timeout=timeout)
        except BaseException:
            _stop(process)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(inner, process, workdir)

    @classmethod
    def start_from_spec(cls, argument: str, *, mtu: int = 1500) -> PasstDevice:
        """``--link passt[:ADDRESS/PREFIX]``: the address passt's DHCP hands out."""
        try:
            address = IPv4Interface(argument) if argument else DEFAULT_ADDRESS
        except ValueError:
            raise PasstError(f"--link passt:ADDRESS/PREFIX, got {argument!r}") from None
        gateway = DEFAULT_GATEWAY if DEFAULT_GATEWAY in address.network else next(
            address.network.hosts())
        return cls.start(mtu=mtu, address=address, gateway=gateway)

    def fileno(self) -> int | None:
        fd: int | None = self.inner.fileno()
        return fd

    def receive(self, now: float) -> list[Frame]:
        frames: list[Frame] = self.inner.receive(now)
        return frames

    def send(self, frame: Frame, now: float) -> None:
        self.inner.send(frame, now)

    def next_deadline(self) -> float | None:
        due: float | None = self.inner.next_deadline()
        return due

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.close()
        _stop(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PasstDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=3)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip() and "syslog" not in ln]
    except OSError:
        return "(no output)"
    return lines[-1].strip() if lines else "(no output)"
