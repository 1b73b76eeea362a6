"""The device side of a split virtqueue (virtio 1.x section 2.7), over a :class:`GuestMemory`.

Layout (little-endian, ``size`` a power of two):

* descriptor table: ``size`` x ``le64 addr | le32 len | le16 flags | le16 next``;
* available ring (driver -> device): ``le16 flags | le16 idx | le16 ring[size] | le16
  used_event``;
* used ring (device -> driver): ``le16 flags | le16 idx | {le32 id, le32 len}[size] |
  le16 avail_event``.

:meth:`SplitQueue.pop` takes the next available chain and walks it — through an indirect
table if ``VIRTIO_RING_F_INDIRECT_DESC`` was negotiated — into the guest buffers it names,
as memoryviews; :meth:`push` records a used entry and :meth:`publish` makes the batch visible
by writing ``used.idx`` once.  A chain that is malformed (index out of range, a loop, a
nested indirect table, a buffer outside guest memory) comes back with ``error`` set: the
caller returns it with length 0 and counts it; an available index that jumps further than
the ring is long is :class:`RingError` and the ring stops.

Notifications both ways follow the spec: :meth:`notify_due` says whether the driver wants an
interrupt for what was published (``VRING_AVAIL_F_NO_INTERRUPT``, or ``used_event`` with
``VIRTIO_RING_F_EVENT_IDX``), :meth:`enable_kicks` / :meth:`disable_kicks` ask the driver
to kick or not (``VRING_USED_F_NO_NOTIFY``, or ``avail_event``).

Memory ordering: the driver runs on other CPUs while we read and write the ring.  CPython
executes our loads and stores in program order and x86's TSO model keeps loads after loads
and stores after stores, so reading ``avail.idx`` before the ring entries, and writing the
used entries before ``used.idx``, need nothing more.  The one reordering x86 does allow is
a later load passing an earlier store still in the store buffer; where that matters —
publishing ``used.idx`` then reading ``used_event``, writing ``avail_event`` then reading
``avail.idx`` — :func:`full_fence` (an uncontended lock, i.e. a locked instruction) orders
them.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from vipernet.link.errors import LinkError
from vipernet.link.vhost_user.memory import GuestMemory, GuestMemoryError

DESC = struct.Struct("<QIHH")
DESC_SIZE = DESC.size
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")
_fence_lock = threading.Lock()


def full_fence() -> None:
    """A full memory barrier: acquiring an uncontended lock is a locked read-modify-write,
    which x86 never reorders with any load or store."""
    _fence_lock.acquire()
    _fence_lock.release()


class RingError(LinkError):
    """The driver broke the ring as a whole (e.g. ``avail.idx`` ran ahead by more than
    ``size``); the ring is stopped until the front-end sets it up again."""


@dataclass(slots=True)
class Chain:
    """One available descriptor chain: its head index and the guest buffers it names."""

    head: int
    readable: list[memoryview] = field(default_factory=list)
    writable: list[memoryview] = field(default_factory=list)
    error: str | None = None

    @property
    def writable_bytes(self) -> int:
        return sum(len(view) for view in self.writable)


def ring_sizes(size: int) -> tuple[int, int, int]:
    """Bytes of the descriptor table, available ring and used ring (event fields included)."""
    return DESC_SIZE * size, 6 + 2 * size, 6 + 8 * size


def valid_queue_size(size: int) -> bool:
    return 0 < size <= MAX_QUEUE_SIZE and size & (size - 1) == 0


class SplitQueue:
    """One started ring.  ``desc``/``avail``/``used`` are front-end *user* addresses."""

    def __init__(self, memory: GuestMemory, size: int, *, desc: int, avail: int, used: int,
                 last_avail: int = 0, event_idx: bool = False, indirect: bool = False) -> None:
        if not valid_queue_size(size):
            raise RingError(f"virtqueue size {size} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        desc_len, avail_len, used_len = ring_sizes(size)
        self.memory = memory
        self.size = size
        self.event_idx = event_idx
        self.indirect = indirect
        self._desc, self._desc_off = memory.user(desc, desc_len)
        self._avail, self._avail_off = memory.user(avail, avail_len)
        self._used, self._used_off = memory.user(used, used_len)
        self._mask = size - 1
        self.last_avail = last_avail & 0xFFFF
        # The used ring's index lives in guest memory: after a restart it is the truth.
        self.used_idx: int = _U16.unpack_from(self._used, self._used_off + 2)[0]
        self._signalled_used = self.used_idx
        self._signalled_valid = False
        self._published = self.used_idx

    # -- the available side ------------------------------------------------------------------

    def avail_idx(self) -> int:
        return int(_U16.unpack_from(self._avail, self._avail_off + 2)[0])

    def pending(self) -> int:
        """Chains the driver made available that we have not taken yet."""
        count = (self.avail_idx() - self.last_avail) & 0xFFFF
        if count > self.size:
            raise RingError(f"avail.idx is {count} entries ahead of us on a ring of {self.size}")
        return count

    def pop(self) -> Chain | None:
        """The next available chain (advancing past it), or None if there is none."""
        if self.avail_idx() == self.last_avail:
            return None
        slot = self._avail_off + 4 + 2 * (self.last_avail & self._mask)
        head = _U16.unpack_from(self._avail, slot)[0]
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        return self._walk(head)

    def unpop(self, count: int) -> None:
        """Give back the last ``count`` popped chains (they were only read, never used)."""
        self.last_avail = (self.last_avail - count) & 0xFFFF

    def _walk(self, head: int) -> Chain:
        chain = Chain(head)
        if head >= self.size:
            chain.error = f"head index {head} >= queue size {self.size}"
            return chain
        memory = self.memory
        table, base, limit = self._desc, self._desc_off, self.size
        index = head
        seen = 0
        in_indirect = False
        readable, writable = chain.readable, chain.writable
        unpack = DESC.unpack_from
        try:
            while True:
                addr, length, flags, nxt = unpack(table, base + DESC_SIZE * index)
                if flags & DESC_F_INDIRECT:
                    if not self.indirect or in_indirect or flags & DESC_F_NEXT:
                        chain.error = "indirect descriptor not allowed here"
                        return chain
                    if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_QUEUE_SIZE:
                        chain.error = f"indirect table of {length} bytes"
                        return chain
                    table, base = memory.guest(addr, length), 0
                    limit = length // DESC_SIZE
                    index, seen, in_indirect = 0, 0, True
                    continue
                if length:
                    view = memory.guest(addr, length)
                    (writable if flags & DESC_F_WRITE else readable).append(view)
                seen += 1
                if not flags & DESC_F_NEXT:
                    return chain
                if seen >= limit:
                    chain.error = f"descriptor chain longer than its table ({limit}): a loop"
                    return chain
                if nxt >= limit:
                    chain.error = f"next index {nxt} >= table size {limit}"
                    return chain
                index = nxt
        except GuestMemoryError as exc:
            chain.error = str(exc)
            return chain

    # -- the used side -----------------------------------------------------------------------

    def push(self, head: int, length: int) -> None:
        """Record chain ``head`` as used with ``length`` bytes written (not visible yet)."""
        slot = self._used_off + 4 + 8 * (self.used_idx & self._mask)
        _USED_ELEM.pack_into(self._used, slot, head, length)
        self.used_idx = (self.used_idx + 1) & 0xFFFF

    def publish(self) -> bool:
        """Make pushed entries visible (one ``used.idx`` store); True if there were any."""
        if self.used_idx == self._published:
            return False
        _U16.pack_into(self._used, self._used_off + 2, self.used_idx)
        self._published = self.used_idx
        return True

    def notify_due(self) -> bool:
        """Whether the driver wants an interrupt for what has been published since the last
        time this said yes (call once per published batch)."""
        full_fence()  # used.idx (stored) before used_event / avail.flags (loaded)
        if not self.event_idx:
            flags = _U16.unpack_from(self._avail, self._avail_off)[0]
            return not flags & AVAIL_F_NO_INTERRUPT
        old, new = self._signalled_used, self._published
        valid = self._signalled_valid
        self._signalled_used, self._signalled_valid = new, True
        if not valid:
            return True
        event = _U16.unpack_from(self._avail, self._avail_off + 4 + 2 * self.size)[0]
        return bool(((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF))

    def enable_kicks(self) -> bool:
        """Ask the driver to kick when it adds chains; True if some are already waiting
        (added before the driver could see our request: process them, no kick will come)."""
        if self.event_idx:
            _U16.pack_into(self._used, self._used_off + 4 + 8 * self.size, self.last_avail)
        else:
            _U16.pack_into(self._used, self._used_off, 0)
        full_fence()  # avail_event / used.flags (stored) before avail.idx (loaded)
        return self.avail_idx() != self.last_avail

    def disable_kicks(self) -> None:
        """Tell the driver kicks are not needed now (we will look at the ring anyway).  With
        event indices leaving ``avail_event`` behind has that effect already."""
        if not self.event_idx:
            _U16.pack_into(self._used, self._used_off, USED_F_NO_NOTIFY)
