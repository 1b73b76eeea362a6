"""Guest memory as the back-end sees it: the regions of SET_MEM_TABLE, bounds-checked.

Each region is known by two base addresses: the *guest physical* one (what descriptors
hold) and the front-end's *user* (virtual) one (what SET_VRING_ADDR holds, since QEMU
shares its own mapping of guest RAM).  :class:`GuestMemory` turns either kind of address
plus a length into a ``memoryview`` of exactly those bytes, or raises
:class:`GuestMemoryError` when any byte of the range lies outside every region: a
descriptor pointing elsewhere is the guest's mistake (or malice) and costs it that buffer,
never an out-of-bounds access here.

A range must lie in one region: two regions adjacent in guest-physical space are mapped
separately, so a buffer straddling them would need two views; Linux never places a DMA
buffer across a RAM hole, and such a buffer is refused like an out-of-range one.

:func:`map_regions` builds the real thing with ``mmap`` (``MAP_SHARED`` on the fds QEMU
sent, from the page-aligned start below each region's ``mmap_offset``); tests build one
over bytearrays with :meth:`GuestMemory.from_buffers`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vipernet.link.errors import LinkError
from vipernet.link.vhost_user.protocol import RegionSpec

_PAGE = mmap.ALLOCATIONGRANULARITY


class GuestMemoryError(LinkError):
    """An address range that no mapped region holds (or memory that cannot be mapped)."""


@dataclass(slots=True)
class Region:
    """One mapped region: its two base addresses and a writable view of its bytes."""

    guest_addr: int
    user_addr: int
    size: int
    view: memoryview


class GuestMemory:
    """A set of regions; translate guest-physical or user addresses to views."""

    def __init__(self, regions: Sequence[Region],
                 mappings: Sequence[mmap.mmap] = ()) -> None:
        self.regions = tuple(regions)
        self._mappings = list(mappings)

    @classmethod
    def from_buffers(cls, buffers: Iterable[tuple[int, bytearray, int]]) -> GuestMemory:
        """Regions over plain buffers: ``(guest_addr, buffer, user_addr)`` each."""
        return cls([Region(gpa, uva, len(buf), memoryview(buf)) for gpa, buf, uva in buffers])

    def guest(self, addr: int, length: int) -> memoryview:
        """The ``length`` bytes at guest-physical ``addr``."""
        for region in self.regions:
            offset = addr - region.guest_addr
            if offset >= 0 and length >= 0 and offset + length <= region.size:
                return region.view[offset:offset + length]
        raise GuestMemoryError(f"guest address {addr:#x}+{length} is outside guest memory")

    def user(self, addr: int, length: int) -> tuple[memoryview, int]:
        """The region view and offset holding the ``length`` bytes at user address ``addr``
        (rings are read in place with ``struct.unpack_from(view, offset)``)."""
        for region in self.regions:
            offset = addr - region.user_addr
            if offset >= 0 and length >= 0 and offset + length <= region.size:
                return region.view, offset
        raise GuestMemoryError(f"user address {addr:#x}+{length} is outside guest memory")

    @property
    def total(self) -> int:
        return sum(region.size for region in self.regions)

    def close(self) -> None:
        """Unmap.  A view still exported elsewhere keeps its mapping alive until it is
        dropped (``mmap.close`` refuses then); nothing here reads through it any more."""
        regions, self.regions = self.regions, ()
        for region in regions:
            with contextlib.suppress(BufferError):
                region.view.release()
        for mapping in self._mappings:
            with contextlib.suppress(BufferError):
                mapping.close()
        self._mappings = []


def map_regions(specs: Sequence[RegionSpec], fds: Sequence[int]) -> GuestMemory:
    """mmap every region of a SET_MEM_TABLE.  The fds are the caller's to close (a mapping
    outlives its fd).  Raises :class:`GuestMemoryError` if one cannot be mapped."""
    regions: list[Region] = []
    mappings: list[mmap.mmap] = []
    try:
        for spec, fd in zip(specs, fds, strict=True):
            start = spec.mmap_offset - spec.mmap_offset % _PAGE
            skip = spec.mmap_offset - start
            length = skip + spec.size
            try:
                status = os.fstat(fd)
            except OSError as exc:
                raise GuestMemoryError(f"memory region fd: {exc.strerror}") from None
            file_size = status.st_size
            if stat.S_ISREG(status.st_mode) and spec.mmap_offset + spec.size > file_size:
                # Mapping past the end of a file "works" and then SIGBUSes on first touch.
                # (A front-end that truncates the file *after* we mapped it can still do
                # that; it owns the guest's memory, so it is trusted that far.)
                raise GuestMemoryError(
                    f"memory region {spec.guest_addr:#x}+{spec.size:#x} at offset "
                    f"{spec.mmap_offset:#x} exceeds its file ({file_size:#x} bytes)")
            try:
                mapping = mmap.mmap(fd, length, flags=mmap.MAP_SHARED,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
            except (OSError, ValueError, OverflowError) as exc:
                raise GuestMemoryError(
                    f"cannot map memory region {spec.guest_addr:#x}+{spec.size:#x}: {exc}"
                ) from None
            mappings.append(mapping)
            view = memoryview(mapping)[skip:skip + spec.size]
            regions.append(Region(spec.guest_addr, spec.user_addr, spec.size, view))
    except BaseException:
        GuestMemory(regions, mappings).close()
        raise
    return GuestMemory(regions, mappings)
