"""vipernet.link — devices that move Ethernet frames between the stack and the world.

The device interface is tiny (``frame.Device``): ``fileno()`` to wait on, ``receive(now)``
for every frame available now, ``send(frame, now)`` that never blocks (a full queue is a
counted drop), ``next_deadline()`` for devices that hold frames back in time, ``close()``.
A :class:`~vipernet.link.frame.Frame` is the Ethernet bytes plus optional
:class:`~vipernet.link.frame.Offload` metadata — the virtio-net header — and each device
states its :class:`~vipernet.link.frame.DeviceCapabilities` (MTU, checksum offload, TSO, the
largest frame it takes).  The stack asks for offloads only when the capabilities allow.

Devices:

* ``tap.TapDevice.open(name, netns=..., vnet_hdr=True)`` — a Linux TAP with the virtio-net
  header (our VirtIO-net driver): checksum offload and TSO both ways, 64 KiB frames.  Opens
  from inside the TAP's namespace (``netns.in_netns``) and refuses to create a stray TAP.
* ``qemu.StreamDevice`` / ``qemu.DgramDevice`` — QEMU's ``-netdev stream`` (4-byte length +
  frame, what ``passt`` speaks) and ``-netdev dgram`` socket protocols; no offloads.
* ``memory.MemoryLink.pair()`` — two devices back to back in memory, for tests and
  virtual-clock simulations (no fd, no clock).

Wrappers (each is itself a Device and wraps any other):

* ``faults.FaultInjector(inner, FaultConfig(...), rng)`` — seeded drop, duplicate, reorder,
  corrupt and delay, per direction; hides TSO so loss applies per MSS segment.
* ``pcap.CapturingDevice(inner, pcap.PcapWriter(path))`` — records every frame both ways in a
  classic pcap file, partial checksums completed so tshark's validation passes.

Software offloads (``offload``): ``complete_checksum`` finishes a partial checksum,
``segment_gso`` cuts a TCPV4 GSO frame into MSS segments, ``resolve_offloads`` does whichever
of the two a device cannot.  Errors are :class:`~vipernet.link.errors.LinkError` subclasses
with one-line messages; every device keeps :class:`~vipernet.link.counters.LinkCounters`.

A typical stack-side assembly (the runtime's job)::

    device = TapDevice.open("vt0", netns="vn-test")
    device = CapturingDevice(device, PcapWriter("run.pcap"))       # optional
    device = FaultInjector(device, FaultConfig(drop=0.01), rng)    # optional
"""

from vipernet.link.counters import LinkCounters
from vipernet.link.errors import (
    DeviceBusy,
    DeviceClosed,
    LinkError,
    LinkProtocolError,
    LinkUsageError,
    NoSuchInterface,
    PermissionDenied,
)
from vipernet.link.faults import Direction, FaultConfig, FaultInjector, FaultStats
from vipernet.link.frame import Device, DeviceCapabilities, Frame, GsoType, Offload
from vipernet.link.memory import MemoryDevice, MemoryLink
from vipernet.link.netns import in_netns
from vipernet.link.offload import complete_checksum, resolve_offloads, segment_gso
from vipernet.link.pcap import CapturingDevice, PcapWriter
from vipernet.link.qemu import DgramDevice, StreamDevice
from vipernet.link.tap import TapDevice

__all__ = [
    "CapturingDevice",
    "Device",
    "DeviceBusy",
    "DeviceCapabilities",
    "DeviceClosed",
    "DgramDevice",
    "Direction",
    "FaultConfig",
    "FaultInjector",
    "FaultStats",
    "Frame",
    "GsoType",
    "LinkCounters",
    "LinkError",
    "LinkProtocolError",
    "LinkUsageError",
    "MemoryDevice",
    "MemoryLink",
    "NoSuchInterface",
    "Offload",
    "PcapWriter",
    "PermissionDenied",
    "StreamDevice",
    "TapDevice",
    "complete_checksum",
    "in_netns",
    "resolve_offloads",
    "segment_gso",
]
