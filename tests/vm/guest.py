"""A Linux guest under QEMU whose virtio-net NIC sits on any ``-netdev``, driven by a script.

::

    kernel = require_guest()               # skips (fails under CI) without QEMU/kernel/busybox
    image = build_initramfs(workdir, kernel)   # or the session fixture `guest_initramfs`
    with Guest("user,hostfwd=tcp:127.0.0.1:8022-:22", script, initramfs=image) as guest:
        guest.wait_for(r"READY")           # sync with the running script
        ...                                # talk to it from the host
        status, output = guest.wait_exit()

* ``netdev`` is the ``-netdev`` value without ``id=``: the rig adds ``id=n0`` and plugs
  ``-device virtio-net-pci,netdev=n0,mac=<mac>[,<device_args>]`` into it (``device_args``
  e.g. ``"host_mtu=65520"``).  Anything else the backend needs (``-chardev socket,...`` for
  vhost-user or passt) goes in ``extra_qemu``, appended verbatim.  ``shared_memory=True``
  backs the guest's RAM with a shared memfd (``-object memory-backend-memfd ... -numa node``),
  which vhost-user requires.
* ``script`` is the busybox-ash text the guest runs once it is up (lo and eth0 up, no address);
  :mod:`tests.vm.guest_scripts` composes ones that print ``RESULT`` lines.  The guest powers
  off when it ends; its exit status comes back from :meth:`Guest.wait_exit`.
* ``host_resolv_conf`` runs QEMU in a private mount namespace where that file is
  /etc/resolv.conf: what libslirp (``-netdev user``) relays the guest's DNS to.  Needs root.
* The console is the guest's serial port, on QEMU's stdout; :attr:`Guest.output` is all of it
  so far (CRs dropped).  :meth:`Guest.wait_for` searches it from where the previous match
  ended, so waiting for the same line twice waits for its second copy.
* KVM is used when it is hardware KVM and /dev/kvm opens read-write (:func:`kvm_usable`), TCG
  otherwise (``VIPERNET_VM_ACCEL=kvm|tcg`` forces one); :attr:`Guest.accel` says which.
  Under TCG every timeout is multiplied by ``TCG_SLOWDOWN``, and the guest's CPU, not the
  network backend, is what limits bulk transfers: compare backends on the same accelerator.
* The kernel boots through its PVH entry when it has one (see
  :func:`tests.vm.kernel.boot_image`): no firmware boot, no decompression.
* Every failure to see what was expected (timeout, QEMU gone, no exit marker) is an
  AssertionError carrying the last ``TAIL_LINES`` console lines and QEMU's stderr.
* :attr:`Guest.running` is False once QEMU has gone; :attr:`Guest.qemu_stderr` says why.
* :meth:`Guest.close` (also on leaving the ``with``) kills QEMU and removes the temp dir.

Boot time (QEMU start to the script's first line) is :attr:`Guest.boot_seconds`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple

from tests.testbed import require_binary, stop_process, unavailable
from tests.vm.initramfs import (
    EXIT_MARKER,
    START_MARKER,
    boot_archive,
    build_initramfs,
    check_busybox,
)
from tests.vm.kernel import GuestKernel, GuestKernelError, boot_image, find_kernel

QEMU = "qemu-system-x86_64"
NETDEV_ID = "n0"
DEFAULT_MAC = "52:54:00:12:34:56"
ACCEL_VARIABLE = "VIPERNET_VM_ACCEL"
TCG_SLOWDOWN = 8.0
TAIL_LINES = 60
DEFAULT_TIMEOUT = 60.0  # seconds (under KVM) for boot plus script, when the caller gives none
# quiet: only warnings and worse interleave with the script's output.  panic=-1 with
# -no-reboot: a kernel that panics ends QEMU at once instead of hanging to the timeout.
# mitigations=off: a throwaway test guest, and the mitigations are slow to emulate.
KERNEL_ARGS = ("console=ttyS0", "quiet", "panic=-1", "8250.nr_uarts=1", "mitigations=off")


def kvm_usable() -> bool:
    """True when /dev/kvm opens read-write and is hardware KVM (kvm_intel or kvm_amd).

    Other KVM flavours are not enough: a nested host without VMX/SVM may offer PVM
    (kvm_pvm), which runs only guest kernels built for it, and Debian's hangs there at boot.
    """
    if not any(Path(f"/sys/module/{vendor}").exists() for vendor in ("kvm_intel", "kvm_amd")):
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def accelerator() -> str:
    forced = os.environ.get(ACCEL_VARIABLE, "")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"{ACCEL_VARIABLE}={forced!r}: expected kvm or tcg")
        return forced
    return "kvm" if kvm_usable() else "tcg"


def require_guest() -> GuestKernel:
    """The guest kernel, after checking QEMU, the kernel and busybox-static are all here;
    ``unavailable()`` (skip, or fail under CI) otherwise."""
    require_binary(QEMU)
    try:
        check_busybox()
        return find_kernel()
    except GuestKernelError as exc:
        unavailable(str(exc))
        raise AssertionError("unreachable") from exc


class GuestExit(NamedTuple):
    status: int  # the script's exit status
    output: str  # what the script printed (between the rig's markers)


class Guest:
    """One QEMU run; see the module docstring.  Starts at construction."""

    def __init__(
        self,
        netdev: str,
        script: str,
        *,
        initramfs: Path | None = None,
        kernel: GuestKernel | None = None,
        mem_mb: int = 512,
        cpus: int = 1,
        mac: str = DEFAULT_MAC,
        device_args: str = "",
        extra_qemu: Sequence[str] = (),
        shared_memory: bool = False,
        host_resolv_conf: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if re.search(r"(^|,)id=", netdev):
            raise ValueError(f"netdev {netdev!r}: leave id= out, the rig adds id={NETDEV_ID}")
        self.accel = accelerator()
        self.time_scale = 1.0 if self.accel == "kvm" else TCG_SLOWDOWN
        self.timeout = timeout
        self.boot_seconds: float | None = None
        self._nonce = secrets.token_hex(8)
        self._start_marker = START_MARKER.format(nonce=self._nonce)
        self._exit_re = re.compile(re.escape(EXIT_MARKER.format(nonce=self._nonce, status="STATUS"))
                                   .replace("STATUS", r"(\d+)"))
        self._text = ""
        self._cursor = 0
        self._eof = False
        self._changed = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: IO[bytes] | None = None
        self.argv: list[str] = []  # the QEMU command line, for a failing test's report
        self.workdir = Path(tempfile.mkdtemp(prefix="vipernet-guest-"))
        try:
            kernel = find_kernel() if kernel is None else kernel
            if initramfs is None:
                initramfs = build_initramfs(self.workdir, kernel)
            initrd = self.workdir / "initrd.cpio"
            initrd.write_bytes(initramfs.read_bytes() + boot_archive(script, self._nonce))
            argv = self._qemu_argv(kernel, initrd, netdev, mem_mb, cpus, mac, device_args,
                                   extra_qemu, shared_memory)
            if host_resolv_conf is not None:
                argv = _with_resolv_conf(host_resolv_conf, argv)
            self._start(argv)
        except BaseException:
            self.close()
            raise

    def _qemu_argv(self, kernel: GuestKernel, initrd: Path, netdev: str, mem_mb: int,
                   cpus: int, mac: str, device_args: str, extra_qemu: Sequence[str],
                   shared_memory: bool) -> list[str]:
        device = f"virtio-net-pci,netdev={NETDEV_ID},mac={mac}"
        if device_args.strip(","):
            device += "," + device_args.strip(",")
        cpu = ["-accel", "kvm", "-cpu", "host"] if self.accel == "kvm" else \
            ["-accel", "tcg", "-cpu", "max"]
        memory = ["-object", f"memory-backend-memfd,id=mem,size={mem_mb}M,share=on",
                  "-numa", "node,memdev=mem"] if shared_memory else []
        return [
            QEMU, "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
            *cpu, "-m", str(mem_mb), "-smp", str(cpus), *memory,
            "-kernel", str(boot_image(kernel)), "-initrd", str(initrd),
            "-append", " ".join(KERNEL_ARGS),
            "-netdev", f"{netdev},id={NETDEV_ID}", "-device", device,
            *extra_qemu,
        ]

    def _start(self, argv: list[str]) -> None:
        self.argv = argv
        self._stderr = open(self.workdir / "qemu.stderr", "w+b")  # noqa: SIM115 (closed in close)
        self._started_at = time.monotonic()
        # stdin is a pipe nobody writes: the serial port's input, so the guest reads nothing
        # (not /dev/null, whose content, were it ever a regular file, would be typed in).
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr,
                                         start_new_session=True)
        self._reader = threading.Thread(target=self._read_console, name="guest-console",
                                        daemon=True)
        self._reader.start()

    def _read_console(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = self._process.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            text = decoder.decode(chunk, final=not chunk).replace("\r", "")
            with self._changed:
                self._text += text
                if self.boot_seconds is None and self._start_marker in self._text:
                    self.boot_seconds = time.monotonic() - self._started_at
                if not chunk:
                    self._eof = True
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def output(self) -> str:
        """The whole console so far."""
        with self._changed:
            return self._text

    @property
    def running(self) -> bool:
        """True while QEMU runs (for host-side loops that should stop when it dies)."""
        return self._process is not None and self._process.poll() is None

    @property
    def qemu_stderr(self) -> str:
        """What QEMU wrote to stderr so far (its errors: a refused -netdev, a lost socket)."""
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.flush()
            return (self.workdir / "qemu.stderr").read_text(errors="replace").strip()
        return ""

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _fail(self, why: str) -> AssertionError:
        lines = self.output.splitlines()[-TAIL_LINES:]
        stderr = self.qemu_stderr
        return AssertionError(
            f"guest: {why} ({self.accel}); last {len(lines)} console lines:\n"
            + "\n".join(lines) + (f"\nQEMU stderr:\n{stderr}" if stderr else ""))

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float | None = None
                 ) -> re.Match[str]:
        """The first match of ``pattern`` after the previous wait's match, once it appears."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        limit = (self.timeout if timeout is None else timeout) * self.time_scale
        deadline = time.monotonic() + limit
        with self._changed:
            while True:
                match = regex.search(self._text, self._cursor)
                if match is not None:
                    self._cursor = match.end()
                    return match
                if self._eof:
                    raise self._fail(f"QEMU ended before {regex.pattern!r} appeared")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"no {regex.pattern!r} within {limit:.0f} s")
                self._changed.wait(left)

    def wait_exit(self, timeout: float | None = None) -> GuestExit:
        """Waits for the script to end and QEMU to exit; the status and the script's output."""
        match = self.wait_for(self._exit_re, timeout)
        status = int(match.group(1))
        text = self.output
        start = text.find(self._start_marker, 0, match.start())
        begin = start + len(self._start_marker) if start >= 0 else 0
        output = text[begin:match.start()]
        output = output[1:] if output.startswith("\n") else output  # the marker line's end
        assert self._process is not None
        try:
            self._process.wait(timeout=10 * self.time_scale)
        except subprocess.TimeoutExpired:
            raise self._fail("the script ended but QEMU did not exit") from None
        return GuestExit(status, output)

    def close(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            if self._reader is not None:
                self._reader.join(timeout=5)
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_resolv_conf(resolv_conf: Path, argv: list[str]) -> list[str]:
    """``argv`` run where ``resolv_conf`` is bind-mounted over /etc/resolv.conf, in a mount
    namespace of its own (nothing else on the host sees the change)."""
    unshare = require_binary("unshare")
    return [unshare, "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv_conf), *argv]
