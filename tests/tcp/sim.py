"""A virtual-time network for TCP tests: fake stacks around real TcpLayers, a lossy channel.

``FakeStack`` offers exactly what :class:`vipernet.stack.tcp.layer.TcpLayer` uses of the real
Stack (config, capabilities, rng, send_ip, mark_changed).  ``SimNet`` moves segments between
two of them through a seeded channel that drops, duplicates, corrupts, delays and reorders,
and runs a virtual clock that jumps straight to the next event (segment arrival or timer), so
a minute of TCP time costs only the work done in it.
"""

from __future__ import annotations

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

    def __init__(self, seed: int, *, mtu: int = 1500, imp: Impairments | None = None) -> None:
        self.rng = random.Random(seed)
        self.a = FakeStack("10.0.0.1", rng=random.Random(seed * 2 + 1), mtu=mtu)
        self.b = FakeStack("10.0.0.2", rng=random.Random(seed * 2 + 2), mtu=mtu)
        self.imp = imp or Impairments()
        self.now = 0.0
        self._q: list[tuple[float, int, FakeStack, int, bytes]] = []
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
            for _dst, payload, _off in out:
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
                    heapq.heappush(self._q, (t, next(self._tie), dst, src_ip, data))

    def step(self) -> bool:
        """Advance to the next event and process it; False when nothing is left to happen."""
        self._flush()
        cands = [t for t in (self._q[0][0] if self._q else None, self.a.tcp.next_deadline(),
                             self.b.tcp.next_deadline()) if t is not None]
        if not cands:
            return False
        self.now = max(self.now, min(cands))
        while self._q and self._q[0][0] <= self.now:
            _t, _, dst, src_ip, data = heapq.heappop(self._q)
            hdr = SimpleNamespace(src=IPv4Address(src_ip), dst=dst.config.ip.ip)
            dst.tcp.receive(hdr, memoryview(data), None, self.now)
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
