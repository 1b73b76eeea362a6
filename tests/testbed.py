"""The test bed: a network namespace with a TAP whose kernel side is 10.0.2.2 and 10.0.2.3.

The stack (netd, or kernel mode) opens the TAP from inside the namespace and sits at
10.0.2.15/24, the spec's QEMU SLiRP layout.  Real peers (the kernel's own TCP/IP, dnsmasq,
sshd, openssl s_server, nginx) run inside the namespace.  Everything made here is removed
by :meth:`TestBed.close`: processes first, then the namespace (which takes the TAP with it).

Under ``CI=true`` a missing root, namespace support or peer binary fails the test; elsewhere
it skips, so a developer without root can still run the unit tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

GATEWAY = "10.0.2.2"
DNS_SERVER = "10.0.2.3"
STACK_IP = "10.0.2.15"
# IPv6 on the bed (enable_ipv6): the kernel is ::2 and DNS ::3 of a ULA /64, like 10.0.2.x.
PREFIX6 = "fd0a:2::"
GATEWAY6 = "fd0a:2::2"
DNS_SERVER6 = "fd0a:2::3"
_counter = itertools.count()


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: a CI run must never pass by skipping the real peers."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"test bed unavailable in CI: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root (CAP_NET_ADMIN) for namespaces and TAP devices")
    if not os.path.exists("/dev/net/tun"):
        unavailable("/dev/net/tun is missing")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None and os.path.exists(f"/usr/sbin/{name}"):
        path = f"/usr/sbin/{name}"
    if path is None:
        unavailable(f"{name} is not installed (make test installs it)")
        raise AssertionError("unreachable")
    return path


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


class TestBed:
    """One namespace + TAP; peers started with :meth:`start` are stopped by :meth:`close`."""

    __test__ = False  # not a pytest test class

    def __init__(self, tag: str = "t") -> None:
        require_root()
        require_binary("ip")
        n = next(_counter)
        self.name = f"vn-{tag}-{os.getpid()}-{n}"
        self.tap = f"vt{os.getpid() % 100000}{tag[:3]}{n}"[:15]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"vipernet-{tag}-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self._created = False
        try:
            self._create()
        except Exception:
            self.close()
            raise

    def _create(self) -> None:
        _run(["ip", "netns", "add", self.name])
        self._created = True
        self.ns(["ip", "link", "set", "lo", "up"])
        self.ns(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
        self.ns(["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.disable_ipv6=1"], check=False)
        self.ns(["ip", "addr", "add", f"{GATEWAY}/24", "dev", self.tap])
        self.ns(["ip", "addr", "add", f"{DNS_SERVER}/24", "dev", self.tap])
        self.ns(["ip", "link", "set", self.tap, "up"])

    def ns_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def ns(self, argv: Sequence[str], check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return subprocess.run(self.ns_argv(argv), check=check, capture_output=True, text=True,
                              timeout=timeout)

    def start(
        self, argv: Sequence[str], *, inside: bool = True, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process (inside the namespace by default); stopped by close()."""
        full = self.ns_argv(argv) if inside else list(argv)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(full, start_new_session=True, **kwargs)
        self.processes.append(proc)
        return proc

    def start_dnsmasq(self, *extra: str) -> subprocess.Popen[bytes]:
        dnsmasq = require_binary("dnsmasq")
        proc = self.start([
            dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--listen-address={DNS_SERVER}", "--bind-interfaces", "--user=root",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--address=/example.test/10.0.2.2", "--local=/example.test/", "--local=/#/", *extra,
        ])
        wait_for(lambda: self._udp_port_open(DNS_SERVER, 53), what="dnsmasq on 10.0.2.3:53")
        return proc

    def enable_ipv6(self) -> None:
        """Turn the kernel side's IPv6 on: GATEWAY6 and DNS_SERVER6 on the TAP, no SLAAC of
        its own from the RAs the bed sends (accept_ra 0), the link-local made by the kernel
        once something holds the TAP (netd)."""
        conf = f"net.ipv6.conf.{self.tap}"
        self.ns(["sysctl", "-qw", f"{conf}.accept_ra=0", f"{conf}.disable_ipv6=0"])
        for address in (GATEWAY6, DNS_SERVER6):
            self.ns(["ip", "-6", "addr", "add", f"{address}/64", "dev", self.tap, "nodad"])

    def kernel_link_local(self) -> str | None:
        """The kernel side's link-local address once DAD let it go (else None)."""
        out = self.ns(["ip", "-6", "-o", "addr", "show", "dev", self.tap, "scope", "link"],
                      check=False).stdout
        if "tentative" in out:
            return None
        for word in out.split():
            if word.startswith("fe80:"):
                return word.split("/")[0]
        return None

    def start_router_advertisements(self, *extra: str) -> subprocess.Popen[bytes]:
        """dnsmasq sending RAs for PREFIX6/64 (SLAAC, RDNSS DNS_SERVER6) every few seconds
        and serving DNS on DNS_SERVER6.  Call it once netd holds the TAP: dnsmasq sends
        nothing from a link-local that is still tentative."""
        dnsmasq = require_binary("dnsmasq")
        wait_for(lambda: self.kernel_link_local() is not None, what="the kernel's link-local")
        proc = self.start([
            dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", f"--listen-address={DNS_SERVER6}", f"--interface={self.tap}",
            "--bind-interfaces", "--user=root", f"--pid-file={self.workdir / 'dnsmasq6.pid'}",
            "--enable-ra", f"--dhcp-range={PREFIX6},ra-only,64,1h", "--ra-param=*,4,600",
            f"--dhcp-option=option6:dns-server,[{DNS_SERVER6}]",
            "--address=/example.test/10.0.2.2", f"--address=/example.test/{GATEWAY6}",
            "--local=/example.test/", "--local=/#/", *extra,
        ])
        wait_for(lambda: self._udp_port_open(f"[{DNS_SERVER6}]", 53),
                 what=f"dnsmasq on [{DNS_SERVER6}]:53")
        return proc

    def _udp_port_open(self, ip: str, port: int) -> bool:
        out = self.ns(["ss", "-Hlun", f"src {ip}:{port}"], check=False).stdout
        return bool(out.strip())

    def tcp_port_open(self, ip: str, port: int) -> bool:
        out = self.ns(["ss", "-Hltn", f"src {ip}:{port}"], check=False).stdout
        return bool(out.strip())

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        if self._created:
            _run(["ip", "netns", "del", self.name], check=False)
            self._created = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TestBed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def wait_for(predicate: object, *, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true; fail the test with ``what`` on timeout.  The default
    is generous: a met condition returns at once, and starting a Python daemon (netd's
    imports alone take ~0.8 s at load 2) can take many times that on a loaded 2-core box."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
