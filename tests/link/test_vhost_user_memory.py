"""Mapping SET_MEM_TABLE regions from real memfds: offsets, bounds, refusals."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from vipernet.link.vhost_user.memory import GuestMemoryError, map_regions
from vipernet.link.vhost_user.protocol import RegionSpec

SIZE = 4 << 20


@pytest.fixture
def memfd() -> Iterator[int]:
    fd = os.memfd_create("guest-ram")
    os.ftruncate(fd, SIZE)
    yield fd
    os.close(fd)


def test_regions_map_at_their_offsets_even_unaligned(memfd: int) -> None:
    with mmap.mmap(memfd, SIZE) as ours:
        ours[0x1234:0x1238] = b"low!"
        ours[0x200000 + 0x10:0x200000 + 0x14] = b"high"
        memory = map_regions([RegionSpec(0, 0x100000, 0x7000_0000, 0x1234),
                              RegionSpec(0x100000, 0x100000, 0x7100_0000, 0x200010)],
                             [memfd, memfd])
        try:
            assert bytes(memory.guest(0, 4)) == b"low!"
            assert bytes(memory.guest(0x100000, 4)) == b"high"
            view, offset = memory.user(0x7100_0000, 4)
            assert bytes(view[offset:offset + 4]) == b"high"
            memory.guest(0x1FFFFC, 4)[:] = b"tail"  # writes reach the shared file
            assert ours[0x200010 + 0xFFFFC:0x200010 + 0x100000] == b"tail"
            with pytest.raises(GuestMemoryError):
                memory.guest(0x1FFFFE, 4)
        finally:
            memory.close()
    assert memory.regions == ()


@pytest.mark.parametrize("spec", [
    RegionSpec(0, SIZE + 4096, 0, 0),  # longer than the file: would SIGBUS when touched
    RegionSpec(0, 4096, 0, SIZE),  # starts past its end
    RegionSpec(0, 1 << 62, 0, 0),
])
def test_regions_the_file_cannot_back_are_refused(memfd: int, spec: RegionSpec) -> None:
    with pytest.raises(GuestMemoryError):
        map_regions([spec], [memfd])


def test_an_fd_that_is_not_memory_is_refused() -> None:
    fd = os.eventfd(0)
    try:
        with pytest.raises(GuestMemoryError):
            map_regions([RegionSpec(0, 4096, 0, 0)], [fd])
    finally:
        os.close(fd)
