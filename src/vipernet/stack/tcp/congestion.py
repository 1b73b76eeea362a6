"""Congestion control: NewReno (RFC 5681 + RFC 6582), counted in bytes.

The connection tells the controller about newly acknowledged bytes, the start and end of
fast recovery and retransmission timeouts; the controller owns ``cwnd`` and ``ssthresh``.
Slow start grows by the bytes acknowledged (no 2*SMSS cap per ACK: with TSO and delayed ACKs
one ACK commonly covers 128 KiB and the cap would make slow start crawl).  Congestion
avoidance adds about one SMSS per round trip.  The initial window is RFC 6928's 10 segments.
"""

from __future__ import annotations

INITIAL_WINDOW_SEGMENTS = 10


class NewReno:
    __slots__ = ("_acc", "cwnd", "mss", "ssthresh")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = 1 << 30
        self._acc = 0

    def set_mss(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss

    def on_ack(self, acked: int, flight: int) -> None:
        """New data acknowledged outside recovery."""
        if self.cwnd < self.ssthresh:
            self.cwnd += acked
            return
        # Congestion avoidance: cwnd += SMSS * SMSS / cwnd per ACK, accumulated exactly.
        self._acc += acked
        if self._acc >= self.cwnd:
            self._acc -= self.cwnd
            self.cwnd += self.mss

    def enter_recovery(self, flight: int) -> None:
        """Three duplicate ACKs (RFC 5681 3.2 steps 2-3)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.mss

    def on_partial_ack(self, acked: int) -> None:
        """RFC 6582 3.2 step 3: deflate by the amount acked, add back one SMSS."""
        self.cwnd = max(self.cwnd - acked + self.mss, self.mss)

    def exit_recovery(self, flight: int) -> None:
        """Full ACK: RFC 6582 option (2), ``cwnd = ssthresh`` (as Linux's PRR ends).

        Option (1), ``min(ssthresh, flight + SMSS)``, restarts from almost nothing when the
        recovery drained the pipe, which on a lossy LAN path halved our throughput again."""
        self.cwnd = max(self.ssthresh, 2 * self.mss)

    def on_timeout(self, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acc = 0
