"""A virtual-time network for TCP tests: fake stacks around real TcpLayers, a lossy channel.

``FakeStack`` offers exactly what :class:`vipernet.stack.tcp.layer.TcpLayer` uses of the real
Stack (config, capabilities, rng, send_ip, mark_changed).  ``SimNet`` moves segments between
two of them through a seeded channel that drops, duplicates, corrupts, delays and reorders,
and runs a virtual clock that jumps straight to the next event (segment arrival or timer), so
a minute of TCP time costs only the work done in it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from types import SimpleNamespace
from typing import Any

from vipernet.link.frame import DeviceCapabilities, Offload
from vipernet.stack.tcp.layer import TcpLayer


class FakeStack:
    def __init__(self, ip: str, *, rng: random.Random, mtu: int = 1500,
                 tso: bool = False) -> None:
        self.config = SimpleNamespace(ip=IPv4Interface(f"{ip}/24"))
        max_frame = 65549 if tso else mtu + 14
        self.capabilities = DeviceCapabilities(mtu=mtu, tx_csum_offload=tso, tso=tso,
                                               max_frame=max_frame)
        self.rng = rng
        self.sent: list[tuple[IPv4Address, bytes, Offload | None]] = []
        self.changed: set[object] = set()
        self.tcp = TcpLayer(self)

    def send_ip(self, dst: Any, proto: Any, payload: Any, *, offload_l4: Any = None,
                now: float) -> None:
        self.sent.append((dst, bytes(payload), offload_l4))

    def mark_changed(self, sock: object) -> None:
        self.changed.add(sock)


@dataclass
class Impairments:
    loss: float = 0.0
    dup: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.001
    jitter: float = 0.0


class SimNet:
    """Two FakeStacks, 10.0.0.1 and 10.0.0.2, over an impaired channel."""

    def __init__(self, seed: int, *, mtu: int = 1500, imp: Impairments | None = None,
                 tso: bool = False) -> None:
        self.rng = random.Random(seed)
        self.a = FakeStack("10.0.0.1", rng=random.Random(seed * 2 + 1), mtu=mtu, tso=tso)
        self.b = FakeStack("10.0.0.2", rng=random.Random(seed * 2 + 2), mtu=mtu, tso=tso)
        self.imp = imp or Impairments()
        self.now = 0.0
        self._q: list[tuple[float, int, FakeStack, int, bytes, Offload | None]] = []
        self._tie = itertools.count()
        self.delivered = 0

    def _flush(self) -> None:
        imp = self.imp
        rng = self.rng
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            if not src.sent:
                continue
            out = src.sent
            src.sent = []
            src_ip = int(src.config.ip.ip)
            for _dst, payload, off in out:
                copies = 1
                if imp.loss and rng.random() < imp.loss:
                    copies = 0
                elif imp.dup and rng.random() < imp.dup:
                    copies = 2
                for _ in range(copies):
                    data = payload
                    if imp.corrupt and rng.random() < imp.corrupt and data:
                        i = rng.randrange(len(data))
                        data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
                    t = self.now + imp.delay + (rng.random() * imp.jitter if imp.jitter else 0.0)
                    heapq.heappush(self._q, (t, next(self._tie), dst, src_ip, data,
                                             off if data is payload else None))

    def step(self) -> bool:
        """Advance to the next event and process it; False when nothing is left to happen."""
        self._flush()
        cands = [t for t in (self._q[0][0] if self._q else None, self.a.tcp.next_deadline(),
                             self.b.tcp.next_deadline()) if t is not None]
        if not cands:
            return False
        self.now = max(self.now, min(cands))
        while self._q and self._q[0][0] <= self.now:
            _t, _, dst, src_ip, data, off = heapq.heappop(self._q)
            hdr = SimpleNamespace(src=IPv4Address(src_ip), dst=dst.config.ip.ip)
            # a partial checksum is trusted, as from a virtio device
            dst.tcp.receive(hdr, memoryview(data), off, self.now)
            self.delivered += 1
        self.a.tcp.poll(self.now)
        self.b.tcp.poll(self.now)
        self._flush()
        return True

    def run(self, until: Callable[[], bool], *, limit: float = 600.0,
            each: Callable[[], None] | None = None) -> bool:
        """Step until ``until()``; False if time ran past ``limit`` or nothing could happen."""
        while True:
            if each is not None:
                each()
                self._flush()
            if until():
                return True
            if self.now > limit or not self.step():
                return until()


@dataclass
class TransferResult:
    finished: bool
    virtual_time: float
    a_received: bytes
    b_received: bytes
    a_states: list[str]
    b_states: list[str]


def bidirectional_transfer(net: SimNet | StackNet, a_data: bytes, b_data: bytes, *, port: int = 80,
                           limit: float = 1200.0, chunk: int = 256 * 1024) -> TransferResult:
    """A connects to B; both send their data, half-close, read to EOF, then close."""
    lst = net.b.tcp.open_socket()
    lst.bind(("0.0.0.0", port))
    lst.listen(8)
    client = net.a.tcp.open_socket()
    with contextlib.suppress(BlockingIOError):
        client.connect((str(net.b.config.ip.ip), port), net.now)
    st: dict[str, Any] = {"server": None, "sa": 0, "sb": 0, "ra": bytearray(),
                          "rb": bytearray(), "a_shut": False, "b_shut": False,
                          "a_eof": False, "b_eof": False}

    def pump(sock: Any, data: bytes, sent_key: str, shut_key: str) -> None:
        while st[sent_key] < len(data):
            try:
                st[sent_key] += sock.send(data[st[sent_key]:st[sent_key] + chunk], net.now)
            except BlockingIOError:
                return
        if not st[shut_key]:
            sock.shutdown(1, net.now)
            st[shut_key] = True

    def drain(sock: Any, buf_key: str, eof_key: str) -> None:
        while not st[eof_key]:
            try:
                d = sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not d:
                st[eof_key] = True
                sock.close(net.now)
                return
            st[buf_key] += d

    def each() -> None:
        if st["server"] is None:
            try:
                st["server"] = lst.accept()
                lst.close(net.now)
            except BlockingIOError:
                pass
        if client.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
            pump(client, a_data, "sa", "a_shut")
        server = st["server"]
        if server is not None:
            if server.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
                pump(server, b_data, "sb", "b_shut")
            drain(server, "rb", "b_eof")
        if client.state.name != "SYN_SENT":
            drain(client, "ra", "a_eof")

    def done() -> bool:
        return bool(st["a_eof"] and st["b_eof"] and all(
            c.state.name == "TIME_WAIT" for c in (*net.a.tcp.conns.values(),
                                                   *net.b.tcp.conns.values())))

    finished = net.run(done, limit=limit, each=each)
    return TransferResult(
        finished=finished, virtual_time=net.now, a_received=bytes(st["ra"]),
        b_received=bytes(st["rb"]),
        a_states=[c.state.name for c in net.a.tcp.conns.values()],
        b_states=[c.state.name for c in net.b.tcp.conns.values()])


class StackNet:
    """Two real :class:`vipernet.stack.Stack` objects over ``MemoryLink.pair()``, each end
    wrapped in a seeded :class:`FaultInjector`, on a virtual clock.

    Same surface as :class:`SimNet` (``a``, ``b``, ``now``, ``run``), so
    :func:`bidirectional_transfer` drives either."""

    def __init__(self, seed: int, *, mtu: int = 1500, imp: Impairments | None = None) -> None:
        from vipernet.link.faults import FaultConfig, FaultInjector
        from vipernet.link.memory import MemoryLink
        from vipernet.stack.config import StackConfig
        from vipernet.stack.stack import Stack

        imp = imp or Impairments()
        caps = DeviceCapabilities(mtu=mtu, max_frame=mtu + 14)
        dev_a, dev_b = MemoryLink.pair(caps)
        half = FaultConfig(drop=imp.loss / 2, duplicate=imp.dup / 2, corrupt=imp.corrupt / 2,
                           delay=(imp.delay / 2, imp.delay / 2 + imp.jitter / 2))
        self.dev_a = FaultInjector(dev_a, half, random.Random(seed * 3 + 1))
        self.dev_b = FaultInjector(dev_b, half, random.Random(seed * 3 + 2))
        self.now = 0.0
        # ARP gets many tries: at 20% loss three lost exchanges in a row would (rightly, as
        # on Linux) fail the connect with EHOSTUNREACH, which is not what this tests.
        cfg_a = StackConfig(mac=b"\x02\x00\x00\x00\x00\x01", ip=IPv4Interface("10.0.2.15/24"),
                            gateway=None, mtu=mtu, arp_retries=30)
        cfg_b = StackConfig(mac=b"\x02\x00\x00\x00\x00\x02", ip=IPv4Interface("10.0.2.16/24"),
                            gateway=None, mtu=mtu, arp_retries=30)
        self.a: Any = Stack(cfg_a, capabilities=self.dev_a.capabilities, now=0.0,
                            rng=random.Random(seed * 2 + 1))
        self.b: Any = Stack(cfg_b, capabilities=self.dev_b.capabilities, now=0.0,
                            rng=random.Random(seed * 2 + 2))
        self._pairs = ((self.a, self.dev_a), (self.b, self.dev_b))

    def _exchange(self) -> bool:
        moved = False
        for stack, dev in self._pairs:
            for frame in dev.receive(self.now):
                stack.receive(frame, self.now)
                moved = True
        for stack, dev in self._pairs:
            for frame in stack.transmit():
                dev.send(frame, self.now)
                moved = True
        return moved

    def step(self) -> bool:
        if self._exchange():
            return True
        cands = [t for t in (self.a.next_deadline(), self.b.next_deadline(),
                             self.dev_a.next_deadline(), self.dev_b.next_deadline())
                 if t is not None]
        if not cands:
            return False
        self.now = max(self.now, min(cands))
        self.a.poll(self.now)
        self.b.poll(self.now)
        self._exchange()
        return True

    def run(self, until: Callable[[], bool], *, limit: float = 600.0,
            each: Callable[[], None] | None = None) -> bool:
        while True:
            if each is not None:
                each()
            if until():
                return True
            if self.now > limit or not self.step():
                return until()
