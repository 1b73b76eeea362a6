"""A device wrapper that impairs traffic: drop, duplicate, reorder, corrupt, delay — seeded.

``FaultInjector(inner, FaultConfig(...), rng)`` is itself a :class:`~vipernet.link.frame.Device`
and works over any device (a memory pair in a virtual-clock simulation, or a real TAP, whose
kernel has no netem).  It impairs frames going out (``send``) and coming in (``receive``), as
``config.direction`` says.  Every decision comes from the injected ``random.Random``, so a
seed replays a run exactly.

Held frames (delayed, or held back to be reordered) wait in a queue per direction until their
time; ``next_deadline()`` says when the next one is due, and the caller's ``receive(now)``
at that time both hands due inbound frames up and writes due outbound frames to ``inner``.

Choices worth knowing:

* **No TSO through the injector.**  ``capabilities`` is the inner device's without ``tso``
  (and ``max_frame`` cut to one MTU), so the stack sends MSS-sized segments and a 5% loss
  rate means 5% of *segments*, as on a real wire, not 5% of 64 KiB bursts.  For the same
  reason, GSO frames arriving from the inner device (a TAP's kernel side) are cut into MSS
  segments before impairment.
* **Corruption is always detectable.**  It flips one random byte inside the IPv4 packet of an
  IPv4 frame (never the Ethernet header, never ARP or padding, which no checksum covers).  A
  frame whose checksum is partial (``needs_csum``) or pre-verified (``data_valid``) first gets
  its checksum completed and that metadata cleared, so the receiver really checks it.
* Reordering holds a frame back an extra ``reorder_hold`` seconds so later frames overtake it;
  delay jitter alone (``delay=(lo, hi)``) reorders too, as on a real path.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import random
from dataclasses import dataclass, field, fields, replace

from vipernet.link.counters import LinkCounters, counters_of
from vipernet.link.errors import LinkUsageError
from vipernet.link.frame import Device, Frame, GsoType
from vipernet.link.offload import (
    ETH_HEADER_LEN,
    ETHERTYPE_IPV4,
    OffloadError,
    complete_checksum,
    resolve_offloads,
    segment_gso,
)

DEFAULT_MAX_HELD = 100_000  # frames held per direction before new ones are dropped


class Direction(enum.Enum):
    BOTH = "both"
    RX = "rx"  # toward the stack (frames from inner.receive)
    TX = "tx"  # toward the wire (frames given to send)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """Impairment probabilities (0..1 per frame) and delay jitter (seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)  # each frame waits uniform(lo, hi) seconds
    reorder_hold: float = 0.005  # extra wait for a frame picked for reordering
    direction: Direction = Direction.BOTH
    max_held: int = DEFAULT_MAX_HELD

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise LinkUsageError(f"FaultConfig.{name}={value} is not a probability in [0, 1]")
        lo, hi = self.delay
        if not 0.0 <= lo <= hi:
            raise LinkUsageError(f"FaultConfig.delay={self.delay} needs 0 <= lo <= hi")
        if self.reorder_hold < 0 or self.max_held < 1:
            raise LinkUsageError("FaultConfig.reorder_hold must be >= 0 and max_held >= 1")


@dataclass(slots=True)
class FaultStats:
    """What the injector did in one direction."""

    frames: int = 0  # frames offered to the injector
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    delayed: int = 0
    overflow: int = 0  # dropped because too many frames were already held

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(order=True, slots=True)
class _Held:
    due: float
    order: int
    frame: Frame = field(compare=False)


class FaultInjector:
    """Wraps ``inner`` and impairs its traffic per ``config`` with randomness from ``rng``."""

    def __init__(self, inner: Device, config: FaultConfig, rng: random.Random) -> None:
        self.inner = inner
        self.config = config
        self.rng = rng
        self.name = inner.name
        caps = inner.capabilities
        self.capabilities = replace(caps, tso=False,
                                    max_frame=min(caps.max_frame, caps.mtu + ETH_HEADER_LEN))
        self.rx_stats = FaultStats()
        self.tx_stats = FaultStats()
        self._rx_held: list[_Held] = []
        self._tx_held: list[_Held] = []
        self._order = itertools.count()
        self._impair_rx = config.direction in (Direction.BOTH, Direction.RX)
        self._impair_tx = config.direction in (Direction.BOTH, Direction.TX)

    @property
    def counters(self) -> LinkCounters:
        """The inner device's counters (a fresh, empty set if it keeps none)."""
        return counters_of(self.inner)

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def receive(self, now: float) -> list[Frame]:
        self._flush_tx(now)
        fresh: list[Frame] = []
        for frame in self.inner.receive(now):
            if not self._impair_rx:
                fresh.append(frame)
                continue
            pieces = [frame]
            if _is_gso(frame):
                # A GSO frame we cannot cut is impaired whole: still a frame the stack judges.
                with contextlib.suppress(OffloadError):
                    pieces = segment_gso(frame)
            for piece in pieces:
                fresh.extend(self._impair(piece, now, self.rx_stats, self._rx_held))
        # Frames held earlier and due now were received before the fresh ones.
        due = self._pop_due(self._rx_held, now)
        return due + fresh if due else fresh

    def send(self, frame: Frame, now: float) -> None:
        caps = self.inner.capabilities
        self._flush_tx(now)
        for piece in resolve_offloads(frame, csum=caps.tx_csum_offload, tso=False):
            if not self._impair_tx:
                self.inner.send(piece, now)
                continue
            for out in self._impair(piece, now, self.tx_stats, self._tx_held):
                self.inner.send(out, now)

    def next_deadline(self) -> float | None:
        candidates = [q[0].due for q in (self._rx_held, self._tx_held) if q]
        inner = self.inner.next_deadline()
        if inner is not None:
            candidates.append(inner)
        return min(candidates) if candidates else None

    def held(self) -> int:
        """Frames waiting in either direction."""
        return len(self._rx_held) + len(self._tx_held)

    def close(self) -> None:
        self._rx_held.clear()
        self._tx_held.clear()
        self.inner.close()

    # -- the impairment itself ---------------------------------------------------------

    def _impair(self, frame: Frame, now: float, stats: FaultStats,
                held: list[_Held]) -> list[Frame]:
        """Frames to pass on right now; delayed ones go into ``held``."""
        cfg, rng = self.config, self.rng
        stats.frames += 1
        if cfg.drop and rng.random() < cfg.drop:
            stats.dropped += 1
            return []
        copies = 1
        if cfg.duplicate and rng.random() < cfg.duplicate:
            stats.duplicated += 1
            copies = 2
        now_out: list[Frame] = []
        for _ in range(copies):
            out = frame
            if cfg.corrupt and rng.random() < cfg.corrupt:
                corrupted = _corrupt(frame, rng)
                if corrupted is not None:
                    stats.corrupted += 1
                    out = corrupted
            wait = 0.0
            lo, hi = cfg.delay
            if hi > 0:
                wait = rng.uniform(lo, hi)
            if cfg.reorder and rng.random() < cfg.reorder:
                stats.reordered += 1
                wait += cfg.reorder_hold
            if wait <= 0:
                now_out.append(out)
                continue
            if len(held) >= cfg.max_held:
                stats.overflow += 1
                continue
            stats.delayed += 1
            heapq.heappush(held, _Held(now + wait, next(self._order), out))
        return now_out

    def _flush_tx(self, now: float) -> None:
        for frame in self._pop_due(self._tx_held, now):
            self.inner.send(frame, now)

    @staticmethod
    def _pop_due(held: list[_Held], now: float) -> list[Frame]:
        due: list[Frame] = []
        while held and held[0].due <= now:
            due.append(heapq.heappop(held).frame)
        return due


def _is_gso(frame: Frame) -> bool:
    return frame.offload is not None and frame.offload.gso_type == GsoType.TCPV4


def _corrupt(frame: Frame, rng: random.Random) -> Frame | None:
    """A copy with one byte of its IPv4 packet flipped, or None if it has no IPv4 packet."""
    data = frame.data
    if len(data) < ETH_HEADER_LEN + 20 or int.from_bytes(data[12:14], "big") != ETHERTYPE_IPV4:
        return None
    # Complete a partial checksum first, and drop needs_csum/data_valid, or nobody would
    # ever look at the checksum the flipped byte breaks.
    raw = bytearray(complete_checksum(frame))
    ip_length = int.from_bytes(raw[ETH_HEADER_LEN + 2:ETH_HEADER_LEN + 4], "big")
    end = min(len(raw), ETH_HEADER_LEN + max(ip_length, 20))
    index = rng.randrange(ETH_HEADER_LEN, end)
    raw[index] ^= rng.randrange(1, 256)
    return Frame(bytes(raw), None)
