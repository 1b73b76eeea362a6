"""NewReno (RFC 5681 + RFC 6582), in bytes, with HyStart++ (RFC 9406) in slow start.

Slow start grows by the bytes acknowledged (no 2*SMSS cap per ACK: with TSO and delayed ACKs
one ACK commonly covers 128 KiB and the cap would make slow start crawl).  Congestion
avoidance adds about one SMSS per round trip.  The initial window is RFC 6928's 10 segments.
With SACK, fast recovery's sending is PRR's (:mod:`prr`), which sets ``cwnd`` itself; the
recovery hooks below that inflate and deflate cwnd serve peers without SACK.
"""

from __future__ import annotations

from vipernet.stack.tcp.hystart import HyStartPlusPlus
from vipernet.stack.tcp.params import INITIAL_WINDOW_SEGMENTS


class NewReno:
    __slots__ = ("_acc", "cwnd", "hystart", "mss", "ssthresh")

    name = "newreno"
    beta = 0.5  # the multiplicative decrease

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = 1 << 30
        self._acc = 0
        self.hystart = HyStartPlusPlus()

    def set_mss(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss

    def on_rtt(self, rtt: float, ack: int, snd_max: int) -> None:
        """An RTT sample from an ACK (HyStart++ watches them in slow start)."""
        if self.cwnd < self.ssthresh and self.hystart.on_rtt(rtt, ack, snd_max):
            self.ssthresh = self.cwnd

    def on_ack(self, acked: int, flight: int, now: float = 0.0,
               srtt: float | None = None) -> None:
        """New data acknowledged outside recovery (``now``/``srtt`` serve CUBIC)."""
        if self.cwnd < self.ssthresh:
            self.cwnd += self.hystart.growth(acked)
            return
        # Congestion avoidance: cwnd += SMSS * SMSS / cwnd per ACK, accumulated exactly.
        self._acc += acked
        if self._acc >= self.cwnd:
            self._acc -= self.cwnd
            self.cwnd += self.mss

    def enter_recovery(self, flight: int) -> None:
        """A loss detected (RFC 5681 3.2 steps 2-3; the +3 SMSS only matters without SACK,
        where PRR does not set cwnd)."""
        self.hystart.reset()
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
        self.hystart.reset()
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acc = 0

    def undo(self, cwnd: int, ssthresh: int) -> None:
        """A cut proved spurious (Eifel, D-SACK): back to the window from before it."""
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)
