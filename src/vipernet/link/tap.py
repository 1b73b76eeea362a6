"""A Linux TAP device with the virtio-net header: vipernet's "VirtIO-net driver".

``TapDevice.open(name, netns=..., vnet_hdr=True)`` attaches to an *existing* TAP (made with
``ip tuntap add dev NAME mode tap``) through ``/dev/net/tun`` with
``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR``, sets the header size (``TUNSETVNETHDRSZ``) and
negotiates ``TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`` (``TUNSETOFFLOAD``).  From then on:

* receive: the kernel may hand us TCP frames of up to 64 KiB (``gso_type=TCPV4``) and frames
  whose L4 checksum is partial (``needs_csum``); the header becomes the frame's ``Offload``;
* send: the stack may give us 64 KiB TCPV4 GSO frames with partial checksums and the kernel
  segments them and completes the checksums.

Without ``vnet_hdr`` the offloads are switched *off* (``TUNSETOFFLOAD 0``): they survive on a
persistent TAP after the last fd closes, and a reader without the header would otherwise get
64 KiB frames with partial checksums and no way to know.

Two traps the open guards against:

* outside the TAP's namespace, ``TUNSETIFF`` does not fail: it silently *creates* a new TAP of
  that name in the current namespace.  So we enter the namespace (``netns=``) first and check
  that the interface exists there before asking for it, and raise ``NoSuchInterface`` if not.
* a read into a buffer shorter than the frame silently truncates it, so the read buffer holds
  a maximal GSO frame plus the header, and a read that fills it is counted as a drop.

The fd is non-blocking; ``receive`` drains what is queued now, ``send`` never waits (a full
queue or a down link is a counted drop).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import time

from vipernet.link.counters import LinkCounters
from vipernet.link.errors import (
    DeviceBusy,
    DeviceClosed,
    LinkError,
    NoSuchInterface,
    PermissionDenied,
)
from vipernet.link.frame import DeviceCapabilities, Frame, Offload
from vipernet.link.netns import in_netns
from vipernet.link.offload import check_frame_size, resolve_offloads
from vipernet.link.virtio import (
    VNET_HDR_LEN,
    VNET_HDR_LEN_MRG,
    VnetHeaderError,
    build_vnet_hdr,
    parse_vnet_hdr,
)

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
IFNAMSIZ = 16
SIOCGIFFLAGS = 0x8913
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_RUNNING = 0x40
RUNNING_TIMEOUT = 2.0  # seconds to wait for the carrier after attaching

ETH_HEADER_LEN = 14
MAX_GSO_FRAME = 65535 + ETH_HEADER_LEN  # an IPv4 packet cannot be longer than 65535
READ_BUFFER = 65536 + 4096  # > any frame + header: a read that fills it was truncated
OFFLOAD_CACHE = 256  # distinct virtio headers remembered (gso_size/hdr_len vary little)
MAX_BATCH = 1024  # frames per receive(): the fd stays readable, so the caller comes back
IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")  # struct ifreq is 40 bytes


class TapDevice:
    """An open TAP; make one with :meth:`open`."""

    def __init__(self, fd: int, name: str, *, netns: str | None, vnet_hdr_len: int,
                 mtu: int) -> None:
        self._fd = fd
        self.name = name
        self.netns = netns
        self.vnet_hdr_len = vnet_hdr_len  # 0 when the header is off
        self.counters = LinkCounters()
        if vnet_hdr_len:
            self.capabilities = DeviceCapabilities(
                mtu=mtu, tx_csum_offload=True, tso=True, max_frame=MAX_GSO_FRAME)
        else:
            self.capabilities = DeviceCapabilities(
                mtu=mtu, tx_csum_offload=False, tso=False, max_frame=mtu + ETH_HEADER_LEN)
        self._zero_header = build_vnet_hdr(None, vnet_hdr_len or VNET_HDR_LEN)
        self._offloads: dict[bytes, Offload | None] = {}  # received header -> its Offload

    @classmethod
    def open(cls, name: str, *, netns: str | None = None, vnet_hdr: bool = True,
             mtu: int = 1500, vnet_hdr_len: int = VNET_HDR_LEN) -> TapDevice:
        """Attach to the existing TAP ``name`` (inside namespace ``netns`` if given)."""
        if not name or len(name.encode()) >= IFNAMSIZ or "/" in name:
            raise NoSuchInterface(f"invalid interface name: {name!r}")
        if vnet_hdr_len not in (VNET_HDR_LEN, VNET_HDR_LEN_MRG):
            raise LinkError(f"virtio-net header size must be 10 or 12, not {vnet_hdr_len}")
        where = f" in namespace {netns}" if netns else ""
        # A tun fd belongs to the namespace it was *opened* in, and so do sockets: both are
        # made inside; the ioctls that follow act on them from anywhere.
        with in_netns(netns):
            try:
                ifindex = socket.if_nametoindex(name)
            except OSError:
                # Asking TUNSETIFF anyway would create a fresh, unconnected TAP right here.
                raise NoSuchInterface(f"no such interface: {name}{where}") from None
            fd = _open_tun(name, where)
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
            _ioctl(fd, TUNSETIFF, IFREQ.pack(name.encode(), flags), name, where)
            if _ifindex(probe, name) != ifindex:
                # The TAP vanished between our check and TUNSETIFF, which then made a new
                # one; closing our fd deletes that (non-persistent) stray again.
                raise NoSuchInterface(f"{name}{where} disappeared while being opened")
            if vnet_hdr:
                _ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", vnet_hdr_len), name, where)
                offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
            else:
                offloads = 0  # undo what a previous vnet reader left on a persistent TAP
            fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)
            os.set_blocking(fd, False)
            wait_running(probe, name, RUNNING_TIMEOUT)
        except BaseException:
            os.close(fd)
            raise
        finally:
            probe.close()
        return cls(fd, name, netns=netns, vnet_hdr_len=vnet_hdr_len if vnet_hdr else 0, mtu=mtu)

    def fileno(self) -> int | None:
        return self._fd

    def receive(self, now: float) -> list[Frame]:
        fd = self._fd
        if fd < 0:
            raise DeviceClosed(f"{self.name}: device is closed")
        # The hot path: one read per frame straight into a fresh ``bytes`` (os.read sizes
        # the object down in place, no copy), handed on as a view past the virtio header:
        # a 64 KiB GSO frame is copied once, by the kernel.  The header is only decoded
        # when its flags or gso_type say something.
        frames: list[Frame] = []
        append = frames.append
        hdr = self.vnet_hdr_len
        limit = READ_BUFFER
        read = os.read
        offloads = self._offloads
        rx_bytes = 0
        for _ in range(MAX_BATCH):
            try:
                buf = read(fd, limit)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EBADFD:  # detached underneath us
                    raise DeviceClosed(f"{self.name}: {exc.strerror}") from None
                self.counters.rx_errors += 1
                log.debug("%s: read failed: %s", self.name, exc)
                break
            n = len(buf)
            if n >= limit or n < hdr + ETH_HEADER_LEN:
                self.counters.rx_drops += 1  # truncated (cannot happen at this size) or runt
                continue
            offload = None
            if hdr:
                if buf[0] or buf[1]:
                    # Consecutive GSO frames carry the same header: its (immutable) Offload
                    # is decoded once and reused, not rebuilt per 64 KiB frame.
                    key = buf[:hdr]
                    offload = offloads.get(key)
                    if offload is None:
                        try:
                            offload = parse_vnet_hdr(key)
                        except VnetHeaderError as exc:
                            self.counters.rx_drops += 1
                            log.debug("%s: dropped frame: %s", self.name, exc)
                            continue
                        if len(offloads) >= OFFLOAD_CACHE:
                            offloads.clear()
                        offloads[key] = offload
                append(Frame(memoryview(buf)[hdr:], offload))
            else:
                append(Frame(buf, offload))
            rx_bytes += n - hdr
        if frames:
            self.counters.rx_frames += len(frames)
            self.counters.rx_bytes += rx_bytes
        return frames

    def send(self, frame: Frame, now: float) -> None:
        fd = self._fd
        if fd < 0:
            raise DeviceClosed(f"{self.name}: device is closed")
        data = frame.data
        offload = frame.offload
        length = len(data)
        if not ETH_HEADER_LEN <= length <= self.capabilities.max_frame:
            check_frame_size(self.name, frame, self.capabilities)  # raises the typed error
        if offload is not None and not self.vnet_hdr_len:
            # No header to carry the metadata: do the work in software first.
            for out in resolve_offloads(frame, csum=False, tso=False):
                self._write(fd, (out.data,), len(out.data))
            return
        if self.vnet_hdr_len:
            header = self._zero_header if offload is None else build_vnet_hdr(
                offload, self.vnet_hdr_len)
            self._write(fd, (header, data), length)
        else:
            self._write(fd, (data,), length)

    def _write(self, fd: int, parts: tuple[bytes | bytearray | memoryview, ...],
               length: int) -> None:
        try:
            written = os.writev(fd, parts)
        except (BlockingIOError, InterruptedError):
            self.counters.tx_drops += 1
            return
        except OSError as exc:
            # EIO: link down; EINVAL: the kernel rejected the header.  Either way the
            # frame is lost, like on a real wire; the stack's retransmissions cope.
            self.counters.tx_drops += 1
            log.debug("%s: write failed: %s", self.name, exc)
            return
        if written != length + (self.vnet_hdr_len if len(parts) == 2 else 0):
            self.counters.short_writes += 1
            return
        counters = self.counters
        counters.tx_frames += 1
        counters.tx_bytes += length

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TapDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ifindex(probe: socket.socket, name: str) -> int:
    try:
        raw = fcntl.ioctl(probe.fileno(), SIOCGIFINDEX, IFREQ.pack(name.encode(), 0))
    except OSError:
        return -1
    return int.from_bytes(raw[IFNAMSIZ:IFNAMSIZ + 4], sys.byteorder, signed=True)


def wait_running(probe: socket.socket, name: str, timeout: float) -> None:
    """Wait (bounded) until the kernel has brought an up TAP's carrier on.

    Attaching turns the carrier on, but the kernel only activates the TAP's transmit queue
    later, from its link-watch work; until then everything the kernel sends us (an ARP
    reply, say) is silently discarded.  An administratively down TAP is not waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, IFREQ.pack(name.encode(), 0))
        except OSError:
            return
        flags = IFREQ.unpack(raw[:IFREQ.size])[1]
        if not flags & IFF_UP or flags & IFF_RUNNING or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def _open_tun(name: str, where: str) -> int:
    try:
        return os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LinkError(f"{TUN_PATH} is missing: no TUN/TAP support in this kernel") from None
    except PermissionError:
        raise PermissionDenied(
            f"cannot open {TUN_PATH} for {name}{where}: permission denied (needs root)") from None


def _ioctl(fd: int, request: int, arg: bytes, name: str, where: str) -> None:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise PermissionDenied(
                f"cannot attach to {name}{where}: permission denied "
                "(needs CAP_NET_ADMIN, or the TAP is owned by another user)") from None
        if exc.errno == errno.EBUSY:
            raise DeviceBusy(f"{name}{where} is already in use by another process") from None
        if exc.errno == errno.EINVAL:
            raise LinkError(f"{name}{where} is not a TAP device (or refused the flags)") from None
        raise LinkError(f"cannot attach to {name}{where}: {exc.strerror}") from None
