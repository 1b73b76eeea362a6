"""One guest wire: a guest's network device joined to its own user-mode gateway.

The guest end is any :class:`~vipernet.link.frame.Device` — a QEMU stream or datagram
socket, a TAP, a vhost-user virtqueue pair.  What the guest sends is handed to a
:class:`~vipernet.slirp.SlirpDevice` (the NAT, the gateway stack at 10.0.2.2, DHCP, DNS
relay and host sockets) as if the guest were a stack in this process; what the gateway
answers goes back out of the guest's device.  Every wire has a gateway of its own, so
guests on different wires never see each other's frames, and each gets the libslirp
layout (10.0.2.15 by DHCP) as it would from its own QEMU.

A guest device that fails (the peer closed its socket, QEMU exited, a stream lost its
framing) ends the wire: its gateway is closed, which closes every host socket of its
flows, and the owner (:class:`~vipernet.gateway.server.Gateway`) forgets it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from vipernet.link.errors import LinkError
from vipernet.link.frame import Device
from vipernet.slirp import SlirpConfig, SlirpDevice

log = logging.getLogger(__name__)


class GuestWire:
    """A guest's device and the gateway that serves it."""

    def __init__(self, device: Device, config: SlirpConfig, *, now: float,
                 rng: random.Random | None = None) -> None:
        self.device = device
        caps = device.capabilities
        # The gateway stack sends what the guest's wire can carry: TSO frames only where
        # the device takes them (a TAP or virtqueue with a virtio-net header).
        self.slirp = SlirpDevice(config, mtu=caps.mtu, now=now, rng=rng,
                                 offloads=caps.tso and caps.tx_csum_offload)
        self.frames_from_guest = 0
        self.frames_to_guest = 0
        # A device that batches its writes (a stream with autoflush off) is flushed once
        # per round, so a burst of segments costs a system call, not one per frame.
        self._flush: Callable[[float], None] | None = getattr(device, "flush", None)
        self.closed = False
        self.failure: str | None = None
        # When service() is next due on time alone, as of its last call: state changes
        # only there, so the loop need not ask the gateway before every wait.
        self.due: float | None = self.next_deadline()

    @property
    def name(self) -> str:
        return self.device.name

    def service(self, now: float) -> None:
        """One exchange: the guest's frames to the gateway, the gateway's answers back.

        One round is enough: the fds are watched level-triggered, so input left unread
        wakes the loop again, and a gateway with work left says so in its deadline.  A
        second round to find out that nothing moved cost a full gateway pass per frame,
        which is what a ping or a short connection pays for in latency."""
        if self.closed:
            return
        device, slirp = self.device, self.slirp
        try:
            from_guest = device.receive(now)
            for frame in from_guest:
                slirp.send(frame, now)
            to_guest = slirp.receive(now)
            for frame in to_guest:
                device.send(frame, now)
            if self._flush is not None:
                self._flush(now)
            self.frames_from_guest += len(from_guest)
            self.frames_to_guest += len(to_guest)
        except LinkError as exc:
            self.fail(str(exc))
        except OSError as exc:
            self.fail(f"{device.name}: {exc.strerror or exc}")
        self.due = self.next_deadline()

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        due = [d for d in (self.device.next_deadline(), self.slirp.next_deadline())
               if d is not None]
        return min(due) if due else None

    @property
    def wants_write(self) -> bool:
        """True while the guest's device holds output its socket would not take yet."""
        return not self.closed and bool(getattr(self.device, "wants_write", False))

    def fds(self) -> list[int]:
        """The fds whose readiness means :meth:`service` has work."""
        if self.closed:
            return []
        return [fd for fd in (self.device.fileno(), self.slirp.fileno()) if fd is not None]

    def fail(self, reason: str) -> None:
        """The guest is gone: free its flows and host sockets."""
        if self.closed:
            return
        self.failure = reason
        log.info("gateway: guest wire %s ended: %s", self.device.name, reason)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.slirp.close()
        finally:
            self.device.close()

    def snapshot(self) -> dict[str, int]:
        """The wire's and its gateway's counters, prefixed by where they come from."""
        out = {"wire.frames_from_guest": self.frames_from_guest,
               "wire.frames_to_guest": self.frames_to_guest}
        out.update({f"gateway.{k}": v for k, v in self.slirp.counters.items()})
        link = getattr(self.device, "counters", None)
        for field in ("rx_frames", "tx_frames", "rx_drops", "tx_drops", "rx_errors"):
            value = getattr(link, field, None)
            if isinstance(value, int):
                out[f"link.{field}"] = value
        return out
