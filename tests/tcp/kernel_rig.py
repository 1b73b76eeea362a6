"""Driving an in-process stack on a real TAP from test code, plus kernel-side peer scripts.

``Rig`` = ``TestBed("tcp")`` + ``TapDevice`` (optionally wrapped in a FaultInjector and/or a
pcap capture) + ``Stack`` + ``Runtime`` on a thread.  The blocking helpers (``connect``,
``sendall``, ``recv_all``...) call the non-blocking TcpSocket through ``runtime.call`` and
park with ``runtime.wait_until``, the way kernel mode does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Interface
from typing import Any

from tests.stack_calls import StackCalls
from tests.testbed import GATEWAY, GATEWAY6, STACK_IP, TestBed, wait_for
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig

STACK_IP6 = "fd0a:2::15"  # the stack's static IPv6 address on an ipv6 rig

# Kernel-side server: accepts one connection per line of work, then per mode:
#   sink  -> read to EOF, answer "sha256 length" (half-close), close
#   source N SEED -> send N pseudo-random bytes, close
#   echo  -> echo until EOF (many connections, sequential or concurrent)
SERVER = r"""
import hashlib, os, random, socket, sys, threading
mode = sys.argv[1]
host = os.environ.get("RIG_HOST", "10.0.2.2")
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, 0))
s.listen(512)
print(s.getsockname()[1], flush=True)
def handle(c):
    if mode == "sink":
        h = hashlib.sha256(); n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            h.update(d); n += len(d)
        c.sendall(f"{h.hexdigest()} {n}".encode())
    elif mode == "source":
        size, seed = int(sys.argv[2]), int(sys.argv[3])
        rng = random.Random(seed); left = size
        while left:
            chunk = rng.randbytes(min(left, 1 << 20)); c.sendall(chunk); left -= len(chunk)
    else:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

# Kernel-side client: connect to the stack, send N pseudo-random bytes, print the sha256.
CLIENT = r"""
import hashlib, os, random, socket, sys
port, size, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((os.environ.get("RIG_HOST", "10.0.2.15"), port), timeout=120)
rng = random.Random(seed); h = hashlib.sha256(); left = size
while left:
    chunk = rng.randbytes(min(left, 1 << 20)); c.sendall(chunk); h.update(chunk); left -= len(chunk)
c.shutdown(socket.SHUT_WR)
assert c.recv(10) == b""
c.close()
print(h.hexdigest(), flush=True)
"""


def pseudo_random_sha256(size: int, seed: int) -> str:
    import hashlib
    rng = random.Random(seed)
    h = hashlib.sha256()
    left = size
    while left:
        chunk = rng.randbytes(min(left, 1 << 20))
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


@dataclass
class Rig(StackCalls):
    bed: TestBed
    stack: Stack
    runtime: Runtime
    closers: list[Callable[[], None]] = field(default_factory=list)
    family: int = 2  # AF_INET; AF_INET6 (10) for a rig whose sockets speak IPv6

    @property
    def kernel_host(self) -> str:
        return GATEWAY6 if self.family == 10 else GATEWAY

    @property
    def stack_host(self) -> str:
        return STACK_IP6 if self.family == 10 else STACK_IP

    def client_env(self) -> dict[str, str]:
        """For the kernel-side CLIENT script: the stack address it dials."""
        return {**os.environ, "RIG_HOST": self.stack_host}

    def start_server(self, *args: str) -> int:
        env = {**os.environ, "RIG_HOST": self.kernel_host}
        proc = self.bed.start([sys.executable, "-c", SERVER, *args], stdout=subprocess.PIPE,
                              env=env)
        assert proc.stdout is not None
        return int(proc.stdout.readline())

    def connect(self, host: str, port: int, timeout: float = 30.0) -> Any:
        sock = self.call(lambda: self.stack.tcp_socket(self.family))

        def start() -> None:
            with contextlib.suppress(BlockingIOError):
                sock.connect((host, port), self.now())
        self.call(start)
        if not self.runtime.wait_until(lambda: sock.writable, timeout):
            raise TimeoutError(f"connect to {host}:{port} timed out")
        err = self.call(sock.take_error)
        if err:
            self.call(lambda: sock.close(self.now()))
            raise OSError(err, errno.errorcode.get(err, str(err)))
        return sock

    def recv_all(self, sock: Any, sink: Callable[[bytes], None], timeout: float = 60.0) -> int:
        total = 0
        while True:
            chunk = self.recv_some(sock, timeout)
            if not chunk:
                return total
            total += len(chunk)
            sink(chunk)

    def close(self, sock: Any) -> None:
        self.call(lambda: sock.close(self.now()))

    def shutdown_write(self, sock: Any) -> None:
        self.call(lambda: sock.shutdown(1, self.now()))


def open_rig(tag: str = "tcp", *, faults: Any = None, pcap: str | None = None,
             seed: int = 1, ipv6: bool = False) -> Rig:
    """``ipv6``: the kernel side gets GATEWAY6, the stack STACK_IP6 (static, DAD-checked),
    and the rig's sockets are AF_INET6."""
    from vipernet.link.tap import TapDevice

    bed = TestBed(tag)
    closers: list[Callable[[], None]] = []
    try:
        config = StackConfig()
        if ipv6:
            bed.enable_ipv6()
            config = StackConfig(ip6="static", ip6_address=IPv6Interface(f"{STACK_IP6}/64"))
        tap = TapDevice.open(bed.tap, netns=bed.name)
        closers.append(tap.close)
        device: Any = tap
        if faults is not None:
            from vipernet.link.faults import FaultInjector
            device = FaultInjector(device, faults, random.Random(seed))
        if pcap is not None:
            from vipernet.link.pcap import CapturingDevice, PcapWriter
            writer = PcapWriter(pcap)
            closers.append(writer.close)
            device = CapturingDevice(device, writer)
        stack = Stack(config, capabilities=device.capabilities, now=time.monotonic(),
                      rng=random.Random(seed))
        runtime = Runtime(stack, device)
        runtime.start_thread()
        closers.append(runtime.close)
        if ipv6:
            wait_for(lambda: runtime.call(lambda: stack.nd.source_for(
                IPv6Address(GATEWAY6)) is not None), timeout=10, what="DAD of STACK_IP6")
    except BaseException:
        for c in reversed(closers):
            c()
        bed.close()
        raise
    return Rig(bed, stack, runtime, closers, family=10 if ipv6 else 2)


def close_rig(rig: Rig) -> None:
    try:
        for c in reversed(rig.closers):
            c()
    finally:
        rig.bed.close()
