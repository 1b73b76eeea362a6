"""Retransmission timeout estimation, RFC 6298, with exponential backoff.

We follow the RFC's formulas (alpha 1/8, beta 1/4, K 4) but, like Linux, clamp the RTO to
[200 ms, 120 s] instead of the RFC's 1 s floor: on a LAN or a TAP the RTT is microseconds and
a 1 s floor would turn every tail loss into a second of silence.  The initial RTO before any
sample is the RFC's 1 s.
"""

from __future__ import annotations

MIN_RTO = 0.2
MAX_RTO = 120.0
INITIAL_RTO = 1.0
_CLOCK_G = 0.001  # timer granularity G of RFC 6298 (we measure in milliseconds)


class RtoEstimator:
    __slots__ = ("backoff", "min_rto", "min_rtt", "rto", "rttvar", "srtt")

    def __init__(self, min_rto: float = MIN_RTO) -> None:
        self.srtt: float | None = None
        self.min_rtt: float | None = None  # base of RACK's reordering window (RFC 8985)
        self.rttvar = 0.0
        self.rto = INITIAL_RTO
        self.backoff = 0
        self.min_rto = min_rto

    def sample(self, rtt: float) -> None:
        """Feed one RTT measurement (seconds); clears the backoff (RFC 6298 5.7 spirit)."""
        rtt = max(rtt, 0.0)
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(MAX_RTO, max(self.min_rto, self.srtt + max(_CLOCK_G, 4 * self.rttvar)))
        self.backoff = 0

    def current(self) -> float:
        """The RTO to arm now, doubled per consecutive timeout (RFC 6298 5.5)."""
        return min(MAX_RTO, self.rto * (1 << min(self.backoff, 16)))

    def on_timeout(self) -> None:
        self.backoff += 1
