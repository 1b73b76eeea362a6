"""Where the DHCP engine meets a real device: a blocking first lease, then a device wrapper.

The seam (why it is here and not in the stack): DHCP must speak before the stack has an
address and must hear replies sent to an address nobody has yet, so the client owns its
frames end to end and the stack never sees them.

* :func:`acquire` drives a :class:`~.client.DhcpClient` on a device until the first ACK
  (select on the device's fd, bounded by ``timeout``) and returns the :class:`Lease`;
  frames that are not DHCP replies are discarded meanwhile (nothing has an address yet),
  except ARP frames while the client probes its new address (``client.probing``).
  netd then builds its :class:`~vipernet.stack.Stack` with the lease's address, router,
  DNS servers and MTU.
* :class:`DhcpDevice` then wraps the device for the stack's runtime: every received frame
  that is IPv4/UDP to port 68 goes to the client instead of the stack; the client's timers
  (T1 renew, T2 rebind, expiry) ride on the device's ``next_deadline``; its frames go
  straight out on the inner device.  ARP frames are shown to a probing client and still
  passed up.  Lease events go to ``on_event``; :meth:`attach` makes a stack follow them
  (``Stack.set_address`` on a changed address, the stack's DNS list and an ``on_dns``
  callback on changed DNS servers; a lost lease keeps the old address until a new one
  arrives, as the client restarts at once).

A pcap capture wrapped around a :class:`DhcpDevice` sees the frames the stack exchanges,
not the client's own.
"""

from __future__ import annotations

import dataclasses
import logging
import selectors
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from vipernet.dhcp.client import DhcpClient, Event, Lease, LeaseLost, LeaseObtained, LeaseRenewed
from vipernet.dhcp.codec import DhcpError
from vipernet.dhcp.frames import is_arp_frame, is_dhcp_reply_frame
from vipernet.link.frame import Device, DeviceCapabilities, Frame

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class DhcpTimeout(DhcpError, TimeoutError):
    """No lease within the time allowed."""


def acquire(device: Device, client: DhcpClient, *, clock: Clock = time.monotonic,
            timeout: float = 15.0) -> Lease:
    """Run ``client`` on ``device`` until it holds a lease (or :class:`DhcpTimeout`)."""
    now = clock()
    end = now + timeout
    client.start(now)
    fd = device.fileno()
    selector = selectors.DefaultSelector()
    if fd is not None:
        selector.register(fd, selectors.EVENT_READ)
    try:
        while True:
            for frame in client.transmit():
                device.send(frame, now)
            for event in client.take_events():
                if isinstance(event, LeaseObtained):
                    return event.lease
            now = clock()
            if now >= end:
                raise DhcpTimeout(f"no DHCP lease within {timeout:g}s "
                                  f"(state {client.state.value}, sent "
                                  f"{client.counters['tx.discover']} DISCOVER, "
                                  f"{client.counters['tx.request']} REQUEST)")
            due = [d for d in (client.next_deadline(), device.next_deadline()) if d is not None]
            wait = max(0.0, min([end, *due]) - now)
            if fd is None:
                wait = min(wait, 0.001)
            selector.select(wait)
            now = clock()
            for frame in device.receive(now):
                if is_dhcp_reply_frame(frame.data):
                    client.receive(frame, now)
                elif client.probing and is_arp_frame(frame.data):
                    client.receive_arp(frame, now)
            client.poll(now)
    finally:
        selector.close()


class DhcpDevice:
    """A :class:`~vipernet.link.frame.Device` that keeps a DHCP lease alive underneath a stack."""

    def __init__(self, inner: Device, client: DhcpClient, *,
                 on_event: Callable[[Event, float], None] | None = None) -> None:
        self.inner = inner
        self.client = client
        self.on_event = on_event
        self.events: deque[Event] = deque(maxlen=32)  # the latest, for `info` and tests
        self.capabilities: DeviceCapabilities = getattr(
            inner, "capabilities", DeviceCapabilities())
        self.name: str = getattr(inner, "name", "dhcp")
        self.counters: Any = getattr(inner, "counters", None)

    def attach(self, stack: Any, *,
               on_dns: Callable[[tuple[IPv4Address, ...]], None] | None = None) -> None:
        """Make ``stack`` follow the lease: a new address or router is set on it; new DNS
        servers replace the stack's list (what ``info`` reports) and go to ``on_dns`` (netd
        points its resolver at them)."""
        def follow(event: Event, now: float) -> None:
            if isinstance(event, (LeaseObtained, LeaseRenewed)):
                lease = event.lease
                config = stack.config
                if config.ip != lease.address or config.gateway != lease.router:
                    log.info("dhcp: address now %s (router %s)", lease.address, lease.router)
                    stack.set_address(lease.address, now, gateway=lease.router)
                if lease.dns and tuple(lease.dns) != tuple(stack.config.dns):
                    log.info("dhcp: DNS servers now %s", ", ".join(map(str, lease.dns)))
                    # StackConfig is frozen; the stack itself only reports dns, so a new
                    # config object is all it takes (as Stack.set_address does for ip).
                    stack.config = dataclasses.replace(stack.config, dns=tuple(lease.dns))
                    if on_dns is not None:
                        on_dns(tuple(lease.dns))
            elif isinstance(event, LeaseLost):
                log.warning("dhcp: lease lost (%s); asking again", event.reason)

        self.on_event = follow

    # -- Device ---------------------------------------------------------------------------

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def receive(self, now: float) -> list[Frame]:
        client = self.client
        kept: list[Frame] = []
        for frame in self.inner.receive(now):
            if is_dhcp_reply_frame(frame.data):
                client.receive(frame, now)
                continue
            if client.probing and is_arp_frame(frame.data):
                client.receive_arp(frame, now)  # the stack still answers its own ARP
            kept.append(frame)
        client.poll(now)
        self._flush(now)
        return kept

    def send(self, frame: Frame, now: float) -> None:
        self.inner.send(frame, now)

    def next_deadline(self) -> float | None:
        due = [d for d in (self.inner.next_deadline(), self.client.next_deadline())
               if d is not None]
        return min(due) if due else None

    def close(self) -> None:
        self.inner.close()

    def release(self, now: float) -> None:
        """Send DHCPRELEASE for the current lease (before closing, if wanted)."""
        self.client.release(now)
        self._flush(now)

    def _flush(self, now: float) -> None:
        for frame in self.client.transmit():
            self.inner.send(frame, now)
        for event in self.client.take_events():
            self.events.append(event)
            if self.on_event is not None:
                try:
                    self.on_event(event, now)
                except Exception:  # a callback bug must not stop the link
                    log.exception("dhcp: lease event handler failed")
