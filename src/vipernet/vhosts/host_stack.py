"""One virtual host's stack: a :class:`~vipernet.stack.Stack` that tells its switch when
it has something to send and when one of its sockets changed.

The switch must not look at every host on every loop turn (10,000 hosts), so each host
reports itself: the first frame a host queues since its last :meth:`transmit` puts it in
the switch's set of hosts with output (that set is what gets flushed, and what gets its
deadline re-read), and socket readiness changes go straight to the switch's sink (netd's
own stack, or the load tool's set) instead of a per-host set nobody would look at.

Every frame a Stack builds goes through ``_emit``, ``_emit_ipv4`` or ``_emit_ipv6`` (ARP,
the IP layers and the echo fast path all call them), which is why those three are the
hooks.  This subclasses the stack's private emit methods: a public "output ready" callback
in Stack would be cleaner and is asked for in the vhosts report.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from vipernet.link.frame import DeviceCapabilities, Frame, Offload
from vipernet.stack.config import StackConfig
from vipernet.stack.stack import Stack


class HostStack(Stack):
    """A Stack whose output and socket changes are reported to its switch."""

    def __init__(self, config: StackConfig, *, capabilities: DeviceCapabilities,
                 now: float, rng: random.Random,
                 on_output: Callable[[HostStack], None],
                 on_changed: Callable[[Any], None]) -> None:
        # Set before Stack.__init__: it already sends (the gratuitous ARP).
        self._on_output = on_output
        # The switch's bookkeeping, kept here rather than in a record of its own (one
        # object per host less): the deadline its heap entry was made for, and whether
        # the host is gone (its heap and output entries are then skipped).
        self.due: float | None = None
        self.removed = False
        self._on_changed = on_changed
        super().__init__(config, capabilities=capabilities, now=now, rng=rng)

    def _emit(self, frame: Frame) -> None:
        if not self._tx:
            self._on_output(self)
        self._tx.append(frame)

    def _emit_ipv4(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None:
        if not self._tx:
            self._on_output(self)
        super()._emit_ipv4(dst_mac, header, payload, offload)

    def _emit_ipv6(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None:
        if not self._tx:
            self._on_output(self)
        super()._emit_ipv6(dst_mac, header, payload, offload)

    def mark_changed(self, sock: object) -> None:
        # A readiness change can move a timer without any frame leaving (a connection
        # established, closed, reset): the switch re-reads this host's deadline too.
        self._on_output(self)
        self._on_changed(sock)

    @property
    def has_output(self) -> bool:
        return bool(self._tx)
