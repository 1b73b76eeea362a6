"""The guest's kernel: Debian's image package unpacked by scripts/setup.sh into build/vm/.

The package is extracted, not installed, so depmod never ran: there is no modules.dep.  The
dependencies of a module are read from the module itself instead, from the ``depends=`` entry
of its ``.modinfo`` ELF section (the same field modinfo(8) prints), and a module listed in
``modules.builtin`` needs no loading at all.  Modules may be shipped compressed (.ko.xz,
.ko.gz, .ko.zst, depending on the Debian release); busybox insmod loads only plain ELF, so
:func:`module_image` returns them decompressed.

:func:`boot_image` is what QEMU's ``-kernel`` gets: the ELF vmlinux inside the bzImage when
it has a PVH entry point (Debian's has, CONFIG_PVH), which QEMU then enters directly.  That
skips the firmware's real-mode boot and the kernel's own xz decompression, which under TCG
is most of the boot: about 1.9 s instead of 5.3 s to a kernel panic here.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KERNEL_DIR = REPO_ROOT / "build" / "vm"
KERNEL_DIR_VARIABLE = "VIPERNET_VM_DIR"  # overrides DEFAULT_KERNEL_DIR
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


class GuestKernelError(Exception):
    """The unpacked kernel is missing, incomplete or not what this module can read."""


@dataclass(frozen=True)
class GuestKernel:
    image: Path  # the bzImage QEMU boots with -kernel
    modules: Path  # lib/modules/<release>
    builtin: frozenset[str]  # names (underscores) of the modules built into the image

    @property
    def release(self) -> str:
        return self.modules.name


def kernel_dir() -> Path:
    return Path(os.environ.get(KERNEL_DIR_VARIABLE, DEFAULT_KERNEL_DIR))


def find_kernel(root: Path | None = None) -> GuestKernel:
    """The kernel under ``root`` (default :func:`kernel_dir`), or GuestKernelError."""
    root = kernel_dir() if root is None else root
    image = root / "vmlinuz"
    if not image.exists():
        raise GuestKernelError(f"no guest kernel at {image} (scripts/setup.sh unpacks one)")
    releases = sorted((root / "lib" / "modules").glob("*"))
    if len(releases) != 1:
        raise GuestKernelError(f"expected one lib/modules/<release> under {root}, "
                               f"found {[p.name for p in releases]}")
    builtin_list = releases[0] / "modules.builtin"
    builtin = frozenset(
        _module_name(Path(line.strip()))
        for line in (builtin_list.read_text().splitlines() if builtin_list.exists() else [])
        if line.strip()
    )
    return GuestKernel(image=image, modules=releases[0], builtin=builtin)


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in _MODULE_SUFFIXES[::-1]:  # longest first: ".ko.xz" before ".ko"
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")  # the kernel's spelling: "virtio-rng.ko" is virtio_rng


def _module_index(kernel: GuestKernel) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in (kernel.modules / "kernel").rglob("*.ko*"):
        if path.name.endswith(_MODULE_SUFFIXES):
            index[_module_name(path)] = path
    return index


def _elf_notes(elf: bytes) -> list[tuple[bytes, int, bytes]]:
    """(name, type, description) of every note in the program headers' PT_NOTE segments."""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    notes = []
    for index in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, size = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        position, end = offset, offset + size
        while position + 12 <= end:
            name_size, desc_size, note_type = struct.unpack_from("<III", elf, position)
            name_at = position + 12
            desc_at = name_at + (name_size + 3) // 4 * 4
            notes.append((elf[name_at:name_at + name_size].rstrip(b"\0"), note_type,
                          elf[desc_at:desc_at + desc_size]))
            position = desc_at + (desc_size + 3) // 4 * 4
    return notes


_XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point QEMU looks for in an ELF -kernel


def _bzimage_payload(bzimage: bytes) -> bytes | None:
    """The decompressed vmlinux of an x86 bzImage, or None for a kind this cannot read."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sectors = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sectors + 1) * 512 + offset
    payload = bzimage[start:start + length]
    try:
        if payload.startswith(b"\xfd7zXZ\0"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
    except (lzma.LZMAError, OSError, EOFError):
        return None
    return None  # zstd, lz4, bzip2, lzo: boot the bzImage as it is


def boot_image(kernel: GuestKernel) -> Path:
    """The kernel file to boot: the PVH-capable vmlinux, cached beside the bzImage as
    ``vmlinux`` (made on first use), else the bzImage itself."""
    cached = kernel.image.parent / "vmlinux"
    if cached.exists() and cached.stat().st_mtime >= kernel.image.stat().st_mtime:
        return cached
    elf = _bzimage_payload(kernel.image.read_bytes())
    if elf is None or elf[:6] != b"\x7fELF\x02\x01":
        return kernel.image
    try:
        pvh = any(name == b"Xen" and kind == _XEN_ELFNOTE_PHYS32_ENTRY
                  for name, kind, _ in _elf_notes(elf))
    except struct.error:
        pvh = False
    if not pvh:
        return kernel.image
    partial = cached.with_name(f"vmlinux.{os.getpid()}.partial")
    try:
        partial.write_bytes(elf)
        partial.replace(cached)  # atomic: a concurrent run sees the old file or the whole new one
    except OSError:
        partial.unlink(missing_ok=True)
        return kernel.image  # a read-only kernel dir: the bzImage boots too, only slower
    return cached


def module_image(path: Path) -> bytes:
    """The module's ELF bytes, decompressed when it is shipped compressed."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise GuestKernelError(f"{path.name} is zstd-compressed and zstd is not installed")
        return subprocess.run([zstd, "-dcq"], input=data, capture_output=True,
                              check=True).stdout
    return data


def modinfo(elf: bytes) -> dict[str, str]:
    """The ``key=value`` entries of a module's .modinfo section (the last of a repeated key)."""
    if elf[:6] != b"\x7fELF\x02\x01":  # 64-bit little-endian: the only kind built for amd64
        raise GuestKernelError("not a 64-bit little-endian ELF module")
    try:
        shoff, = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

        def section(index: int) -> tuple[int, int, int]:
            name, _type, _flags, _addr, offset, size = struct.unpack_from(
                "<IIQQQQ", elf, shoff + index * shentsize)
            return name, offset, size

        _, names_offset, _ = section(shstrndx)
        for index in range(shnum):
            name, offset, size = section(index)
            end = elf.index(b"\0", names_offset + name)
            if elf[names_offset + name:end] == b".modinfo":
                entries = elf[offset:offset + size].split(b"\0")
                return dict(entry.decode(errors="replace").partition("=")[::2]
                            for entry in entries if b"=" in entry)
    except (struct.error, ValueError) as exc:
        raise GuestKernelError(f"malformed ELF module: {exc}") from exc
    raise GuestKernelError("the module has no .modinfo section")


def load_order(kernel: GuestKernel, wanted: tuple[str, ...]) -> list[Path]:
    """The module files to insmod, dependencies first, for ``wanted`` and what they need.

    Built-in modules are left out; a module that is neither built in nor shipped is an error
    (the guest would boot without its NIC and fail obscurely later)."""
    index = _module_index(kernel)
    order: list[Path] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in kernel.builtin:
            return
        if name in visiting:
            raise GuestKernelError(f"module dependency cycle through {name}")
        if name not in index:
            raise GuestKernelError(f"module {name} is neither built in nor under "
                                   f"{kernel.modules}")
        visiting.add(name)
        depends = modinfo(module_image(index[name])).get("depends", "")
        for dependency in filter(None, depends.split(",")):
            visit(dependency.replace("-", "_"))
        visiting.discard(name)
        done.add(name)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order
