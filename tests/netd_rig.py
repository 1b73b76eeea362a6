"""Shared netd rigs for the netd, netclient and CLI tests.

* :class:`PeerEcho` - a second stack (10.0.2.2) with UDP and TCP echo on port 7, driven by
  its own runtime thread on any device (a memory link, a QEMU stream or dgram socket).
* :func:`memory_netd` - a real :class:`~vipernet.netd.daemon.Netd` (AF_UNIX IPC, loop in a
  thread) whose device is a memory link to a :class:`PeerEcho`: no root needed.
* :func:`start_udp_echo` - a kernel UDP echo server at 10.0.2.2 inside a test bed.
* :func:`vipernet_cli` - run ``python -m vipernet.cli.main`` as a child process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from tests.testbed import TestBed
from vipernet.link.memory import MemoryLink
from vipernet.netd.daemon import Netd, NetdConfig
from vipernet.netd.links import LinkSpec
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig

OURS = "10.0.2.15"
PEER = "10.0.2.2"
SRC = str(Path(__file__).resolve().parents[1] / "src")

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""


class PeerEcho:
    """Stack B with UDP and TCP echo on port 7, driven by its own runtime thread."""

    def __init__(self, device: Any) -> None:
        now = time.monotonic()
        config = StackConfig(mac=bytes.fromhex("525400000002"),
                             ip=IPv4Interface(f"{PEER}/24"), gateway=None, dns=())
        self.stack = Stack(config, capabilities=device.capabilities, now=now,
                           rng=random.Random(2))
        self.udp = self.stack.udp_socket()
        self.udp.bind(("0.0.0.0", 7))
        self.tcp_children: list[Any] = []
        self.backlog: dict[int, bytearray] = {}
        try:
            self.listener = self.stack.tcp_socket()
            self.listener.bind(("0.0.0.0", 7))
            self.listener.listen(8)
        except Exception:
            self.listener = None
        self.runtime = Runtime(self.stack, device)
        self.runtime.add_hook(self._echo)
        self.runtime.start_thread("peer-echo")

    def _echo(self, now: float) -> float | None:
        self.stack.take_changed()
        while True:
            try:
                data, source = self.udp.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue
            self.udp.sendto(data, source, now)
        if self.listener is not None:
            while True:
                try:
                    self.tcp_children.append(self.listener.accept())
                except BlockingIOError:
                    break
            for child in list(self.tcp_children):
                self._pump(child, now)
        return now + 0.002

    def _pump(self, child: Any, now: float) -> None:
        """Echo what arrives, holding back what the send buffer cannot take yet."""
        backlog = self.backlog.setdefault(id(child), bytearray())
        try:
            while True:
                if backlog:
                    try:
                        sent = child.send(bytes(backlog), now)
                    except BlockingIOError:
                        return
                    del backlog[:sent]
                    if backlog:
                        return
                try:
                    data = child.recv(65536)
                except BlockingIOError:
                    return
                if not data:
                    child.close(now)
                    self.tcp_children.remove(child)
                    return
                backlog += data
        except OSError:
            if child in self.tcp_children:
                self.tcp_children.remove(child)

    def close(self) -> None:
        self.runtime.close()



@contextmanager
def memory_netd(tmp_path: Path, *, name: str = "mem") -> Iterator[str]:
    """A netd on a memory link to a :class:`PeerEcho`; yields its socket path."""
    ours, theirs = MemoryLink.pair()
    peer = PeerEcho(theirs)
    path = str(tmp_path / "netd.sock")
    netd = Netd(NetdConfig(link=LinkSpec(kind="tap", argument=name), socket_path=path,
                           dns=()), device=ours)
    thread = threading.Thread(target=netd.run, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        netd.stop()
        thread.join(10)
        peer.close()


def start_udp_echo(bed: TestBed) -> tuple[subprocess.Popen[bytes], int]:
    """A kernel UDP echo server on 10.0.2.2 in ``bed`` (stopped by bed.close()) and its port."""
    proc = bed.start([sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a child ``vipernet``: our sources first on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": SRC, **extra}


def vipernet_cli(*argv: str, env: Mapping[str, str], timeout: float = 60
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vipernet.cli.main", *argv], env=dict(env),
                          capture_output=True, text=True, timeout=timeout)
