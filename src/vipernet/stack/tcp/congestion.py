"""Congestion control: NewReno (RFC 5681 + RFC 6582, the default) and CUBIC (RFC 9438), in bytes.

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

    def on_ack(self, acked: int, flight: int, now: float = 0.0,
               srtt: float | None = None) -> None:
        """New data acknowledged outside recovery (``now``/``srtt`` serve CUBIC)."""
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


CUBIC_C = 0.4
CUBIC_BETA = 0.7
_RENO_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)


class Cubic(NewReno):
    """CUBIC (RFC 9438) over the same recovery machinery: a loss cuts cwnd to 70% (not 50%),
    and congestion avoidance follows ``W(t) = C (t - K)^3 + W_max`` or the Reno-friendly
    estimate, whichever is larger.  On a LAN (tiny RTT, small windows) it runs in the
    Reno-friendly region: AIMD with a gentler cut, which is most of its gain under loss."""

    __slots__ = ("_epoch", "_k", "_w_est", "_w_max")

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self._w_max = 0.0  # segments
        self._k = 0.0
        self._epoch: float | None = None
        self._w_est = 0.0

    def _cut(self) -> None:
        w = self.cwnd / self.mss
        # fast convergence: a flow that lost before reaching its last W_max yields more
        self._w_max = w * (1 + CUBIC_BETA) / 2 if w < self._w_max else w
        self._epoch = None
        self.ssthresh = max(int(self.cwnd * CUBIC_BETA), 2 * self.mss)

    def enter_recovery(self, flight: int) -> None:
        self._cut()
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_timeout(self, flight: int) -> None:
        self._cut()
        self.cwnd = self.mss
        self._acc = 0

    def on_ack(self, acked: int, flight: int, now: float = 0.0,
               srtt: float | None = None) -> None:
        if self.cwnd < self.ssthresh or srtt is None:
            super().on_ack(acked, flight)
            return
        mss = self.mss
        w = self.cwnd / mss
        if self._epoch is None:
            self._epoch = now
            if w < self._w_max:
                self._k = ((self._w_max - w) / CUBIC_C) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = w
            self._w_est = w
        t = now - self._epoch + srtt
        target = CUBIC_C * (t - self._k) ** 3 + self._w_max
        segs = acked / mss
        self._w_est += _RENO_ALPHA * segs / w
        if target < self._w_est:
            target = self._w_est
        target = min(target, 1.5 * w)
        if target > w:
            # (target - W) / W segments per segment acknowledged, in bytes
            self.cwnd += int(mss * segs * (target - w) / w)
