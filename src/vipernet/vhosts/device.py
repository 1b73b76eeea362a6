"""Virtual hosts under an existing runtime: a device that is the wire plus the switch.

netd's :class:`~vipernet.runtime.Runtime` drives one stack and one device.  Wrapping the
device in a :class:`SwitchedDevice` puts the virtual hosts in that loop without touching
it: frames for a host go to the host inside :meth:`receive` and only the rest reach netd's
own stack; the hosts' timers make :meth:`next_deadline` (so the loop wakes for them), and
their output is sent at the end of each :meth:`receive`.  When a netd request queued
output on a host (connect, send), :meth:`next_deadline` is 0 and the loop's next turn
sends it: the runtime reads the device's deadline after the turn's requests ran.
"""

from __future__ import annotations

from typing import Any

from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.vhosts.switch import VirtualHosts


class SwitchedDevice:
    """A :class:`~vipernet.link.frame.Device`: ``inner`` with ``hosts`` switched in."""

    def __init__(self, inner: Any, hosts: VirtualHosts) -> None:
        self.inner = inner
        self.hosts = hosts
        self.capabilities: DeviceCapabilities = inner.capabilities

    def fileno(self) -> int | None:
        fileno: int | None = self.inner.fileno()
        return fileno

    def receive(self, now: float) -> list[Frame]:
        hosts = self.hosts
        others = [frame for frame in self.inner.receive(now) if not hosts.receive(frame, now)]
        hosts.poll(now)
        self.flush(now)
        return others

    def flush(self, now: float) -> None:
        """Send what the hosts have queued (and re-read their deadlines)."""
        send = self.inner.send
        for frame in self.hosts.transmit():
            send(frame, now)

    def send(self, frame: Frame, now: float) -> None:
        self.inner.send(frame, now)

    def next_deadline(self) -> float | None:
        ours = self.hosts.next_deadline()
        theirs: float | None = self.inner.next_deadline()
        if ours is None:
            return theirs
        return ours if theirs is None else min(ours, theirs)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Anything else (name, counters, a link's own extras) is the inner device's.
        return getattr(self.inner, name)
