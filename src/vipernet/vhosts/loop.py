"""Virtual hosts alone in real time: the loop the load tool (and tests) run.

One turn (:meth:`HostsLoop.run_once`): wait on the device's descriptor until the hosts'
or the device's next deadline, feed every received frame to the switch, fire the due
hosts' timers, call ``on_turn(now)`` (the load tool drives its connections there, on the
sockets the switch reported changed), and send every host's output.  Single-threaded: the
sockets are the stack's sans-IO ones, used between turns with ``hosts.touch(stack)``.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Any

from vipernet.vhosts.switch import VirtualHosts

Clock = Callable[[], float]
_POLL_WITHOUT_FD = 0.001  # a device without a descriptor (an in-memory wire) is polled


class HostsLoop:
    """See the module docstring."""

    def __init__(self, hosts: VirtualHosts, device: Any, *, clock: Clock = time.monotonic,
                 on_turn: Callable[[float], float | None] | None = None) -> None:
        self.hosts = hosts
        self.device = device
        self.clock = clock
        self.on_turn = on_turn
        self._turn_deadline: float | None = None
        self.selector = selectors.DefaultSelector()
        self._fd: int | None = device.fileno()
        if self._fd is not None:
            self.selector.register(self._fd, selectors.EVENT_READ)

    def next_deadline(self) -> float | None:
        times = [t for t in (self.hosts.next_deadline(), self.device.next_deadline(),
                             self._turn_deadline) if t is not None]
        return min(times) if times else None

    def run_once(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` s) for a frame or a deadline, then do one turn."""
        now = self.clock()
        wait = timeout
        deadline = self.next_deadline()
        if deadline is not None:
            until = max(0.0, deadline - now)
            wait = until if wait is None else min(wait, until)
        if self._fd is None:
            wait = _POLL_WITHOUT_FD if wait is None else min(wait, _POLL_WITHOUT_FD)
        ready = self.selector.select(wait)
        now = self.clock()
        device = self.device
        due = device.next_deadline()
        if ready or self._fd is None or (due is not None and due <= now):
            receive = self.hosts.receive
            for frame in device.receive(now):
                receive(frame, now)
        self.hosts.poll(now)
        if self.on_turn is not None:
            self._turn_deadline = self.on_turn(now)
        self.flush(now)

    def flush(self, now: float) -> None:
        send = self.device.send
        for frame in self.hosts.transmit():
            send(frame, now)

    def close(self) -> None:
        """Release the selector (the device is the caller's)."""
        self.selector.close()
