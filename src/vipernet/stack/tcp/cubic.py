"""CUBIC (RFC 9438) over NewReno's recovery hooks and HyStart++ slow start.

A loss cuts cwnd to 70% (not 50%), and congestion avoidance follows
``W(t) = C (t - K)^3 + W_max`` or the Reno-friendly estimate, whichever is larger.  On a LAN
(tiny RTT, small windows) it runs in the Reno-friendly region: AIMD with a gentler cut,
which is most of its gain under random loss; on a long path the cubic curve refills the
window in seconds where Reno takes minutes.
"""

from __future__ import annotations

from vipernet.stack.tcp.newreno import NewReno

CUBIC_C = 0.4
CUBIC_BETA = 0.7
_RENO_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)


class Cubic(NewReno):
    __slots__ = ("_epoch", "_k", "_prior_w_max", "_w_est", "_w_max")

    name = "cubic"
    beta = CUBIC_BETA

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self._w_max = 0.0  # segments
        self._prior_w_max = 0.0  # before the last cut, for undo
        self._k = 0.0
        self._epoch: float | None = None
        self._w_est = 0.0

    def _cut(self) -> None:
        self.hystart.reset()
        w = self.cwnd / self.mss
        self._prior_w_max = self._w_max
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

    def undo(self, cwnd: int, ssthresh: int) -> None:
        super().undo(cwnd, ssthresh)
        self._w_max = max(self._w_max, self._prior_w_max)
        self._epoch = None

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
