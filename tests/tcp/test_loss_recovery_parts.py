"""RACK (RFC 8985), PRR (RFC 6937), HyStart++ (RFC 9406) and the congestion-control registry
on their own: sans-IO, the clock passed in."""

from __future__ import annotations

import pytest

from vipernet.stack.tcp.congestion import ALGORITHMS, Cubic, NewReno, make_congestion
from vipernet.stack.tcp.hystart import CSS_ROUNDS, HyStartPlusPlus
from vipernet.stack.tcp.prr import Prr
from vipernet.stack.tcp.rack import RackScoreboard

MSS = 1000


def _flight(rack: RackScoreboard, n: int, now: float) -> None:
    for i in range(n):
        rack.on_transmit(1 + i * MSS, 1 + (i + 1) * MSS, now)


def test_rack_marks_a_hole_lost_once_a_later_segment_is_delivered_and_the_window_passed() -> None:
    rack = RackScoreboard()
    _flight(rack, 4, 0.0)
    sacked = [[1 + MSS, 1 + 4 * MSS]]
    rack.on_sacked([(1 + MSS, 1 + 4 * MSS)], 0.010, None, sacked)
    assert rack.rtt == pytest.approx(0.010)
    # the reordering window has not passed yet: the time left comes back, nothing is lost
    assert rack.detect_loss(0.010, 0.002, sacked) == pytest.approx(0.002)
    assert rack.lost_bytes == 0
    assert rack.detect_loss(0.0121, 0.002, sacked) is None
    assert rack.lost_bytes == MSS and rack.first_lost() is rack.segs[0]


def test_rack_finds_a_lost_retransmission_by_time() -> None:
    rack = RackScoreboard()
    _flight(rack, 3, 0.0)
    sacked = [[1 + MSS, 1 + 2 * MSS]]
    rack.on_sacked([(1 + MSS, 1 + 2 * MSS)], 0.01, None, sacked)
    rack.detect_loss(0.01, 0.0, sacked)
    assert rack.lost_bytes == MSS
    rack.on_transmit(1, 1 + MSS, 0.011)  # the retransmission
    assert rack.lost_bytes == 0 and rack.segs[0].retransmitted
    rack.on_transmit(1 + 3 * MSS, 1 + 4 * MSS, 0.012)  # new data after it
    sacked = [[1 + MSS, 1 + 2 * MSS], [1 + 3 * MSS, 1 + 4 * MSS]]
    rack.on_sacked([(1 + 3 * MSS, 1 + 4 * MSS)], 0.022, 0.01, sacked)
    rack.detect_loss(0.022, 0.0, sacked)
    # segment 2 (sent at 0) and the retransmission (at 0.011) both older than RACK's segment
    assert rack.relost_count == 1
    assert rack.lost_bytes == 2 * MSS


def test_rack_same_clock_reading_resend_is_not_older_than_new_data_sent_after_it() -> None:
    rack = RackScoreboard()
    _flight(rack, 2, 0.0)
    sacked = [[1 + MSS, 1 + 2 * MSS]]
    rack.on_sacked([(1 + MSS, 1 + 2 * MSS)], 0.0, None, sacked)
    rack.detect_loss(0.0, 0.0, sacked)
    rack.on_transmit(1, 1 + MSS, 0.0)  # resend, then new data, one clock reading
    rack.on_transmit(1 + 2 * MSS, 1 + 3 * MSS, 0.0)
    assert rack.detect_loss(0.0, 0.0, sacked) is None
    assert rack.lost_bytes == 0  # the resend is newer than RACK's segment, not lost


def test_rack_sees_reordering_and_a_cumulative_ack_clears_lost_bytes() -> None:
    rack = RackScoreboard()
    _flight(rack, 3, 0.0)
    sacked = [[1 + 2 * MSS, 1 + 3 * MSS]]
    rack.on_sacked([(1 + 2 * MSS, 1 + 3 * MSS)], 0.001, None, sacked)
    assert not rack.reordering_seen
    rack.detect_loss(0.01, 0.0, sacked)
    assert rack.lost_bytes == 2 * MSS
    rack.on_cumulative_ack(1 + 3 * MSS, 0.011, None)  # the "lost" ones arrive after all
    assert rack.reordering_seen
    assert rack.lost_bytes == 0 and rack.segs == []


def test_rack_partial_retransmission_splits_the_record() -> None:
    rack = RackScoreboard()
    rack.on_transmit(1, 1 + 4 * MSS, 0.0)  # one TSO burst
    rack.on_transmit(1 + MSS, 1 + 2 * MSS, 0.5)
    assert [(r.start, r.end, r.retransmitted) for r in rack.segs] == [
        (1, 1 + MSS, False), (1 + MSS, 1 + 2 * MSS, True), (1 + 2 * MSS, 1 + 4 * MSS, False)]


def test_prr_sends_in_proportion_then_slow_starts_back_to_ssthresh() -> None:
    prr = Prr()
    prr.start(ssthresh=5 * MSS, flight=10 * MSS)
    # pipe above ssthresh: one segment out per two delivered (ssthresh / RecoverFS = 1/2)
    sent = 0
    for _ in range(4):
        sent += prr.on_ack(MSS, 8 * MSS, MSS)
        prr.on_sent(prr.sndcnt)
    assert sent == 2 * MSS
    # pipe fell below ssthresh (more was lost): PRR-SSRB refills toward ssthresh, at most
    # one MSS more than delivered and not yet sent: min(5 - 2, max(4 - 2, 1) + 1) segments
    assert prr.on_ack(MSS, 2 * MSS, MSS) == 3 * MSS
    prr2 = Prr()
    prr2.start(ssthresh=5 * MSS, flight=10 * MSS)
    assert prr2.on_ack(MSS, 1 * MSS, MSS) == 2 * MSS  # min(ssthresh - pipe, delivered + MSS)


def test_hystart_plus_plus_leaves_slow_start_when_the_rtt_rises() -> None:
    hs = HyStartPlusPlus()
    snd_max = 0
    ack = 0

    def round_of(rtt: float) -> bool:
        nonlocal snd_max, ack
        snd_max += 100
        ended = False
        for _ in range(10):
            ack += 10
            ended = hs.on_rtt(rtt, ack, snd_max) or ended
        return ended

    round_of(0.050)
    round_of(0.050)
    assert not hs.in_css and hs.growth(800) == 800
    round_of(0.060)  # +10 ms > max(4 ms, min(50/8 ms, 16 ms)): conservative slow start
    assert hs.in_css and hs.growth(800) == 200
    assert any(round_of(0.060) for _ in range(CSS_ROUNDS))  # then congestion avoidance


def test_hystart_rtt_falling_back_in_css_resumes_slow_start() -> None:
    hs = HyStartPlusPlus()
    hs.on_rtt(0.05, 0, 100)
    for i in range(10):
        hs.on_rtt(0.05, 10 + i, 100)
    for i in range(10):
        hs.on_rtt(0.07, 100 + i, 200)
    assert hs.in_css
    for i in range(10):
        hs.on_rtt(0.04, 200 + i, 300)
    assert not hs.in_css


def test_congestion_registry_by_name_and_undo_restores() -> None:
    assert set(ALGORITHMS) == {"newreno", "cubic"}
    assert type(make_congestion("nonsense", MSS)) is NewReno  # the default
    assert isinstance(make_congestion("cubic", MSS), Cubic)
    for cc in (NewReno(MSS), Cubic(MSS)):
        cc.cwnd = 40 * MSS
        before = (cc.cwnd, cc.ssthresh)
        cc.enter_recovery(40 * MSS)
        assert cc.ssthresh == int(40 * MSS * cc.beta)
        cc.undo(*before)
        assert (cc.cwnd, cc.ssthresh) == before
