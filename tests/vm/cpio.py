"""A writer of "newc" cpio archives, the format the Linux kernel unpacks as an initramfs.

Written here rather than shelling out to cpio(1) so the archive's content is exactly what
the caller listed (no host paths, owners or timestamps leak in: every entry is root's, with
mtime 0) and building one needs no tool beyond Python.

The kernel accepts several archives concatenated (zero padding between them is skipped), and
a later entry replaces an earlier one of the same name: that is how a per-boot archive adds
the guest's script to the shared base image.
"""

from __future__ import annotations

import stat

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Collects entries in order; :meth:`finish` returns the archive's bytes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._next_inode = 1
        self._finished = False

    def _entry(self, name: str, mode: int, data: bytes = b"",
               rdev: tuple[int, int] = (0, 0)) -> None:
        if self._finished:
            raise ValueError("the archive is already finished")
        encoded = name.lstrip("/").encode() + b"\0"
        fields = (
            self._next_inode, mode, 0, 0,  # inode, mode, uid, gid
            2 if stat.S_ISDIR(mode) else 1,  # nlink
            0, len(data),  # mtime, file size
            0, 0, rdev[0], rdev[1],  # device of the entry; device it is (for nodes)
            len(encoded), 0,  # name size (with the NUL), checksum (unused by newc)
        )
        self._next_inode += 1
        header = _MAGIC + b"".join(f"{value:08x}".encode() for value in fields)
        self._parts += [header, encoded, _pad4(len(header) + len(encoded)), data,
                        _pad4(len(data))]

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        """The archive, ending in the trailer entry; no entry can be added afterwards."""
        if not self._finished:
            self._entry(_TRAILER, 0)
            self._finished = True
        return b"".join(self._parts)
