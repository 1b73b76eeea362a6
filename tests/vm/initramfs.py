"""The guest's initramfs: busybox-static, the virtio-net modules and an /init that runs a script.

:func:`build_initramfs` writes the base image once (it depends only on the kernel and the host's
busybox); :func:`boot_archive` makes the small per-boot archive holding the script, which the
caller appends to the base: the kernel unpacks concatenated archives in turn.

What /init does, in order: mounts proc, sys, devtmpfs and devpts; insmods the modules
(dependencies first, as :func:`~tests.vm.kernel.load_order` listed them); waits for eth0;
brings lo and eth0 up (no address: the script decides, e.g. by DHCP); prints the start
marker; runs /vipernet/script.sh with stdin from /dev/null and stdout/stderr on the serial
console, in /tmp; prints the exit marker with the script's status; lets the console drain;
powers off.  The markers carry a per-boot nonce so that nothing the script prints can pass
for them.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from tests.vm.cpio import CpioWriter
from tests.vm.guest_scripts import UDHCPC_SCRIPT, UDHCPC_SCRIPT_PATH
from tests.vm.kernel import (
    GuestKernel,
    GuestKernelError,
    find_kernel,
    load_order,
    module_image,
)

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static puts it there
NIC_MODULES = ("virtio_pci", "virtio_net")  # with their dependencies; either may be built in
SCRIPT_PATH = "/vipernet/script.sh"
BOOT_ENV_PATH = "/vipernet/boot.env"
START_MARKER = "@@vipernet-start {nonce}@@"
EXIT_MARKER = "@@vipernet-exit {nonce} status={status}@@"

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run
mount -t devpts devpts /dev/pts
while read -r module; do
    insmod "/lib/modules/$module" || echo "vipernet-init: insmod $module failed"
done </etc/vipernet/modules
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 100 ]; do
    sleep 0.05
    tries=$((tries + 1))
done
[ -e /sys/class/net/eth0 ] || echo "vipernet-init: no eth0 (is the NIC virtio-net-pci?)"
ip link set lo up
ip link set eth0 up 2>/dev/null
. /vipernet/boot.env
echo "@@vipernet-start $NONCE@@"
cd /tmp
sh /vipernet/script.sh </dev/null
status=$?
echo "@@vipernet-exit $NONCE status=$status@@"
# stty sets the console's modes with TCSADRAIN: it returns once every byte above has left
# for the UART, which poweroff would otherwise cut short.
stty -F /dev/console "$(stty -F /dev/console -g)"
poweroff -f
"""


class GuestImageError(GuestKernelError):
    """The host's busybox is missing or not the static one the guest needs."""


def _is_static_elf(path: Path) -> bool:
    """True for an ELF without a PT_INTERP program header (no dynamic loader needed)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3  # PT_INTERP
               for i in range(phnum))


def check_busybox(busybox: Path = BUSYBOX) -> None:
    if not busybox.exists():
        raise GuestImageError(f"{busybox} is missing (install busybox-static)")
    if not _is_static_elf(busybox):
        raise GuestImageError(f"{busybox} is dynamically linked: install busybox-static")


def _applets(busybox: Path) -> list[str]:
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout
    return [line.strip() for line in listing.splitlines() if line.strip()]


def build_initramfs(workdir: Path, kernel: GuestKernel | None = None,
                    busybox: Path = BUSYBOX) -> Path:
    """Writes the base initramfs (for ``kernel``, default :func:`find_kernel`) into
    ``workdir`` and returns its path."""
    check_busybox(busybox)
    kernel = find_kernel() if kernel is None else kernel
    archive = CpioWriter()
    for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/vipernet",
                      "lib", "lib/modules", "proc", "sys", "dev", "run", "root", "tmp",
                      "vipernet"):
        archive.directory(directory, 0o1777 if directory == "tmp" else 0o755)
    # The kernel opens /dev/console for init before /init can mount devtmpfs.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in _applets(busybox):
        if applet.lstrip("/") != "bin/busybox":
            archive.symlink(applet, "/bin/busybox")
    modules = load_order(kernel, NIC_MODULES)
    for module in modules:
        archive.file(f"lib/modules/{module.name.split('.ko')[0]}.ko", module_image(module))
    archive.file("etc/vipernet/modules",
                 "".join(f"{m.name.split('.ko')[0]}.ko\n" for m in modules).encode())
    archive.file(UDHCPC_SCRIPT_PATH.lstrip("/"), UDHCPC_SCRIPT.encode(), 0o755)
    archive.file("etc/hosts", b"127.0.0.1 localhost\n")
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.file("etc/group", b"root:x:0:\n")
    archive.file("init", INIT.encode(), 0o755)
    path = workdir / f"vipernet-guest-{kernel.release}.cpio"
    path.write_bytes(archive.finish())
    return path


def boot_archive(script: str, nonce: str) -> bytes:
    """The per-boot archive: the script and the nonce of its markers."""
    archive = CpioWriter()
    archive.directory("vipernet")
    archive.file(SCRIPT_PATH.lstrip("/"), script.encode(), 0o755)
    archive.file(BOOT_ENV_PATH.lstrip("/"), f"NONCE={nonce}\n".encode())
    return archive.finish()
