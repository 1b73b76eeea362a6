"""Captures: a classic pcap writer and a device wrapper that records every frame in and out.

:class:`PcapWriter` writes the original libpcap format (magic ``a1b2c3d4``, version 2.4,
``LINKTYPE_ETHERNET``, snaplen 262144) with wall-clock timestamps to the microsecond, which
every tool reads (tshark, tcpdump, Wireshark).  It flushes at least every ``flush_interval``
seconds, so a capture of a hung or killed run still holds the frames that led up to it.

:class:`CapturingDevice` wraps any device and records each frame as it crosses, in both
directions.  Frames whose L4 checksum is partial (virtio ``needs_csum``, from the kernel or
from our stack using checksum offload) are written with the checksum *completed*: the bytes
on the wire are not what a capture should judge, the packet is, and tshark with checksum
validation on would otherwise flag every offloaded segment.  GSO frames are written whole —
one IPv4 packet of up to 64 KiB is still a valid packet, and it is what the stack really
sent; captures therefore show large TCP segments where the wire carried several.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vipernet.link.counters import LinkCounters, counters_of
from vipernet.link.frame import Device, Frame
from vipernet.link.offload import OffloadError, complete_checksum

log = logging.getLogger(__name__)

PCAP_MAGIC_USEC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """Appends Ethernet frames to a pcap file (a path we open, or a binary file we are given)."""

    def __init__(self, target: str | Path | BinaryIO, *, snaplen: int = SNAPLEN,
                 clock: Callable[[], float] = time.time, flush_interval: float = 1.0) -> None:
        if isinstance(target, str | Path):
            self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 - closed by close()
            self._owns_file = True
        else:
            self._file = target
            self._owns_file = False
        self.snaplen = snaplen
        self._clock = clock
        self._flush_interval = flush_interval
        self._last_flush = clock()
        self.records = 0
        self.unflushed = 0  # records written since the last flush
        self.write_errors = 0
        self._broken = False
        self._emit(_GLOBAL_HEADER.pack(PCAP_MAGIC_USEC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, data: bytes | bytearray | memoryview, *,
              timestamp: float | None = None) -> None:
        """Record one frame at ``timestamp`` (default: the wall clock now)."""
        if self._broken:
            return
        now = self._clock() if timestamp is None else timestamp
        seconds = int(now)
        micros = min(round((now - seconds) * 1_000_000), 999_999)
        length = len(data)
        captured = min(length, self.snaplen)
        self._emit(_RECORD_HEADER.pack(seconds, micros, captured, length))
        self._emit(data[:captured] if captured < length else data)
        self.records += 1
        self.unflushed += 1
        if now - self._last_flush >= self._flush_interval:
            self.flush()
            self._last_flush = now

    def _emit(self, chunk: bytes | bytearray | memoryview) -> None:
        try:
            self._file.write(chunk)
        except OSError as exc:
            # A full disk must not take the network down: stop capturing, say so once.
            self.write_errors += 1
            self._broken = True
            log.warning("pcap capture stopped: %s", exc)

    @property
    def flush_interval(self) -> float:
        return self._flush_interval

    def flush(self) -> None:
        self.unflushed = 0
        if self._broken:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self.write_errors += 1
            self._broken = True
            log.warning("pcap capture stopped: %s", exc)

    def close(self) -> None:
        self.flush()
        if self._owns_file:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def capture_bytes(frame: Frame) -> bytes | bytearray | memoryview:
    """What to record for ``frame``: its bytes, with a partial checksum completed."""
    if frame.offload is None or not frame.offload.needs_csum:
        return frame.data
    try:
        return complete_checksum(frame)
    except OffloadError:
        return frame.data  # record what we have: the capture is where one looks for why


class CapturingDevice:
    """Wraps ``inner`` and records every frame received from it and sent through it."""

    def __init__(self, inner: Device, writer: PcapWriter) -> None:
        self.inner = inner
        self.writer = writer
        self.name = inner.name
        self.capabilities = inner.capabilities
        # When (in the caller's clock) records left in the writer's buffer must hit the
        # file: a quiet link still gets its last frames on disk within a flush interval.
        self._flush_due: float | None = None

    @property
    def counters(self) -> LinkCounters:
        return counters_of(self.inner)

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def receive(self, now: float) -> list[Frame]:
        frames = self.inner.receive(now)
        for frame in frames:
            self.writer.write(capture_bytes(frame))
        self._schedule_flush(now)
        return frames

    def send(self, frame: Frame, now: float) -> None:
        self.writer.write(capture_bytes(frame))
        self._schedule_flush(now)
        self.inner.send(frame, now)

    def _schedule_flush(self, now: float) -> None:
        if self._flush_due is not None and now >= self._flush_due:
            self.writer.flush()
            self._flush_due = None
        if self.writer.unflushed and self._flush_due is None:
            self._flush_due = now + self.writer.flush_interval
        elif not self.writer.unflushed:
            self._flush_due = None

    def next_deadline(self) -> float | None:
        inner = self.inner.next_deadline()
        if self._flush_due is None:
            return inner
        return self._flush_due if inner is None else min(inner, self._flush_due)

    def close(self) -> None:
        """Closes the inner device and flushes the writer (the writer's owner closes it)."""
        self.writer.flush()
        self.inner.close()
