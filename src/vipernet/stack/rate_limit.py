"""A token bucket: the rate limit on the ICMP and ICMPv6 errors a stack sends.

RFC 1812 4.3.2.8 and RFC 4443 2.4(f) ask for one; Linux's is ``icmp_msgs_per_sec`` /
``icmp_msgs_burst`` (1000/s, burst 50, shared by both versions).  The clock is the caller's.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` spends one if there is one."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
