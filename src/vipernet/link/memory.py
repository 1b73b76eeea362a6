"""An in-memory link: two devices joined back to back, for tests and virtual-clock simulations.

``MemoryLink.pair()`` returns ``(a, b)``: what ``a`` sends, ``b`` receives on its next
``receive()`` and vice versa.  There is no file descriptor (``fileno()`` is None) and no clock:
frames are available immediately, so a simulation steps both stacks in a loop and lets a
:class:`~vipernet.link.faults.FaultInjector` add delay, loss and reordering on top.  Having no
fd to wake a loop, a device with frames waiting reports the ``now`` at which the first of them
was sent as its ``next_deadline()`` — already due — so a loop that sleeps until the earliest
deadline never sleeps on a full inbox.

Offload metadata travels with the frame when the capabilities allow it, the way virtio-net
hands a partial-checksum or GSO frame to the other side; when they do not, the sender's
partial checksums are completed and GSO frames are cut to MSS segments before delivery, so the
receiver never sees metadata its peer's device could not have produced.
"""

from __future__ import annotations

from collections import deque

from vipernet.link.counters import LinkCounters
from vipernet.link.errors import DeviceClosed
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.link.offload import check_frame_size, resolve_offloads

DEFAULT_QUEUE_LIMIT = 4096  # frames waiting in one direction before the link drops


class MemoryDevice:
    """One end of a :class:`MemoryLink`."""

    def __init__(self, name: str, capabilities: DeviceCapabilities, queue_limit: int) -> None:
        self.name = name
        self.capabilities = capabilities
        self.counters = LinkCounters()
        self._inbox: deque[Frame] = deque()
        self._waiting_since: float | None = None  # the sender's `now` for the oldest frame
        self._queue_limit = queue_limit
        self._peer: MemoryDevice | None = None
        self._closed = False

    def fileno(self) -> int | None:
        return None

    def pending(self) -> int:
        """Frames waiting for our next receive()."""
        return len(self._inbox)

    def receive(self, now: float) -> list[Frame]:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        frames = list(self._inbox)
        self._inbox.clear()
        self._waiting_since = None
        for frame in frames:
            self.counters.count_rx(len(frame.data))
        return frames

    def send(self, frame: Frame, now: float) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        check_frame_size(self.name, frame, self.capabilities)
        peer = self._peer
        for out in resolve_offloads(frame, csum=self.capabilities.tx_csum_offload,
                                    tso=self.capabilities.tso):
            if peer is None or peer._closed or len(peer._inbox) >= peer._queue_limit:
                # A cable with nobody at the far end (or a full ring) loses the frame.
                self.counters.tx_drops += 1
                continue
            # bytes() copies a bytearray/memoryview the caller may reuse; bytes stay as is.
            data = out.data if isinstance(out.data, bytes) else bytes(out.data)
            if not peer._inbox:
                peer._waiting_since = now
            peer._inbox.append(Frame(data, out.offload))
            self.counters.count_tx(len(data))

    def next_deadline(self) -> float | None:
        return self._waiting_since

    def close(self) -> None:
        self._closed = True
        self._inbox.clear()
        self._waiting_since = None


class MemoryLink:
    """Factory for a connected pair of :class:`MemoryDevice`."""

    @staticmethod
    def pair(capabilities: DeviceCapabilities | None = None, *,
             names: tuple[str, str] = ("mem0", "mem1"),
             queue_limit: int = DEFAULT_QUEUE_LIMIT) -> tuple[MemoryDevice, MemoryDevice]:
        caps = capabilities if capabilities is not None else DeviceCapabilities()
        a = MemoryDevice(names[0], caps, queue_limit)
        b = MemoryDevice(names[1], caps, queue_limit)
        a._peer = b
        b._peer = a
        return a, b
