"""The split virtqueue, device side, against a fake driver in a bytearray.

:class:`FakeDriver` plays the guest's virtio driver on one ring (the other vhost-user tests
import it): it lays out the descriptor table, available and used rings in a buffer, posts
chains (optionally through an indirect table) and reads back used entries.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.link.vhost_user.memory import GuestMemory, GuestMemoryError
from vipernet.link.vhost_user.virtqueue import (
    AVAIL_F_NO_INTERRUPT,
    DESC_F_INDIRECT,
    DESC_F_NEXT,
    DESC_F_WRITE,
    USED_F_NO_NOTIFY,
    RingError,
    SplitQueue,
)

GPA = 0x100000  # where the fake guest's RAM starts, guest-physically ...
UVA = 0x7F0000000000  # ... and in the (fake) front-end's address space
MEM_SIZE = 1 << 20
DESC = struct.Struct("<QIHH")


@dataclass
class Buffer:
    """One buffer to post: bytes the device reads, or a writable area of ``size`` bytes."""

    data: bytes = b""
    size: int = 0

    @property
    def writable(self) -> bool:
        return not self.data


class FakeDriver:
    """The driver side of one split ring in ``mem`` (guest-physical ``GPA`` at offset 0)."""

    def __init__(self, mem: bytearray | memoryview, *, ring_offset: int = 0, size: int = 8,
                 data_offset: int = 0x10000, event_idx: bool = False) -> None:
        self.mem = mem
        self.size = size
        self.event_idx = event_idx
        self.desc_off = ring_offset
        self.avail_off = ring_offset + 16 * size
        self.used_off = (self.avail_off + 6 + 2 * size + 3) & ~3
        self.next_data = data_offset
        self.free = list(range(size))
        self.avail_idx = 0
        self.last_used = 0
        self.heads: dict[int, list[tuple[int, int]]] = {}  # head -> its buffers (offset, len)
        self.descs: dict[int, list[int]] = {}  # head -> the descriptors its chain holds

    # addresses as the device is told them
    @property
    def desc_uva(self) -> int:
        return UVA + self.desc_off

    @property
    def avail_uva(self) -> int:
        return UVA + self.avail_off

    @property
    def used_uva(self) -> int:
        return UVA + self.used_off

    def queue(self, memory: GuestMemory, *, indirect: bool = True) -> SplitQueue:
        return SplitQueue(memory, self.size, desc=self.desc_uva, avail=self.avail_uva,
                          used=self.used_uva, event_idx=self.event_idx, indirect=indirect)

    def alloc(self, length: int) -> int:
        offset = self.next_data
        self.next_data += (length + 15) & ~15
        assert self.next_data <= len(self.mem)
        return offset

    def write_desc(self, table_off: int, index: int, addr: int, length: int, flags: int,
                   nxt: int) -> None:
        DESC.pack_into(self.mem, table_off + 16 * index, addr, length, flags, nxt)

    def post(self, buffers: Sequence[Buffer], *, indirect: bool = False,
             publish: bool = True) -> int:
        """Post one chain; returns its head index."""
        placed: list[tuple[int, int, bool]] = []
        for buf in buffers:
            length = len(buf.data) or buf.size
            offset = self.alloc(length)
            if buf.data:
                self.mem[offset:offset + length] = buf.data
            placed.append((offset, length, buf.writable))
        if indirect:
            table = self.alloc(16 * len(placed))
            for i, (offset, length, writable) in enumerate(placed):
                flags = (DESC_F_WRITE if writable else 0) | (
                    DESC_F_NEXT if i + 1 < len(placed) else 0)
                self.write_desc(table, i, GPA + offset, length, flags, i + 1)
            head = self.free.pop(0)
            self.write_desc(self.desc_off, head, GPA + table, 16 * len(placed),
                            DESC_F_INDIRECT, 0)
            self.descs[head] = [head]
        else:
            indices = [self.free.pop(0) for _ in placed]
            for i, (offset, length, writable) in enumerate(placed):
                flags = (DESC_F_WRITE if writable else 0) | (
                    DESC_F_NEXT if i + 1 < len(placed) else 0)
                nxt = indices[i + 1] if i + 1 < len(placed) else 0
                self.write_desc(self.desc_off, indices[i], GPA + offset, length, flags, nxt)
            head = indices[0]
            self.descs[head] = indices
        self.heads[head] = [(offset, length) for offset, length, _ in placed]
        self.put_head(head, publish=publish)
        return head

    def put_head(self, head: int, *, publish: bool = True) -> None:
        slot = self.avail_off + 4 + 2 * (self.avail_idx % self.size)
        struct.pack_into("<H", self.mem, slot, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        if publish:
            self.publish()

    def publish(self) -> None:
        struct.pack_into("<H", self.mem, self.avail_off + 2, self.avail_idx)

    def set_avail_flags(self, flags: int) -> None:
        struct.pack_into("<H", self.mem, self.avail_off, flags)

    def set_used_event(self, value: int) -> None:
        struct.pack_into("<H", self.mem, self.avail_off + 4 + 2 * self.size, value)

    def used_flags(self) -> int:
        return int(struct.unpack_from("<H", self.mem, self.used_off)[0])

    def avail_event(self) -> int:
        return int(struct.unpack_from("<H", self.mem, self.used_off + 4 + 8 * self.size)[0])

    def used_idx(self) -> int:
        return int(struct.unpack_from("<H", self.mem, self.used_off + 2)[0])

    def take_used(self) -> list[tuple[int, int]]:
        """New used entries (id, len), recycling their descriptors."""
        out = []
        while self.last_used != self.used_idx():
            slot = self.used_off + 4 + 8 * (self.last_used % self.size)
            ident, length = struct.unpack_from("<II", self.mem, slot)
            out.append((ident, length))
            self.last_used = (self.last_used + 1) & 0xFFFF
            self.free.extend(self.descs.pop(ident, []))
        return out

    def written(self, head: int, length: int) -> bytes:
        """The first ``length`` bytes the device wrote into chain ``head``'s buffers."""
        out = bytearray()
        for offset, size in self.heads[head]:
            out += self.mem[offset:offset + size]
        return bytes(out[:length])


def fake_memory(size: int = MEM_SIZE) -> tuple[bytearray, GuestMemory]:
    mem = bytearray(size)
    return mem, GuestMemory.from_buffers([(GPA, mem, UVA)])


# -- memory -------------------------------------------------------------------------------------


def test_memory_translates_both_address_kinds_and_checks_bounds() -> None:
    mem, memory = fake_memory(4096)
    mem[100:104] = b"abcd"
    assert bytes(memory.guest(GPA + 100, 4)) == b"abcd"
    view, offset = memory.user(UVA + 100, 4)
    assert bytes(view[offset:offset + 4]) == b"abcd"
    assert bytes(memory.guest(GPA + 4092, 4)) == bytes(4)
    for addr, length in [(GPA + 4093, 4), (GPA - 1, 2), (0, 1), (GPA, 4097), (GPA, -1),
                         (UVA, 1), (1 << 64, 1)]:
        with pytest.raises(GuestMemoryError):
            memory.guest(addr, length)
    with pytest.raises(GuestMemoryError):
        memory.user(GPA, 4)


def test_memory_regions_are_looked_up_separately() -> None:
    low, high = bytearray(4096), bytearray(4096)
    memory = GuestMemory.from_buffers([(0, low, 0x1000_0000), (0x10000, high, 0x2000_0000)])
    memory.guest(0x10000, 16)[:] = b"H" * 16
    assert high[:16] == b"H" * 16
    with pytest.raises(GuestMemoryError):  # the gap between them
        memory.guest(0x1000, 16)
    with pytest.raises(GuestMemoryError):  # straddling the end of the first
        memory.guest(4090, 16)


# -- walking chains -----------------------------------------------------------------------------


def test_pop_walks_a_chained_readable_then_writable_chain() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    queue = driver.queue(memory)
    assert queue.pop() is None
    head = driver.post([Buffer(b"hello "), Buffer(b"world"), Buffer(size=100), Buffer(size=28)])
    assert queue.pending() == 1
    chain = queue.pop()
    assert chain is not None and chain.error is None and chain.head == head
    assert b"".join(bytes(v) for v in chain.readable) == b"hello world"
    assert [len(v) for v in chain.writable] == [100, 28] and chain.writable_bytes == 128
    chain.writable[1][:3] = b"xyz"
    queue.push(chain.head, 3)
    assert driver.take_used() == []  # not published yet
    assert queue.publish() and not queue.publish()
    assert driver.take_used() == [(head, 3)]
    assert queue.pop() is None


def test_indirect_table_is_followed_when_negotiated() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    head = driver.post([Buffer(b"ab"), Buffer(b"cd"), Buffer(size=8)], indirect=True)
    chain = driver.queue(memory).pop()
    assert chain is not None and chain.error is None and chain.head == head
    assert [bytes(v) for v in chain.readable] == [b"ab", b"cd"]
    assert chain.writable_bytes == 8
    driver2 = FakeDriver(mem, ring_offset=0x8000, data_offset=0x20000)
    driver2.post([Buffer(b"ab")], indirect=True)
    chain = driver2.queue(memory, indirect=False).pop()
    assert chain is not None and chain.error is not None  # not negotiated: refused


@pytest.mark.parametrize("breakage", ["loop", "next_out_of_range", "outside_memory",
                                      "nested_indirect", "indirect_with_next",
                                      "odd_indirect_length", "head_out_of_range"])
def test_malformed_chains_come_back_with_an_error(breakage: str) -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    table = driver.desc_off
    buf = GPA + driver.alloc(64)
    if breakage == "loop":
        driver.write_desc(table, 0, buf, 8, DESC_F_NEXT, 1)
        driver.write_desc(table, 1, buf, 8, DESC_F_NEXT, 0)
    elif breakage == "next_out_of_range":
        driver.write_desc(table, 0, buf, 8, DESC_F_NEXT, 8)
    elif breakage == "outside_memory":
        driver.write_desc(table, 0, GPA + MEM_SIZE - 4, 8, 0, 0)
    elif breakage == "nested_indirect":
        inner = driver.alloc(32)
        driver.write_desc(inner, 0, GPA + inner, 16, DESC_F_INDIRECT, 0)
        driver.write_desc(table, 0, GPA + inner, 16, DESC_F_INDIRECT, 0)
    elif breakage == "indirect_with_next":
        driver.write_desc(table, 0, buf, 16, DESC_F_INDIRECT | DESC_F_NEXT, 1)
    elif breakage == "odd_indirect_length":
        driver.write_desc(table, 0, buf, 20, DESC_F_INDIRECT, 0)
    head = 9 if breakage == "head_out_of_range" else 0
    driver.put_head(head)
    queue = driver.queue(memory)
    chain = queue.pop()
    assert chain is not None and chain.error is not None
    assert queue.pop() is None  # and the ring goes on


def test_avail_index_running_ahead_of_the_ring_is_a_ring_error() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    queue = driver.queue(memory)
    driver.avail_idx = 9
    driver.publish()
    with pytest.raises(RingError):
        queue.pending()


def test_rings_outside_memory_are_refused() -> None:
    _, memory = fake_memory(4096)
    with pytest.raises(GuestMemoryError):
        SplitQueue(memory, 256, desc=UVA, avail=UVA + 4096, used=UVA + 8192)
    with pytest.raises(RingError):
        SplitQueue(memory, 3, desc=UVA, avail=UVA + 64, used=UVA + 128)


def test_unpop_gives_chains_back_in_order() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    heads = [driver.post([Buffer(size=10)]) for _ in range(3)]
    queue = driver.queue(memory)
    assert [c.head for c in (queue.pop(), queue.pop()) if c is not None] == heads[:2]
    queue.unpop(2)
    got = [queue.pop() for _ in range(3)]
    assert [c.head for c in got if c is not None] == heads


def test_index_wraps_at_65536() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem, size=4)
    driver.avail_idx = 0xFFFE
    driver.publish()
    struct.pack_into("<H", mem, driver.used_off + 2, 0xFFFE)
    queue = SplitQueue(memory, 4, desc=driver.desc_uva, avail=driver.avail_uva,
                       used=driver.used_uva, last_avail=0xFFFE)
    driver.last_used = 0xFFFE
    for _ in range(4):
        driver.post([Buffer(b"x")])
    assert queue.pending() == 4
    for _ in range(4):
        chain = queue.pop()
        assert chain is not None
        queue.push(chain.head, 0)
    queue.publish()
    assert queue.last_avail == 2 and driver.used_idx() == 2
    assert len(driver.take_used()) == 4


# -- notifications --------------------------------------------------------------------------------


def test_interrupts_follow_no_interrupt_without_event_index() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    queue = driver.queue(memory)
    driver.post([Buffer(b"x")])
    chain = queue.pop()
    assert chain is not None
    queue.push(chain.head, 0)
    queue.publish()
    assert queue.notify_due()
    driver.set_avail_flags(AVAIL_F_NO_INTERRUPT)
    assert not queue.notify_due()


def test_interrupts_follow_used_event_with_event_index() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem, event_idx=True)
    queue = driver.queue(memory)

    def use_one() -> None:
        driver.post([Buffer(b"x")])
        chain = queue.pop()
        assert chain is not None
        queue.push(chain.head, 0)
        queue.publish()
        driver.take_used()

    use_one()
    assert queue.notify_due()  # the first one always signals
    driver.set_used_event(3)  # "interrupt me when used.idx passes 3"
    use_one()  # used.idx 2
    assert not queue.notify_due()
    use_one()  # 3
    assert not queue.notify_due()
    use_one()  # 4: crossed 3 -> 4
    assert queue.notify_due()
    use_one()
    assert not queue.notify_due()


def test_kick_requests_without_and_with_event_index() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    queue = driver.queue(memory)
    queue.disable_kicks()
    assert driver.used_flags() == USED_F_NO_NOTIFY
    assert not queue.enable_kicks()
    assert driver.used_flags() == 0
    driver.post([Buffer(b"x")])
    assert queue.enable_kicks()  # something is waiting already

    mem2, memory2 = fake_memory()
    driver2 = FakeDriver(mem2, event_idx=True)
    queue2 = driver2.queue(memory2)
    driver2.post([Buffer(b"x")])
    driver2.post([Buffer(b"y")])
    assert queue2.pop() is not None
    assert queue2.enable_kicks()  # one still waiting
    assert driver2.avail_event() == 1
    assert queue2.pop() is not None
    assert not queue2.enable_kicks() and driver2.avail_event() == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16 * 8 + 6 + 16, max_size=16 * 8 + 6 + 16 + 64), st.integers(0, 0xFFFF))
def test_random_ring_contents_never_escape_memory_or_crash(ring: bytes, avail_idx: int) -> None:
    mem, memory = fake_memory(0x4000)
    mem[:len(ring)] = ring
    driver = FakeDriver(mem)
    struct.pack_into("<H", mem, driver.avail_off + 2, avail_idx)
    queue = driver.queue(memory)
    try:
        pending = queue.pending()
    except RingError:
        return
    for _ in range(pending):
        chain = queue.pop()
        assert chain is not None
        for view in chain.readable + chain.writable:
            assert len(view) <= 0x4000
        if chain.error is None or chain.head < queue.size:
            queue.push(chain.head, 0)
    queue.publish()
