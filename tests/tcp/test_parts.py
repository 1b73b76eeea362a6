"""The engine's small parts on their own: sequence arithmetic, ISNs, RTO, NewReno, buffers."""

from __future__ import annotations

import random

import pytest

from vipernet.stack.tcp.congestion import NewReno
from vipernet.stack.tcp.isn import IsnGenerator
from vipernet.stack.tcp.recv_buffer import MAX_PIECES, RecvBuffer
from vipernet.stack.tcp.rto import MIN_RTO, RtoEstimator
from vipernet.stack.tcp.send_buffer import SendBuffer
from vipernet.stack.tcp.seq import seq_diff, seq_gt, seq_lt, unwrap, wrap


def test_sequence_comparisons_wrap_around_two_to_the_32() -> None:
    assert seq_lt(0xFFFFFFF0, 0x10) and seq_gt(0x10, 0xFFFFFFF0)
    assert seq_diff(5, 0xFFFFFFFF) == 6 and seq_diff(0xFFFFFFFF, 5) == -6


def test_unwrap_inverts_wrap_near_the_reference_point() -> None:
    iss = 0xFFFFFF00
    for off in (0, 1, 255, 256, 10**9, 5 * 2**32 + 17):
        assert unwrap(wrap(off, iss), iss, off - 1000) == off


def test_isn_differs_per_four_tuple_and_advances_with_the_clock() -> None:
    gen = IsnGenerator(random.Random(1))
    a = gen.isn(1, 1000, 2, 80, 10.0)
    assert a != gen.isn(1, 1001, 2, 80, 10.0)
    later = gen.isn(1, 1000, 2, 80, 11.0)
    assert (later - a) & 0xFFFFFFFF == 250_000  # one tick per 4 microseconds
    assert IsnGenerator(random.Random(2)).isn(1, 1000, 2, 80, 10.0) != a  # keyed


def test_rto_follows_rfc_6298_and_backs_off() -> None:
    r = RtoEstimator()
    assert r.current() == 1.0
    r.sample(0.5)
    assert r.srtt == 0.5 and r.rttvar == 0.25 and r.rto == pytest.approx(1.5)
    r.sample(0.5)
    assert r.rttvar == pytest.approx(0.1875) and r.rto == pytest.approx(1.25)
    r.on_timeout()
    r.on_timeout()
    assert r.current() == pytest.approx(5.0)
    r.sample(0.0001)
    assert r.backoff == 0 and r.current() >= MIN_RTO


def test_newreno_slow_start_avoidance_and_recovery() -> None:
    cc = NewReno(1000)
    assert cc.cwnd == 10_000
    cc.on_ack(5000, 10_000)
    assert cc.cwnd == 15_000  # slow start: grows by what was acked
    cc.enter_recovery(16_000)
    assert cc.ssthresh == 8000 and cc.cwnd == 11_000
    cc.exit_recovery(2000)
    assert cc.cwnd == 8000
    for _ in range(8):
        cc.on_ack(1000, 8000)
    assert cc.cwnd == 9000  # congestion avoidance: one MSS per window acknowledged
    cc.on_timeout(9000)
    assert cc.cwnd == 1000 and cc.ssthresh == 4500


def test_send_buffer_releases_acked_bytes_and_copies_any_range() -> None:
    sb = SendBuffer(1)
    data = bytes(range(256)) * 4000
    sb.append(data)
    out = bytearray()
    sb.copy_into(out, 1 + 1000, 500)
    assert out == data[1000:1500]
    assert sb.ack_to(1 + 300_000) == 300_000
    out = bytearray()
    sb.copy_into(out, 1 + 300_000, 100)
    assert out == data[300_000:300_100] and len(sb) == len(data) - 300_000


def test_recv_buffer_bounds_out_of_order_pieces() -> None:
    rb = RecvBuffer()
    for i in range(MAX_PIECES):
        assert rb.add_out_of_order(10 + 2 * i, b"x")
    assert not rb.add_out_of_order(10 + 2 * MAX_PIECES + 5, b"y")
    assert rb.ooo_bytes == MAX_PIECES


def test_cubic_cuts_to_seventy_percent_and_regrows_toward_w_max() -> None:
    from vipernet.stack.tcp.congestion import Cubic

    cc = Cubic(1000)
    cc.cwnd = 100_000
    cc.ssthresh = 50_000
    cc.enter_recovery(100_000)
    assert cc.ssthresh == 70_000
    cc.exit_recovery(0)
    assert cc.cwnd == 70_000
    now = 0.0
    for _ in range(400):
        now += 0.01
        cc.on_ack(2000, cc.cwnd, now, 0.01)
    assert 90_000 <= cc.cwnd <= 160_000  # back to about W_max (100 segments) and beyond


def test_socket_option_selects_cubic() -> None:
    from tests.tcp.harness import Harness
    from vipernet.stack.tcp.congestion import Cubic

    h = Harness()
    s = h.layer.open_socket()
    s.setsockopt("TCP_CUBIC", 1)
    with pytest.raises(BlockingIOError):
        s.connect(("10.0.0.2", 80), 0.0)
    assert isinstance(s.connection.cc, Cubic)  # type: ignore[union-attr]


def test_rto_estimator_remembers_the_minimum_rtt_for_racks_reordering_window() -> None:
    from vipernet.stack.tcp.rto import RtoEstimator

    est = RtoEstimator()
    assert est.min_rtt is None
    for rtt in (0.004, 0.002, 0.009):
        est.sample(rtt)
    assert est.min_rtt == 0.002
