"""What moves between a device and the stack: an Ethernet frame plus offload metadata.

The metadata mirrors the virtio-net header (``struct virtio_net_hdr``), because that is
the richest thing a real device tells us and asks of us:

* receive: ``needs_csum`` means the L4 checksum is *partial* (only the pseudo-header sum
  is in the checksum field; the kernel never computed the rest).  The data is trusted
  (it came from the local kernel), so the stack must not verify that checksum, and the
  pcap writer completes it so captures read clean.  ``data_valid`` means the device
  already verified the checksum.  ``gso_type``/``gso_size`` mark a coalesced segment
  larger than the MTU.
* transmit: the stack may emit one TCP segment of up to 64 KiB with ``gso_type=TCPV4``,
  ``gso_size=MSS`` and a partial checksum, when the device's capabilities allow it; the
  device (kernel) segments it and finishes the checksums.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class GsoType(enum.IntEnum):
    NONE = 0
    TCPV4 = 1
    UDP = 3
    TCPV6 = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Offload:
    """virtio-net header fields that matter to the stack."""

    needs_csum: bool = False
    data_valid: bool = False
    csum_start: int = 0  # offset of the L4 header from the start of the Ethernet frame
    csum_offset: int = 0  # offset of the checksum field from csum_start
    gso_type: GsoType = GsoType.NONE
    gso_size: int = 0  # payload bytes per segment the device should cut
    hdr_len: int = 0  # Ethernet + IP + TCP header bytes


@dataclass(slots=True)
class Frame:
    """One Ethernet frame (destination MAC first), optionally with offload metadata."""

    data: bytes | bytearray | memoryview
    offload: Offload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCapabilities:
    """What a device can do for the stack on transmit and tells it on receive."""

    mtu: int = 1500
    tx_csum_offload: bool = False  # device completes partial L4 checksums we send
    tso: bool = False  # device segments TCPV4 GSO frames we send
    max_frame: int = 1514  # largest frame we may hand to send()


class Device(Protocol):
    """A network device: a tiny, non-blocking interface; extras wrap it.

    ``now`` is the caller's clock (seconds, monotonic); plain devices ignore it, a
    fault-injecting wrapper uses it to hold frames back.
    """

    name: str
    capabilities: DeviceCapabilities

    def fileno(self) -> int | None:
        """An fd that becomes readable when receive() has frames, or None."""
        ...

    def receive(self, now: float) -> list[Frame]:
        """Every frame available now, without blocking (possibly none)."""
        ...

    def send(self, frame: Frame, now: float) -> None:
        """Queue or write one frame; never blocks for long, drops (and counts) if full."""
        ...

    def next_deadline(self) -> float | None:
        """When receive() next has something that is only waiting on time, or None."""
        ...

    def close(self) -> None: ...
