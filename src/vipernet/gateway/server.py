"""The gateway's loop: guest ports, guest wires, and one selector over all of them.

:class:`Gateway` owns the ports (listeners that yield guests as they connect) and the
live :class:`~vipernet.gateway.wire.GuestWire` of every guest.  One iteration
(:meth:`Gateway.run_once`) waits until a port has a new guest, a wire's device or host
sockets are ready, or a wire's timers are due; then accepts, and services every ready or
due wire.  A wire whose guest went away is dropped at once, with its flows and host
sockets: the other guests are not affected.

Port forwards (``SlirpConfig.forwards``) are host listeners, and a host port can be bound
once: they belong to one wire at a time — the first guest's, then, if it goes away, the
next guest that arrives.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import selectors
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vipernet.gateway.ports import Listener
from vipernet.gateway.wire import GuestWire
from vipernet.link.frame import Device
from vipernet.slirp import SlirpConfig

log = logging.getLogger(__name__)

MAX_WAIT = 0.2  # seconds: how often ``stop`` is looked at while nothing happens
_WAKER = object()  # selector data of a caller's wake-up fd
ENDED_KEPT = 64  # ended wires whose last counters are kept for ``vipernet`` to show


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    slirp: SlirpConfig = field(default_factory=SlirpConfig)
    mtu: int = 1500  # for devices the gateway opens itself (streams, datagrams, TAPs)


class Gateway:
    """User-mode networking for any number of guests (see the module docstring)."""

    def __init__(self, config: GatewayConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config or GatewayConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self.wires: list[GuestWire] = []
        self.listeners: list[Listener] = []
        self.counters: Counter[str] = Counter()
        # (name, why it ended, its last counters) of the most recent wires that ended.
        self.ended: deque[tuple[str, str, dict[str, int]]] = deque(maxlen=ENDED_KEPT)
        self._selector = selectors.DefaultSelector()
        self._forwards_owner: GuestWire | None = None
        self._writing: set[GuestWire] = set()  # wires whose device fd is watched for writes
        self._closed = False

    # -- what is served -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)
        self._selector.register(listener.fileno(), selectors.EVENT_READ, listener)

    def add_waker(self, fd: int) -> None:
        """Return from :meth:`run_once` as soon as ``fd`` is readable (e.g. a pidfd, so a
        caller notices its child's exit at once); the caller owns and reads the fd."""
        self._selector.register(fd, selectors.EVENT_READ, _WAKER)

    def remove_waker(self, fd: int) -> None:
        self._selector.unregister(fd)

    def add_device(self, device: Device) -> GuestWire:
        """Serve one guest's device from now on; returns its wire."""
        slirp = self.config.slirp
        owner = self._forwards_owner
        takes_forwards = bool(slirp.forwards) and (owner is None or owner.closed)
        if not takes_forwards:
            slirp = dataclasses.replace(slirp, forwards=())
        try:
            wire = GuestWire(device, slirp, now=self.clock(), rng=self.rng)
        except BaseException:
            device.close()
            raise
        if takes_forwards:
            self._forwards_owner = wire
        self.wires.append(wire)
        for fd in wire.fds():
            self._selector.register(fd, selectors.EVENT_READ, wire)
        self.counters["guests"] += 1
        log.info("gateway: serving guest wire %s", device.name)
        return wire

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Serve until ``stop()`` is true (looked at least every ``MAX_WAIT`` seconds)."""
        while not stop():
            self.run_once(MAX_WAIT)

    def run_once(self, timeout: float = MAX_WAIT) -> None:
        self._watch_writes()
        now = self.clock()
        due = [w.due for w in self.wires if w.due is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - now))
        ready: set[GuestWire] = set()
        for key, _mask in self._selector.select(timeout):
            owner = key.data
            if isinstance(owner, GuestWire):
                ready.add(owner)
            elif owner is not _WAKER:
                self._accept(owner)
        now = self.clock()
        for wire in self.wires:
            if wire in ready or (wire.due is not None and wire.due <= now):
                wire.service(now)
        self._drop_dead()

    def _watch_writes(self) -> None:
        """Wake for writability of exactly the guest devices holding unwritten output."""
        for wire in self.wires:
            wants = wire.wants_write
            if wants == (wire in self._writing):
                continue
            fd = wire.device.fileno()
            if fd is None:
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self._selector.modify(fd, events, wire)
            if wants:
                self._writing.add(wire)
            else:
                self._writing.discard(wire)

    def _accept(self, listener: Listener) -> None:
        for device in listener.accept():
            try:
                self.add_device(device)
            except Exception as exc:
                self.counters["guests_refused"] += 1
                log.warning("gateway: cannot serve %s: %s", device.name, exc)

    def _drop_dead(self) -> None:
        dead = [w for w in self.wires if w.closed]
        for wire in dead:
            self._forget(wire)
            self.counters["guests_gone"] += 1
            self.ended.append((wire.name, wire.failure or "closed", wire.snapshot()))

    def _forget(self, wire: GuestWire) -> None:
        self.wires.remove(wire)
        self._writing.discard(wire)
        for key in list(self._selector.get_map().values()):
            if key.data is wire:
                self._selector.unregister(key.fd)

    # -- the end ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Counters per live wire, and the gateway's own under ``"gateway"``."""
        out = {"gateway": dict(self.counters)}
        for wire in self.wires:
            out[wire.name] = wire.snapshot()
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for wire in list(self.wires):
            self._forget(wire)
            wire.close()
        for listener in self.listeners:
            self._selector.unregister(listener.fileno())
            listener.close()
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fd)  # wakers: the caller closes them
        self._selector.close()


def serve(devices: Iterable[Device], config: GatewayConfig | None = None,
          stop: Callable[[], bool] = lambda: False) -> None:
    """Serve fixed devices until ``stop()``; the gateway is closed afterwards."""
    gateway = Gateway(config)
    try:
        for device in devices:
            gateway.add_device(device)
        gateway.run(stop)
    finally:
        gateway.close()
