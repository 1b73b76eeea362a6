"""Per-state, per-event tests of the TCP engine (smoltcp style: test_<state>_<event>)."""

from __future__ import annotations

import errno
import itertools

import pytest

from tests.tcp.harness import LPORT, PEER_ISS, RPORT, F, Harness, Peer
from vipernet.wire.tcp import TcpOptions


def quiet(sock: object) -> None:
    """End the quick-ACK phase (the first segments of a stream are ACKed one by one) so a
    test sees the steady-state delayed-ACK behaviour."""
    conn = sock.connection  # type: ignore[attr-defined]
    conn.quickacks = 0


# -- CLOSED (no socket) and LISTEN ----------------------------------------------------------


def test_closed_port_receives_syn_answers_rst_ack() -> None:
    h = Harness()
    h.send(Peer(), F.SYN, ack=0)
    rst = h.recv_one()
    assert rst.flags == F.RST | F.ACK
    assert rst.h.seq == 0 and rst.h.ack == PEER_ISS + 1
    assert h.layer.counters["tcp_no_socket"] == 1


def test_closed_port_receives_ack_answers_rst_with_its_ack_as_seq() -> None:
    h = Harness()
    h.send(Peer(), F.ACK, ack=12345)
    rst = h.recv_one()
    assert rst.flags == F.RST and rst.h.seq == 12345


def test_closed_port_receives_rst_answers_nothing() -> None:
    h = Harness()
    h.send(Peer(), F.RST | F.ACK, ack=5)
    h.recv_nothing()


def test_listen_receives_syn_answers_syn_ack_with_options_offered() -> None:
    h = Harness()
    _peer, _lst, synack = h.syn_received(
        options=TcpOptions(mss=1400, window_scale=7, sack_permitted=True,
                           timestamps=(777, 0)))
    o = synack.h.options
    assert synack.h.ack == PEER_ISS + 1
    assert o.mss == 1460 and o.window_scale is not None and o.sack_permitted
    assert o.timestamps is not None and o.timestamps[1] == 777


def test_listen_receives_syn_without_options_answers_without_them() -> None:
    h = Harness()
    _peer, _lst, synack = h.syn_received(options=TcpOptions())
    o = synack.h.options
    assert o.mss == 1460
    assert o.window_scale is None and not o.sack_permitted and o.timestamps is None


def test_listen_receives_ack_answers_rst() -> None:
    h = Harness()
    h.listen()
    h.send(Peer(), F.ACK, ack=4242)
    rst = h.recv_one()
    assert rst.flags == F.RST and rst.h.seq == 4242


def test_listen_receives_rst_is_ignored() -> None:
    h = Harness()
    h.listen()
    h.send(Peer(), F.RST, ack=0)
    h.recv_nothing()


def test_listen_with_full_accept_queue_drops_syn() -> None:
    h = Harness()
    lst = h.listen(backlog=1)
    p1 = Peer(port=1001)
    h.send(p1, F.SYN, ack=0)
    p1.ack = h.recv_one().h.seq + 1
    h.send(p1, F.ACK)
    p2 = Peer(port=1002)
    h.send(p2, F.SYN, ack=0)
    h.recv_nothing()
    assert h.layer.counters["tcp_listen_overflow"] == 1
    lst.accept()


# -- SYN_SENT ----------------------------------------------------------------------------------


def test_syn_sent_sends_syn_with_our_options() -> None:
    h = Harness()
    _peer, sock, syn = h.syn_sent()
    o = syn.h.options
    assert o.mss == 1460 and o.window_scale == 7 and o.sack_permitted
    assert o.timestamps is not None
    assert sock.state.name == "SYN_SENT" and not sock.writable


def test_syn_sent_receives_syn_ack_becomes_established() -> None:
    h = Harness()
    peer, sock = h.established()
    assert sock.writable and not sock.readable
    assert sock.getpeername() == ("10.0.0.2", RPORT)
    assert sock.take_error() is None
    assert peer.ack == h.layer.conns[(int(h.stack.config.ip.ip) + 1, RPORT,
                                      sock.getsockname()[1])].iss + 1


def test_syn_sent_receives_rst_ack_refuses_the_connection() -> None:
    h = Harness()
    peer, sock, _ = h.syn_sent()
    h.send(peer, F.RST | F.ACK)
    assert sock.writable and sock.readable
    with pytest.raises(ConnectionRefusedError):
        sock.connect(("10.0.0.2", RPORT), h.now)


def test_syn_sent_receives_rst_without_ack_is_ignored() -> None:
    h = Harness()
    peer, sock, _ = h.syn_sent()
    h.send(peer, F.RST, ack=0)
    assert sock.state.name == "SYN_SENT"


def test_syn_sent_receives_bad_ack_answers_rst() -> None:
    h = Harness()
    peer, sock, _ = h.syn_sent()
    h.send(peer, F.SYN | F.ACK, ack=peer.ack + 1000, advance=False)
    rst = h.recv_one()
    assert rst.flags == F.RST and rst.h.seq == (peer.ack + 1000) & 0xFFFFFFFF
    assert sock.state.name == "SYN_SENT"


def test_syn_sent_receives_syn_does_simultaneous_open() -> None:
    h = Harness()
    peer, sock, _ = h.syn_sent()
    h.send(peer, F.SYN, ack=0, options=TcpOptions(mss=1460))
    synack = h.recv_one()
    assert synack.flags == F.SYN | F.ACK and synack.h.ack == peer.seq
    assert sock.state.name == "SYN_RECEIVED"
    h.send(peer, F.SYN | F.ACK, seq=PEER_ISS, options=TcpOptions(mss=1460))
    assert sock.state.name == "ESTABLISHED"


def test_syn_sent_retransmits_syn_with_exponential_backoff_then_times_out() -> None:
    h = Harness()
    _peer, sock, _ = h.syn_sent()
    times = []
    for _ in range(h.layer.syn_retries):
        d = h.layer.next_deadline()
        assert d is not None
        h.advance(d - h.now)
        segs = h.recv()
        assert [s.flags for s in segs] == [F.SYN]
        times.append(h.now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g2 == pytest.approx(2 * g1) for g1, g2 in itertools.pairwise(gaps))
    h.advance(1000.0)
    assert sock.take_error() == errno.ETIMEDOUT
    assert sock.state.name == "CLOSED"


def test_syn_sent_close_aborts_quietly() -> None:
    h = Harness()
    _peer, sock, _ = h.syn_sent()
    sock.close(h.now)
    h.recv_nothing()
    assert not h.layer.conns and not h.layer.port_refs


# -- SYN_RECEIVED ----------------------------------------------------------------------------


def test_syn_received_receives_ack_becomes_established_and_is_accepted() -> None:
    h = Harness()
    peer, lst, _ = h.syn_received()
    with pytest.raises(BlockingIOError):
        lst.accept()
    assert not lst.readable
    h.send(peer, F.ACK)
    assert lst.readable and lst in h.stack.changed
    sock = lst.accept()
    assert sock.state.name == "ESTABLISHED"
    assert sock.getpeername() == ("10.0.0.2", RPORT)


def test_syn_received_receives_retransmitted_syn_resends_syn_ack() -> None:
    h = Harness()
    peer, _lst, synack = h.syn_received()
    h.send(peer, F.SYN, seq=PEER_ISS, ack=0, options=TcpOptions(mss=1460))
    again = h.recv_one()
    assert again.flags == F.SYN | F.ACK and again.h.seq == synack.h.seq


def test_syn_received_receives_rst_forgets_the_half_open_connection() -> None:
    h = Harness()
    peer, lst, _ = h.syn_received()
    h.send(peer, F.RST)
    assert not h.layer.conns
    with pytest.raises(BlockingIOError):
        lst.accept()


def test_syn_received_receives_bad_ack_answers_rst() -> None:
    h = Harness()
    peer, _lst, _ = h.syn_received()
    h.send(peer, F.ACK, ack=peer.ack + 5000)
    assert h.recv_one().flags == F.RST


def test_syn_received_retransmits_syn_ack_on_timeout() -> None:
    h = Harness()
    _peer, _lst, synack = h.syn_received()
    h.advance(1.01)
    again = h.recv_one()
    assert again.flags == F.SYN | F.ACK and again.h.seq == synack.h.seq


def test_syn_received_data_with_the_handshake_ack_is_delivered() -> None:
    h = Harness()
    peer, lst, _ = h.syn_received()
    h.send(peer, F.ACK | F.PSH, payload=b"hello")
    sock = lst.accept()
    assert sock.recv(100) == b"hello"


# -- ESTABLISHED: receiving ---------------------------------------------------------------------


def test_established_receives_one_segment_delays_the_ack() -> None:
    h = Harness()
    peer, sock = h.established()
    quiet(sock)
    h.send(peer, F.ACK | F.PSH, payload=b"a" * 100)
    h.recv_nothing()
    assert sock.readable and sock.recv(1000) == b"a" * 100
    h.advance(0.039)
    h.recv_nothing()
    h.advance(0.002)
    ack = h.recv_one()
    assert ack.flags == F.ACK and ack.h.ack == peer.seq


def test_established_receives_two_segments_acks_at_once() -> None:
    h = Harness()
    peer, sock = h.established()
    quiet(sock)
    h.send(peer, F.ACK, payload=b"a" * 1460)
    h.recv_nothing()
    h.send(peer, F.ACK, payload=b"b" * 1460)
    assert h.recv_one().h.ack == peer.seq


def test_established_receives_out_of_order_sends_immediate_dup_ack_with_sack() -> None:
    h = Harness()
    peer, sock = h.established()
    start = peer.seq
    h.send(peer, F.ACK, seq=start + 100, payload=b"b" * 100)
    dup = h.recv_one()
    assert dup.h.ack == start
    assert dup.h.options.sack_blocks == ()  # SACK was not negotiated
    assert not sock.readable
    h.send(peer, F.ACK, seq=start, payload=b"a" * 100)
    ack = h.recv_one()  # gap filled: immediate ACK
    assert ack.h.ack == start + 200
    assert sock.recv(1000) == b"a" * 100 + b"b" * 100


def test_established_with_sack_reports_out_of_order_blocks() -> None:
    h = Harness()
    peer, _sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True))
    s = peer.seq
    h.send(peer, F.ACK, seq=s + 1000, payload=b"x" * 500)
    h.send(peer, F.ACK, seq=s + 3000, payload=b"y" * 500)
    segs = h.recv()
    assert segs[-1].h.options.sack_blocks[0] == (s + 3000, s + 3500)
    assert (s + 1000, s + 1500) in segs[-1].h.options.sack_blocks
    assert all(x.h.ack == s for x in segs)


def test_established_receives_rst_in_sequence_resets_the_connection() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.RST | F.ACK)
    assert sock.readable
    with pytest.raises(ConnectionResetError):
        sock.recv(10)
    assert sock.recv(10) == b""
    with pytest.raises(BrokenPipeError):
        sock.send(b"x", h.now)


def test_established_receives_rst_in_window_sends_challenge_ack() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.RST | F.ACK, seq=peer.seq + 10)
    ack = h.recv_one()
    assert ack.flags == F.ACK and ack.h.ack == peer.seq
    assert sock.state.name == "ESTABLISHED"
    assert h.layer.counters["tcp_challenge_ack"] == 1


def test_established_receives_rst_out_of_window_is_dropped_silently() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.RST | F.ACK, seq=peer.seq + 10_000_000)
    h.recv_nothing()
    assert sock.state.name == "ESTABLISHED"


def test_established_receives_syn_sends_challenge_ack() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.SYN, seq=peer.seq, advance=False)
    assert h.recv_one().flags == F.ACK
    h.send(peer, F.SYN, seq=peer.seq + 77777777, advance=False)
    assert h.recv_one().flags == F.ACK
    assert sock.state.name == "ESTABLISHED"
    assert h.layer.counters["tcp_challenge_ack"] >= 1


def test_established_challenge_acks_are_rate_limited() -> None:
    h = Harness()
    peer, _sock = h.established()
    for _ in range(1100):
        h.send(peer, F.SYN, seq=peer.seq, advance=False)
    assert len(h.recv()) == 1000
    assert h.layer.counters["tcp_challenge_ack_limited"] == 100


def test_established_receives_ack_of_unsent_data_answers_ack_and_drops() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.ACK, ack=peer.ack + 100, payload=b"zz")
    ack = h.recv_one()
    assert ack.h.ack == peer.seq - 2  # the data was dropped with the segment
    assert not sock.readable


def test_established_receives_ancient_ack_sends_challenge_ack() -> None:
    h = Harness()
    peer, _sock = h.established()
    h.send(peer, F.ACK, ack=peer.ack - 200_000, payload=b"zz")
    assert h.recv_one().flags == F.ACK
    assert h.layer.counters["tcp_ack_too_old"] == 1


def test_established_receives_segment_beyond_window_answers_ack() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.ACK, seq=peer.seq + 10_000_000, payload=b"x")
    assert h.recv_one().h.ack == peer.seq
    assert not sock.readable


def test_established_receives_fin_becomes_close_wait_and_reads_eof() -> None:
    h = Harness()
    peer, sock = h.established()
    quiet(sock)
    h.send(peer, F.ACK, payload=b"last")
    h.send(peer, F.FIN | F.ACK)
    assert h.recv_one().h.ack == peer.seq
    assert sock.state.name == "CLOSE_WAIT"
    assert sock.recv(100) == b"last"
    assert sock.recv(100) == b""


def test_established_receives_old_timestamp_drops_it_paws() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, timestamps=(1000, 1)))
    peer.ts = (1000, 0)
    h.send(peer, F.ACK, payload=b"new")
    h.send(peer, F.ACK, payload=b"old", options=TcpOptions(timestamps=(500, 0)), advance=False)
    assert h.layer.counters["tcp_paws_drop"] == 1
    assert sock.recv(100) == b"new"


# -- ESTABLISHED: sending -------------------------------------------------------------------------


def test_established_send_cuts_mss_segments() -> None:
    h = Harness()
    peer, sock = h.established()
    data = bytes(range(256)) * 20  # 5120 bytes, 4 segments of <= 1460
    assert sock.send(data, h.now) == len(data)
    segs = h.recv()
    assert [len(s.payload) for s in segs] == [1460, 1460, 1460, 740]
    assert b"".join(s.payload for s in segs) == data
    assert segs[0].h.seq == peer.ack and segs[-1].flags & F.PSH


def test_established_nagle_holds_a_second_small_segment_until_the_ack() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.send(b"a", h.now)
    assert h.recv_one().payload == b"a"
    sock.send(b"b", h.now)
    h.recv_nothing()
    peer.ack += 1
    h.send(peer, F.ACK)
    assert h.recv_one().payload == b"b"


def test_established_tcp_nodelay_sends_small_segments_at_once() -> None:
    h = Harness()
    _peer, sock = h.established()
    sock.setsockopt("TCP_NODELAY", 1)
    sock.send(b"a", h.now)
    sock.send(b"b", h.now)
    assert [s.payload for s in h.recv()] == [b"a", b"b"]


def test_established_retransmits_on_timeout_with_doubling_backoff() -> None:
    h = Harness()
    _peer, sock = h.established()
    sock.send(b"x" * 100, h.now)
    first = h.recv_one()
    times = [h.now]
    for _ in range(4):
        d = h.layer.next_deadline()
        assert d is not None
        h.advance(d - h.now)
        seg = h.recv_one()
        assert seg.h.seq == first.h.seq and seg.payload == first.payload
        times.append(h.now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(1.0)  # RFC 6298 initial RTO
    assert all(g2 == pytest.approx(2 * g1) for g1, g2 in itertools.pairwise(gaps))


def test_established_gives_up_after_max_retransmissions() -> None:
    h = Harness()
    _peer, sock = h.established()
    sock.send(b"x", h.now)
    h.advance(4000.0)
    segs = h.recv()
    assert segs[-1].flags & F.RST
    assert sock.take_error() == errno.ETIMEDOUT


def test_established_three_dup_acks_fast_retransmit() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.send(b"d" * 1460 * 8, h.now)
    segs = h.recv()
    assert len(segs) == 8
    una = peer.ack
    for _ in range(3):
        h.send(peer, F.ACK, ack=una)
    rtx = h.recv()
    assert rtx and rtx[0].h.seq == una and len(rtx[0].payload) == 1460
    assert h.layer.counters["tcp_fast_recovery"] == 1


def test_established_sack_retransmits_only_the_holes() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True))
    sock.send(b"d" * 1460 * 8, h.now)
    segs = h.recv()
    una = peer.ack
    seqs = [s.h.seq for s in segs]
    # segment 0 and 2 lost; the peer SACKs 1 and 3..7
    for right in (4, 5, 6):
        h.send(peer, F.ACK, ack=una, options=TcpOptions(
            sack_blocks=((seqs[3], seqs[3] + 1460 * (right - 2)), (seqs[1], seqs[2]))))
    rtx = [s.h.seq for s in h.recv()]
    assert rtx[:2] == [seqs[0], seqs[2]]
    assert seqs[1] not in rtx


def test_established_zero_window_probes_then_resumes() -> None:
    h = Harness()
    peer, sock = h.established()
    peer.ack += 0
    h.send(peer, F.ACK, window=0)
    sock.send(b"q" * 100, h.now)
    h.recv_nothing()
    h.advance(1.01)
    probe = h.recv_one()
    assert probe.payload == b"" and probe.h.seq == (peer.ack - 1) & 0xFFFFFFFF
    assert h.layer.counters["tcp_zero_window_probe"] == 1
    h.advance(2.01)
    assert len(h.recv()) == 1  # persist timer backs off
    h.send(peer, F.ACK, window=1000)
    data = h.recv_one()
    assert data.payload == b"q" * 100


def test_established_never_shrinks_its_advertised_window() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.setsockopt("SO_RCVBUF", 4096)  # fixed at connect time: no effect now
    wins = []
    for _ in range(40):
        h.send(peer, F.ACK, payload=b"w" * 1460)
        for s in h.recv():
            edge = s.h.ack + (s.h.window << 7)
            wins.append(edge)
    assert wins == sorted(wins)


def test_established_app_read_sends_window_update() -> None:
    h = Harness()
    peer = Peer()
    lst = h.layer.open_socket()
    lst.setsockopt("SO_RCVBUF", 16384)
    lst.bind(("0.0.0.0", LPORT))
    lst.listen(4)
    h.send(peer, F.SYN, ack=0, options=TcpOptions(mss=1460))
    peer.ack = h.recv_one().h.seq + 1
    h.send(peer, F.ACK)
    sock = lst.accept()
    for _ in range(10):
        h.send(peer, F.ACK, payload=b"r" * 1460)
    acks = h.recv()
    last_window = acks[-1].h.window
    assert last_window < 2 * 1460
    assert len(sock.recv(1 << 20)) == 10 * 1460
    update = h.recv_one()
    assert update.h.window >= 8192 and update.h.ack == peer.seq


def test_established_close_with_unread_data_sends_rst() -> None:
    h = Harness()
    peer, sock = h.established()
    h.send(peer, F.ACK, payload=b"unread")
    sock.close(h.now)
    assert h.recv()[-1].flags & F.RST
    assert not h.layer.conns


def test_established_keepalive_probes_then_gives_up() -> None:
    h = Harness()
    _peer, sock = h.established()
    sock.setsockopt("TCP_KEEPIDLE", 10)
    sock.setsockopt("TCP_KEEPINTVL", 2)
    sock.setsockopt("TCP_KEEPCNT", 3)
    sock.setsockopt("SO_KEEPALIVE", 1)
    h.advance(9.9)
    h.recv_nothing()
    h.advance(0.2)
    assert len(h.recv()) == 1
    h.advance(10)
    segs = h.recv()
    assert segs[-1].flags & F.RST
    assert sock.take_error() == errno.ETIMEDOUT


def test_established_keepalive_answered_keeps_the_connection() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.setsockopt("TCP_KEEPIDLE", 10)
    sock.setsockopt("SO_KEEPALIVE", 1)
    for _ in range(5):
        h.advance(10.1)
        assert len(h.recv()) == 1
        h.send(peer, F.ACK)
    assert sock.state.name == "ESTABLISHED"


# -- closing states -----------------------------------------------------------------------------


def test_fin_wait_1_receives_ack_of_fin_becomes_fin_wait_2() -> None:
    h = Harness()
    _peer, sock = h.fin_wait_2()
    assert sock.state.name == "FIN_WAIT_2"


def test_fin_wait_1_receives_fin_becomes_closing() -> None:
    h = Harness()
    _peer, sock = h.closing()
    assert sock.state.name == "CLOSING"


def test_fin_wait_1_receives_fin_ack_becomes_time_wait() -> None:
    h = Harness()
    peer, sock = h.fin_wait_1()
    peer.ack += 1
    h.send(peer, F.FIN | F.ACK)
    assert sock.state.name == "TIME_WAIT"
    assert h.recv_one().h.ack == peer.seq


def test_fin_wait_1_retransmits_fin() -> None:
    h = Harness()
    _peer, _sock = h.fin_wait_1()
    h.advance(1.01)
    assert h.recv_one().flags & F.FIN


def test_fin_wait_1_sends_data_before_fin_lingering_close() -> None:
    h = Harness()
    _peer, sock = h.established()
    sock.send(b"z" * 5000, h.now)
    sock.close(h.now)
    segs = h.recv()
    assert b"".join(s.payload for s in segs) == b"z" * 5000
    assert segs[-1].flags & F.FIN and not any(s.flags & F.FIN for s in segs[:-1])
    assert sock.closed


def test_fin_wait_2_receives_data_delivers_it_half_close() -> None:
    h = Harness()
    peer, sock = h.fin_wait_2()
    h.send(peer, F.ACK, payload=b"still talking")
    assert sock.recv(100) == b"still talking"
    with pytest.raises(BrokenPipeError):
        sock.send(b"x", h.now)


def test_fin_wait_2_receives_fin_becomes_time_wait() -> None:
    h = Harness()
    _peer, sock = h.time_wait()
    assert sock.state.name == "TIME_WAIT"


def test_fin_wait_2_orphaned_times_out() -> None:
    h = Harness()
    _peer, sock = h.fin_wait_2()
    sock.close(h.now)
    h.advance(h.layer.fin_timeout + 1)
    assert not h.layer.conns


def test_close_wait_can_still_send() -> None:
    h = Harness()
    _peer, sock = h.close_wait()
    assert sock.send(b"reply", h.now) == 5
    assert h.recv_one().payload == b"reply"


def test_last_ack_receives_ack_closes() -> None:
    h = Harness()
    peer, sock = h.last_ack()
    peer.ack += 1
    h.send(peer, F.ACK)
    assert sock.state.name == "CLOSED"
    sock.close(h.now)
    assert not h.layer.conns and not h.layer.port_refs


def test_closing_receives_ack_becomes_time_wait() -> None:
    h = Harness()
    peer, sock = h.closing()
    peer.ack += 1
    h.send(peer, F.ACK)
    assert sock.state.name == "TIME_WAIT"


def test_simultaneous_close_both_fins_cross() -> None:
    h = Harness()
    peer, sock = h.fin_wait_1()
    h.send(peer, F.FIN | F.ACK)  # the peer's FIN, not yet acking ours
    assert sock.state.name == "CLOSING"
    peer.ack += 1
    h.send(peer, F.ACK)
    assert sock.state.name == "TIME_WAIT"


# -- TIME_WAIT ------------------------------------------------------------------------------------


def test_time_wait_lasts_two_msl() -> None:
    h = Harness()
    _peer, sock = h.time_wait()
    h.advance(2 * h.layer.msl - 0.1)
    assert sock.state.name == "TIME_WAIT"
    h.advance(0.2)
    assert sock.state.name == "CLOSED"
    sock.close(h.now)
    assert not h.layer.conns and not h.layer.tw_ports and not h.layer.port_refs


def test_time_wait_reacks_a_retransmitted_fin_and_restarts_the_timer() -> None:
    h = Harness()
    peer, sock = h.time_wait()
    h.advance(50)
    h.send(peer, F.FIN | F.ACK, seq=peer.seq - 1)
    assert h.recv_one().h.ack == peer.seq
    h.advance(50)
    assert sock.state.name == "TIME_WAIT"
    h.advance(11)
    assert sock.state.name == "CLOSED"


def test_time_wait_accepts_a_new_syn_with_higher_sequence_number() -> None:
    h = Harness()
    lst = h.listen()
    peer = Peer()
    h.send(peer, F.SYN, ack=0, options=TcpOptions(mss=1460))
    peer.ack = h.recv_one().h.seq + 1
    h.send(peer, F.ACK)
    sock = lst.accept()
    sock.close(h.now)  # we close first: TIME_WAIT is on our side
    assert h.recv_one().flags & F.FIN
    peer.ack += 1
    h.send(peer, F.FIN | F.ACK)
    h.recv()
    assert sock.state.name == "TIME_WAIT"
    h.send(peer, F.SYN, seq=peer.seq + 100_000, ack=0, options=TcpOptions(mss=1460))
    synack = h.recv_one()
    assert synack.flags == F.SYN | F.ACK and synack.h.ack == peer.seq + 100_001
    assert h.layer.counters["tcp_time_wait_recycled"] == 1


def test_time_wait_rejects_an_old_syn() -> None:
    h = Harness()
    h.listen()
    _peer, _sock = h.time_wait()
    # time_wait() used an active connection on an ephemeral port: a SYN to it gets an ACK
    conn = next(iter(h.layer.conns.values()))
    h.send(Peer(port=RPORT, our_port=conn.local_port), F.SYN, seq=PEER_ISS, ack=0)
    assert h.recv_one().flags == F.ACK


# -- ports and the socket API -----------------------------------------------------------------


def test_bind_to_a_listening_port_is_refused() -> None:
    h = Harness()
    h.listen()
    other = h.layer.open_socket()
    with pytest.raises(OSError) as exc:
        other.bind(("0.0.0.0", LPORT))
    assert exc.value.errno == errno.EADDRINUSE


def test_bind_to_a_time_wait_port_needs_reuseaddr() -> None:
    h = Harness()
    lst = h.listen()
    peer = Peer()
    h.send(peer, F.SYN, ack=0)
    peer.ack = h.recv_one().h.seq + 1
    h.send(peer, F.ACK)
    sock = lst.accept()
    lst.close(h.now)
    sock.close(h.now)
    peer.ack += 1
    h.send(peer, F.FIN | F.ACK)
    h.recv()
    assert h.layer.tw_ports[LPORT] == 1
    again = h.layer.open_socket()
    with pytest.raises(OSError):
        again.bind(("0.0.0.0", LPORT))
    again.setsockopt("SO_REUSEADDR", 1)
    again.bind(("0.0.0.0", LPORT))
    again.listen(4)


def test_ephemeral_ports_are_distinct_and_released() -> None:
    h = Harness()
    socks = []
    for _ in range(50):
        s = h.layer.open_socket()
        with pytest.raises(BlockingIOError):
            s.connect(("10.0.0.2", 9), h.now)
        socks.append(s)
    ports = {s.getsockname()[1] for s in socks}
    assert len(ports) == 50 and all(32768 <= p <= 60999 for p in ports)
    for s in socks:
        s.close(h.now)
    assert not h.layer.port_refs and not h.layer.conns


def test_socket_errors_match_linux() -> None:
    h = Harness()
    s = h.layer.open_socket()
    with pytest.raises(OSError) as exc:
        s.send(b"x", h.now)
    assert exc.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as exc:
        s.getpeername()
    assert exc.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as exc:
        s.accept()
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        s.bind(("10.9.9.9", 1))
    assert exc.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as exc:
        s.setsockopt("SO_BOGUS", 1)
    assert exc.value.errno == errno.ENOPROTOOPT
    _peer, c, _ = h.syn_sent()
    with pytest.raises(BlockingIOError) as exc2:
        c.connect(("10.0.0.2", RPORT), h.now)
    assert exc2.value.errno == errno.EALREADY
    s.close(h.now)
    with pytest.raises(OSError) as exc:
        s.recv(1)
    assert exc.value.errno == errno.EBADF


def test_window_scale_is_negotiated_both_ways() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, window_scale=3))
    quiet(sock)
    conn = sock.connection
    assert conn is not None
    assert conn.snd_wscale == 3 and conn.rcv_wscale == 7
    h.send(peer, F.ACK, window=1000)
    assert conn.snd_wnd == 8000
    h.send(peer, F.ACK, payload=b"x" * 1460)
    h.send(peer, F.ACK, payload=b"x" * 1460)
    ack = h.recv_one()
    assert (ack.h.window << 7) >= 4 * 1024 * 1024 - 3 * 1460


def test_window_scale_absent_from_syn_ack_disables_it() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460))
    quiet(sock)
    conn = sock.connection
    assert conn is not None and conn.snd_wscale == 0 and conn.rcv_wscale == 0
    h.send(peer, F.ACK, payload=b"x" * 1460)
    h.send(peer, F.ACK, payload=b"x" * 1460)
    assert h.recv_one().h.window == 65535


def test_mss_option_limits_segment_size() -> None:
    h = Harness()
    _peer, sock = h.established(options=TcpOptions(mss=536))
    sock.send(b"m" * 2000, h.now)
    assert [len(s.payload) for s in h.recv()] == [536, 536, 536, 392]


def test_timestamps_are_echoed_when_negotiated() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, timestamps=(5000, 1)))
    peer.ts = (5001, 0)
    h.advance(0.5)
    sock.send(b"t", h.now)
    seg = h.recv_one()
    assert seg.h.options.timestamps is not None and seg.h.options.timestamps[1] == 5000


def test_time_wait_of_a_closed_socket_becomes_a_compact_record() -> None:
    from vipernet.stack.tcp.timewait import TimeWait

    h = Harness()
    peer, sock = h.fin_wait_2()
    sock.close(h.now)
    h.send(peer, F.FIN | F.ACK)
    assert h.recv_one().h.ack == peer.seq
    (entry,) = h.layer.conns.values()
    assert isinstance(entry, TimeWait)
    h.advance(30)
    h.send(peer, F.FIN | F.ACK, seq=peer.seq - 1)  # our ACK was lost: the FIN comes again
    assert h.recv_one().h.ack == peer.seq
    h.send(peer, F.ACK, advance=False)  # a pure ACK gets no answer
    h.recv_nothing()
    h.advance(59)
    assert h.layer.conns
    h.advance(2)
    assert not h.layer.conns and not h.layer.tw_ports and not h.layer.port_refs


def test_time_wait_record_is_ended_by_an_exact_rst() -> None:
    h = Harness()
    peer, sock = h.fin_wait_2()
    sock.close(h.now)
    h.send(peer, F.FIN | F.ACK)
    h.recv()
    h.send(peer, F.RST, seq=peer.seq + 5, advance=False)
    assert h.layer.conns
    h.send(peer, F.RST, advance=False)
    assert not h.layer.conns and not h.layer.tw_ports


def test_syn_sent_receives_icmp_port_unreachable_fails_with_econnrefused() -> None:
    h = Harness()
    _peer, sock, syn = h.syn_sent()
    h.layer.icmp_unreachable(int(h.stack.config.ip.ip) + 1, syn.h.src_port, RPORT, 3, h.now)
    assert sock.take_error() == errno.ECONNREFUSED


def test_established_ignores_icmp_unreachable_soft_error() -> None:
    h = Harness()
    _peer, sock = h.established()
    h.layer.icmp_unreachable(int(h.stack.config.ip.ip) + 1, sock.getsockname()[1], RPORT, 1,
                             h.now)
    assert sock.state.name == "ESTABLISHED" and sock.take_error() is None


def test_established_sender_avoids_silly_window_runts() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.send(b"s" * 3000, h.now)
    segs = h.recv()
    assert [len(s.payload) for s in segs] == [1460, 1460, 80]
    peer.ack += 1460  # acks one segment; the window leaves 100 bytes beyond what is out
    h.send(peer, F.ACK, window=1460 + 80 + 100)
    h.recv_nothing()
    sock.send(b"t" * 3000, h.now)
    h.recv_nothing()  # 100 bytes usable with data in flight: no runt
    peer.ack += 1540
    h.send(peer, F.ACK, window=3000)
    assert [len(s.payload) for s in h.recv()] == [1460, 1460, 80]


def test_last_ack_retransmits_fin_until_acked() -> None:
    h = Harness()
    peer, sock = h.last_ack()
    h.advance(1.01)
    assert h.recv_one().flags & F.FIN
    peer.ack += 1
    h.send(peer, F.ACK)
    assert sock.state.name == "CLOSED"


def test_accept_returns_a_connection_reset_after_the_handshake() -> None:
    h = Harness()
    peer, lst, _ = h.syn_received()
    h.send(peer, F.ACK)
    h.send(peer, F.RST | F.ACK)
    sock = lst.accept()
    with pytest.raises(ConnectionResetError):
        sock.recv(10)


def test_shutdown_read_discards_incoming_data() -> None:
    h = Harness()
    peer, sock = h.established()
    sock.shutdown(0, h.now)
    h.send(peer, F.ACK, payload=b"ignored")
    assert sock.recv(100) == b""
    assert sock.readable


def test_listen_syn_queue_is_bounded() -> None:
    h = Harness()
    h.listen(backlog=4)
    for port in range(2000, 2200):
        h.send(Peer(port=port), F.SYN, ack=0)
    assert len(h.recv()) == 128  # max(128, backlog) half-open connections
    assert h.layer.counters["tcp_listen_overflow"] == 72


def test_established_with_tso_sends_one_large_segment_for_the_device_to_cut() -> None:
    from vipernet.link.frame import GsoType
    from vipernet.wire.checksum import pseudo_header_sum

    h = Harness(tso=True)
    peer, sock = h.established(options=TcpOptions(mss=1460, window_scale=7))
    sock.send(b"g" * 14600, h.now)  # the initial window: ten segments
    (dst, data, off), = h.stack.sent
    seg = h.recv_one()
    assert len(seg.payload) == 14600 and seg.h.seq == peer.ack
    assert off is not None and off.needs_csum and off.gso_type == GsoType.TCPV4
    assert off.gso_size == 1460 and off.csum_start == 0 and off.csum_offset == 16
    assert off.hdr_len == 20
    folded = pseudo_header_sum(h.stack.config.ip.ip, dst, 6, len(data))
    assert int.from_bytes(data[16:18], "big") in (folded, folded % 0xFFFF or 0xFFFF)


def test_established_acks_every_segment_in_quick_ack_mode_then_every_second() -> None:
    h = Harness()
    peer, _sock = h.established()
    acks = 0
    for _ in range(24):
        h.send(peer, F.ACK, payload=b"q" * 1460)
        acks += len(h.recv())
    assert acks == 16 + 4  # sixteen quick ACKs, then one per two segments


def test_established_out_of_order_data_restarts_quick_ack_mode() -> None:
    h = Harness()
    peer, sock = h.established()
    quiet(sock)
    h.send(peer, F.ACK, seq=peer.seq + 1460, payload=b"b" * 1460, advance=False)
    assert len(h.recv()) == 1  # dup ACK at once
    h.send(peer, F.ACK, payload=b"a" * 1460)
    h.recv()
    peer.seq += 1460
    h.send(peer, F.ACK, payload=b"c" * 1460)
    assert len(h.recv()) == 1  # quick-ACK mode again: no delay for this one


def test_connect_without_a_route_fails_at_once_with_enetunreach() -> None:
    h = Harness()

    def refuse(*_args: object, **_kw: object) -> None:
        raise OSError(errno.ENETUNREACH, "no route")

    h.stack.send_ip = refuse  # type: ignore[method-assign]
    sock = h.layer.open_socket()
    with pytest.raises(OSError) as exc:
        sock.connect(("192.0.2.1", 80), h.now)
    assert exc.value.errno == errno.ENETUNREACH
    sock.close(h.now)
    assert not h.layer.conns and not h.layer.port_refs


def test_established_reports_a_duplicate_segment_with_a_dsack_block() -> None:
    h = Harness()
    peer, _sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True))
    start = peer.seq
    h.send(peer, F.ACK, payload=b"d" * 500)
    h.recv()
    h.send(peer, F.ACK, seq=start, payload=b"d" * 500, advance=False)  # a spurious resend
    ack = h.recv_one()
    assert ack.h.ack == start + 500
    assert ack.h.options.sack_blocks == ((start, start + 500),)  # RFC 2883: below the ACK
    h.send(peer, F.ACK, payload=b"e" * 10)
    h.advance(0.05)
    assert all(not s.h.options.sack_blocks for s in h.recv())  # reported once


# -- RACK (RFC 8985): the reordering window ---------------------------------------------------


def _sack_connection_with_rtt(h: Harness) -> tuple[Peer, object]:
    """An established SACK connection that has one 4 ms RTT sample, so its reordering
    window is max(min_rtt / 4, 1 ms) = 1 ms."""
    peer, sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True))
    sock.send(b"r" * 1460, h.now)
    assert len(h.recv()) == 1
    h.advance(0.004)
    peer.ack += 1460
    h.send(peer, F.ACK)
    h.recv()
    return peer, sock


def test_established_rack_marks_lost_after_reordering_window() -> None:
    h = Harness()
    peer, sock = _sack_connection_with_rtt(h)
    sock.send(b"d" * 1460 * 8, h.now)  # type: ignore[attr-defined]
    seqs = [s.h.seq for s in h.recv()]
    una = peer.ack
    # segment 0 missing, two duplicate ACKs SACK 1..2 (with DupThresh = 3 segments SACKed
    # and no reordering seen yet, RFC 8985 6.2.4 makes the window zero: loss at once)
    for right in (2, 3):
        h.send(peer, F.ACK, ack=una, options=TcpOptions(
            sack_blocks=((seqs[1], seqs[1] + 1460 * (right - 1)),)))
    assert not [s for s in h.recv() if s.payload]  # may be reordered: wait
    assert h.layer.counters["tcp_fast_recovery"] == 0
    h.advance(0.002)
    rtx = [s for s in h.recv() if s.payload]
    assert rtx and rtx[0].h.seq == una
    assert h.layer.counters["tcp_fast_recovery"] == 1


def test_established_rack_reordered_segment_arriving_in_window_is_not_resent() -> None:
    h = Harness()
    peer, sock = _sack_connection_with_rtt(h)
    sock.send(b"d" * 1460 * 8, h.now)  # type: ignore[attr-defined]
    seqs = [s.h.seq for s in h.recv()]
    una = peer.ack
    for right in (2, 3):  # below DupThresh: the reordering window applies
        h.send(peer, F.ACK, ack=una, options=TcpOptions(
            sack_blocks=((seqs[1], seqs[1] + 1460 * (right - 1)),)))
    h.advance(0.0005)
    peer.ack += 1460 * 8  # the late segment 0 arrives: everything is acknowledged
    h.send(peer, F.ACK)
    h.advance(0.01)
    assert not [s for s in h.recv() if s.payload]
    assert h.layer.counters["tcp_fast_recovery"] == 0
    conn = next(iter(h.layer.conns.values()))
    assert conn.cc.ssthresh == 1 << 30  # no window cut for a reordering


def test_established_rack_one_sack_marks_loss_without_three_dup_acks() -> None:
    h = Harness()
    peer, sock = _sack_connection_with_rtt(h)
    sock.send(b"d" * 1460 * 8, h.now)  # type: ignore[attr-defined]
    seqs = [s.h.seq for s in h.recv()]
    una = peer.ack
    # the other ACKs were lost: one duplicate ACK SACKs the last segment only
    h.send(peer, F.ACK, ack=una, options=TcpOptions(sack_blocks=((seqs[7], seqs[7] + 1460),)))
    assert not [s for s in h.recv() if s.payload]
    h.advance(0.002)
    rtx = [s.h.seq for s in h.recv() if s.payload]
    assert rtx[:1] == [una]
    assert h.layer.counters["tcp_fast_recovery"] == 1
    assert h.layer.counters["tcp_rto"] == 0


def test_established_lost_retransmission_is_resent_without_waiting_for_the_rto() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True))
    sock.send(b"d" * 1460 * 8, h.now)
    seqs = [s.h.seq for s in h.recv()]
    una = peer.ack
    for right in (4, 5, 6):  # segments 0 and 2 lost
        h.send(peer, F.ACK, ack=una, options=TcpOptions(
            sack_blocks=((seqs[3], seqs[3] + 1460 * (right - 2)), (seqs[1], seqs[2]))))
    assert [s.h.seq for s in h.recv() if s.payload][:2] == [seqs[0], seqs[2]]
    sock.send(b"e" * 1460 * 2, h.now)  # new data goes out beyond the retransmissions
    new = [s.h.seq for s in h.recv() if s.payload]
    assert new and new[0] == seqs[7] + 1460
    # segment 2's retransmission and the new data arrive, segment 0's retransmission not
    h.send(peer, F.ACK, ack=una, options=TcpOptions(
        sack_blocks=((seqs[1], new[-1] + 1460),)))
    rtx = [s.h.seq for s in h.recv() if s.payload]
    assert rtx[0] == una
    assert h.layer.counters["tcp_lost_retransmit"] == 1
    assert h.layer.counters["tcp_rto"] == 0
