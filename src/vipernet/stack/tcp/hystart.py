"""HyStart++ (RFC 9406): leave slow start when the RTT starts to rise, not at the first loss.

Classic slow start doubles cwnd every round trip until something is lost, which on a path
with a queue means a window's worth of losses in one round.  HyStart++ watches the minimum
RTT of each round (from at least eight samples); once it exceeds the previous round's by
more than ``clamp(min_rtt / 8, 4 ms, 16 ms)`` it switches to Conservative Slow Start
(growth divided by four) for up to five rounds, and then to congestion avoidance.  If the
RTT falls back during CSS the rise was a fluke and slow start resumes.

On a LAN the RTT is far below the 4 ms threshold, so HyStart++ stays out of the way there.
Sans-IO: the controller passes every RTT sample with the ACK number and SND.MAX.
"""

from __future__ import annotations

MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5

_INF = float("inf")


class HyStartPlusPlus:
    __slots__ = ("css_baseline", "css_rounds", "in_css", "last_round_min", "round_min",
                 "samples", "window_end")

    def __init__(self) -> None:
        self.window_end = 0
        self.last_round_min = _INF
        self.round_min = _INF
        self.samples = 0
        self.in_css = False
        self.css_baseline = _INF
        self.css_rounds = 0

    def on_rtt(self, rtt: float, ack: int, snd_max: int) -> bool:
        """One RTT sample while in slow start; True when slow start should end now
        (CSS ran its rounds): the caller sets ``ssthresh = cwnd``."""
        if ack >= self.window_end:  # a new round begins
            self.window_end = snd_max
            self.last_round_min = self.round_min
            self.round_min = _INF
            self.samples = 0
            if self.in_css:
                self.css_rounds += 1
                if self.css_rounds >= CSS_ROUNDS:
                    self.in_css = False
                    return True
        self.samples += 1
        if rtt < self.round_min:
            self.round_min = rtt
        if self.samples < N_RTT_SAMPLE or self.last_round_min == _INF:
            return False
        if self.in_css:
            if self.round_min < self.css_baseline:
                self.in_css = False  # the RTT came back down: it was not the queue
            return False
        thresh = max(MIN_RTT_THRESH,
                     min(self.last_round_min / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
        if self.round_min >= self.last_round_min + thresh:
            self.in_css = True
            self.css_baseline = self.round_min
            self.css_rounds = 0
        return False

    def growth(self, acked: int) -> int:
        """Bytes slow start may add for ``acked`` bytes acknowledged."""
        return acked // CSS_GROWTH_DIVISOR if self.in_css else acked

    def reset(self) -> None:
        """After a loss or timeout: a later slow start starts its rounds afresh."""
        self.in_css = False
        self.last_round_min = self.round_min = _INF
        self.samples = 0
