"""Many virtual hosts on one wire: a stack per host and the switch between them and it.

:class:`VirtualHosts` owns one :class:`~.host_stack.HostStack` per identity (its own MAC,
IP, ARP cache, sockets) and does, for all of them, what a runtime does for one stack:

* :meth:`receive` hands a frame to the host it is for -- by destination MAC, and an ARP
  request (a broadcast) only to the host whose IP it asks about -- with two dict lookups,
  never a scan; a frame for nobody here is left to the caller (netd's own stack).
* :meth:`poll` fires the timers of the hosts whose deadline is due: a heap of deadlines,
  so an idle host costs nothing per turn.
* :meth:`transmit` collects the output of the hosts that have some, and re-reads the
  deadline of every host something happened to since the last call (it received a frame,
  was polled, queued a frame, or the caller :meth:`touch`-ed it after a socket call).

The heap keeps stale entries rather than searching for them: an entry whose time is not
the host's current ``due`` (or whose host was removed) is skipped when it surfaces, and
the heap is rebuilt when stale entries outnumber live hosts.  A host polled a little
early (its deadline moved later) just finds nothing due.

All hosts share one ``random.Random``: a Mersenne Twister state is 2.5 KB, a quarter of an
idle host, and the draws (ports, ISNs, IP ids) need no per-host stream.  Nothing here
reads a clock or touches a descriptor: the caller passes ``now`` in (sans-IO, like Stack).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from vipernet.errors import UsageError
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.stack.config import StackConfig
from vipernet.vhosts.host_stack import HostStack
from vipernet.vhosts.ranges import HostRange, mac_for

_ARP_TYPE = b"\x08\x06"
_ARP_REQUEST = b"\x00\x01"
_BROADCAST = b"\xff" * 6
_MIN_ARP_FRAME = 14 + 28
_HEAP_SLACK = 1024  # stale heap entries tolerated beyond one per host before a rebuild


class HostExists(UsageError):
    """A host with that IP or MAC is already on the switch."""


class VirtualHosts:
    """See the module docstring."""

    def __init__(self, *, capabilities: DeviceCapabilities | None = None, now: float,
                 rng: random.Random | None = None, gateway: IPv4Address | None = None,
                 mtu: int = 1500, on_changed: Callable[[Any], None] | None = None) -> None:
        self.capabilities = capabilities or DeviceCapabilities(mtu=mtu)
        self.gateway = gateway
        self.mtu = mtu
        self.rng = rng or random.Random()
        self.counters: dict[str, int] = {}
        self.changed: set[Any] = set()
        # Where socket readiness changes go: netd passes its own stack's mark_changed, so
        # the service sees every host's sockets through the one take_changed it reads.
        self._on_changed = on_changed or self._note_changed
        self._by_mac: dict[bytes, HostStack] = {}
        self._by_ip: dict[bytes, HostStack] = {}
        self._touched: set[HostStack] = set()
        self._heap: list[tuple[float, int, HostStack]] = []
        self._seq = itertools.count()
        self._now = now

    # -- hosts ---------------------------------------------------------------------------

    def add(self, ip: IPv4Interface, now: float, *, mac: bytes | None = None) -> HostStack:
        """A new host at ``ip`` (MAC derived from it unless given); announced by a
        gratuitous ARP on the next :meth:`transmit`."""
        mac = mac_for(ip.ip) if mac is None else mac
        key = ip.ip.packed
        if key in self._by_ip or mac in self._by_mac:
            raise HostExists(f"a virtual host already has {ip.ip} or that MAC")
        gateway = self.gateway if self.gateway is not None and \
            self.gateway in ip.network else None
        config = StackConfig(mac=mac, ip=ip, gateway=gateway, dns=(), mtu=self.mtu,
                             ip6="off")
        stack = HostStack(config, capabilities=self.capabilities, now=now, rng=self.rng,
                          on_output=self._output_ready, on_changed=self._on_changed)
        self._by_ip[key] = stack
        self._by_mac[mac] = stack
        self._touched.add(stack)
        self._count("hosts.added")
        return stack

    def add_range(self, plan: HostRange, now: float) -> list[HostStack]:
        """Every host of ``plan``; none if one of them exists already (HostExists)."""
        interfaces = list(plan.interfaces())
        for ip in interfaces:
            if ip.ip.packed in self._by_ip or mac_for(ip.ip) in self._by_mac:
                raise HostExists(f"a virtual host already has {ip.ip}")
        return [self.add(ip, now) for ip in interfaces]

    def remove(self, ip: IPv4Address) -> bool:
        """Drop the host at ``ip`` at once, like a machine unplugged: its queued frames
        are not sent and its peers' connections time out (no RST).  False if absent."""
        stack = self._by_ip.pop(ip.packed, None)
        if stack is None:
            return False
        self._by_mac.pop(stack.config.mac, None)
        self._touched.discard(stack)
        stack.removed = True
        self._count("hosts.removed")
        if len(self._heap) > 2 * len(self._by_ip) + _HEAP_SLACK:
            self._rebuild_heap()
        return True

    def get(self, ip: IPv4Address) -> HostStack | None:
        return self._by_ip.get(ip.packed)

    def __len__(self) -> int:
        return len(self._by_ip)

    def __iter__(self) -> Iterator[HostStack]:
        return iter(list(self._by_ip.values()))

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, IPv4Address) and ip.packed in self._by_ip

    # -- frames in -----------------------------------------------------------------------

    def owner(self, data: bytes | bytearray | memoryview) -> HostStack | None:
        """The host a frame is for, or None (not ours: netd's own stack may want it)."""
        stack = self._by_mac.get(bytes(data[0:6]))
        if stack is not None:
            return stack
        if (len(data) >= _MIN_ARP_FRAME and data[0:6] == _BROADCAST
                and data[12:14] == _ARP_TYPE and data[20:22] == _ARP_REQUEST):
            # Who has <target IP>? -- only that host hears it: 10,000 hosts must not
            # each parse every ARP request on the wire.
            return self._by_ip.get(bytes(data[38:42]))
        return None

    def receive(self, frame: Frame, now: float) -> bool:
        """Give ``frame`` to the host it is for; False if it is for none of them."""
        self._now = now
        stack = self.owner(frame.data)
        if stack is None:
            self._count("rx.not_ours")
            return False
        self._count("rx.frames")
        stack.receive(frame, now)
        self._touched.add(stack)
        return True

    # -- timers and frames out -------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Fire the timers of every host whose deadline has come."""
        self._now = now
        heap = self._heap
        due: list[HostStack] = []
        while heap and heap[0][0] <= now:
            when, _seq, stack = heapq.heappop(heap)
            if stack.removed or stack.due != when:
                continue  # stale: rescheduled since, or gone
            stack.due = None
            due.append(stack)
        for stack in due:  # polled after the scan: a host due again at once waits a turn
            stack.poll(now)
            self._touched.add(stack)
        if due:
            self._count("polls", len(due))

    def transmit(self) -> list[Frame]:
        """Every frame the hosts have ready; re-reads the touched hosts' deadlines."""
        touched, self._touched = self._touched, set()
        frames: list[Frame] = []
        for stack in touched:
            if stack.removed:
                continue
            if stack.has_output or stack.has_local:
                frames.extend(stack.transmit())
            self._schedule(stack)
        if frames:
            self._count("tx.frames", len(frames))
        return frames

    def touch(self, stack: HostStack) -> None:
        """A socket of ``stack`` was used from outside (connect, send, close...): look at
        its deadline and output again on the next :meth:`transmit`."""
        if not stack.removed:
            self._touched.add(stack)

    @property
    def has_work(self) -> bool:
        """Some host needs :meth:`transmit` (output queued, or a deadline to re-read)."""
        return bool(self._touched)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must next run (0.0: :meth:`transmit` has work now)."""
        if self._touched:
            return 0.0
        heap = self._heap
        while heap and (heap[0][2].removed or heap[0][2].due != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def take_changed(self) -> set[Any]:
        """Sockets whose readiness changed (when no ``on_changed`` sink was given)."""
        changed, self.changed = self.changed, set()
        return changed

    def _output_ready(self, stack: HostStack) -> None:
        # A method, not a bound ``set.add``: transmit() replaces the set.
        self._touched.add(stack)

    def _note_changed(self, sock: object) -> None:
        self.changed.add(sock)

    def _schedule(self, stack: HostStack) -> None:
        when = stack.next_deadline()
        if when == stack.due:
            return
        stack.due = when
        if when is not None:
            heapq.heappush(self._heap, (when, next(self._seq), stack))
            if len(self._heap) > 2 * len(self._by_ip) + _HEAP_SLACK:
                self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        self._heap = [entry for entry in self._heap
                      if not entry[2].removed and entry[2].due == entry[0]]
        heapq.heapify(self._heap)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
