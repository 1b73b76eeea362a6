"""Ephemeral port (and ping identifier) allocation.

Random start, then a linear probe over the range, as RFC 6056 algorithm 1 suggests: a
port cannot be guessed from the previous one, and allocation always succeeds while any
port is free.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Container


class PortAllocator:
    """Hands out ports in ``[low, high]`` that ``in_use`` does not contain."""

    __slots__ = ("_high", "_low", "_rng")

    def __init__(self, rng: random.Random, low: int, high: int) -> None:
        self._rng = rng
        self._low = low
        self._high = high

    def allocate(self, in_use: Container[int]) -> int:
        span = self._high - self._low + 1
        start = self._rng.randrange(span)
        for i in range(span):
            port = self._low + (start + i) % span
            if port not in in_use:
                return port
        raise OSError(errno.EADDRINUSE, "no free ephemeral port")
