"""Per-device counters: what moved and what was dropped, one named field per branch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class LinkCounters:
    """Mutable counters a device bumps as it works; ``as_dict()`` is what ``vipernet stat`` shows.

    ``rx_*`` is from the wire toward the stack, ``tx_*`` from the stack toward the wire.
    """

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_drops: int = 0  # frames read but thrown away (malformed header, oversized, ...)
    tx_drops: int = 0  # frames we could not hand on (device full, too big, closed)
    short_writes: int = 0  # the OS accepted fewer bytes than the frame held
    rx_errors: int = 0  # read calls that failed with an unexpected errno

    def count_rx(self, length: int) -> None:
        self.rx_frames += 1
        self.rx_bytes += length

    def count_tx(self, length: int) -> None:
        self.tx_frames += 1
        self.tx_bytes += length

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def counters_of(device: Any) -> LinkCounters:
    """A wrapped device's counters, for wrappers (faults, capture) that report the inner
    device's: its LinkCounters, or a fresh, empty set if it keeps none."""
    counters = getattr(device, "counters", None)
    return counters if isinstance(counters, LinkCounters) else LinkCounters()
