"""Regressions for the netd stall (issue 16): three faults that together stopped a
connection for good against the Linux kernel.

Seen on a loaded machine: netd's tail-loss probe sent one MSS past the kernel's window;
the kernel dropped it (``TcpExtBeyondWindow``) and, its echo application blocked, closed
its window to zero.  From then on every pure ACK netd sent was numbered SND.MAX, one MSS
past the kernel's zero window, so the kernel dropped each window update as out of window;
the kernel believed netd's window closed, netd believed the kernel's closed, and both sat
in exponential backoff (``backoff:9`` on both ends, two minutes between probes).  Window
updates stamped with a TSval a few milliseconds older than one already sent were dropped
by PAWS as well (``TcpExtPAWSEstab``), which is how the kernel's view of netd's window
went stale in the first place.
"""

from __future__ import annotations

import contextlib

from tests.tcp.harness import REMOTE, RPORT, F, Harness, Out, Peer
from vipernet.stack.tcp.socket import TcpSocket
from vipernet.wire.tcp import TcpOptions

MSS = 1460


def _measured(h: Harness, peer: Peer, sock: TcpSocket) -> None:
    """One round trip of 10 ms, so the connection has an SRTT (and arms tail-loss probes)."""
    sock.send(b"w" * 100, h.now)
    h.recv_one()
    h.now += 0.010
    peer.ack += 100
    h.send(peer, F.ACK, window=2 * MSS)


def _at_or_below(seq: int, edge: int) -> bool:
    return (edge - seq) & 0xFFFFFFFF < 1 << 31


def _ts(seg: Out) -> int:
    stamps = seg.h.options.timestamps
    assert stamps is not None
    return stamps[0]


def test_tail_loss_probe_sends_nothing_past_the_peers_window() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=MSS))
    _measured(h, peer, sock)
    sock.send(b"a" * 20 * MSS, h.now)
    flight = h.recv()
    right_edge = peer.ack + 2 * MSS
    assert sum(len(s.payload) for s in flight) == 2 * MSS
    d = h.layer.next_deadline()
    assert d is not None
    h.advance(d - h.now)  # the probe timer (or the RTO) fires, the window still full
    assert h.layer.counters["tcp_tail_loss_probe"] == 1
    probes = h.recv()
    assert probes, "the probe resends the last segment of the flight"
    for seg in probes:
        assert _at_or_below(seg.h.seq + len(seg.payload), right_edge), "data past the window"


def test_acks_stay_inside_a_window_that_closed_under_sent_data() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=MSS))
    h.send(peer, F.ACK, window=2 * MSS)
    sock.send(b"b" * 20 * MSS, h.now)
    assert len(h.recv()) == 2
    # The peer takes the first segment, drops the second (its memory ran out) and
    # closes its window: our SND.MAX now lies one MSS past its right edge.
    peer.ack += MSS
    h.send(peer, F.ACK, window=0)
    h.recv()
    h.send(peer, F.ACK, window=0, payload=b"from the peer")
    acks = [s for s in h.recv() if not s.payload and s.flags == F.ACK]
    h.advance(0.3)  # and any delayed ACK
    acks += [s for s in h.recv() if not s.payload and s.flags == F.ACK]
    assert any(a.h.ack == peer.seq for a in acks), "the peer's data is acknowledged"
    for ack in acks:  # zero-window probes are numbered one below
        assert _at_or_below(ack.h.seq, peer.ack), "a pure ACK past a zero window is dropped"
    assert sock.recv(100) == b"from the peer"


def test_window_update_after_a_read_is_numbered_inside_a_closed_window() -> None:
    h = Harness()
    sock = h.layer.open_socket()
    sock.setsockopt("SO_RCVBUF", 16384)  # small, so that reading it all must be announced
    with contextlib.suppress(BlockingIOError):
        sock.connect((str(REMOTE), RPORT), h.now)
    syn = h.recv_one()
    peer = Peer(port=RPORT, our_port=syn.h.src_port, ack=syn.h.seq + 1)
    h.send(peer, F.SYN | F.ACK, window=2 * MSS, options=TcpOptions(mss=MSS))
    h.recv_one()
    sock.send(b"c" * 20 * MSS, h.now)
    h.recv()
    peer.ack += MSS
    h.send(peer, F.ACK, window=0)
    for _ in range(10):  # fill our receive window
        h.send(peer, F.ACK, window=0, payload=b"d" * MSS)
    h.advance(0.3)
    h.recv()
    assert sock.recv(1 << 20)
    updates = [s for s in h.recv() if not s.payload and s.flags == F.ACK]
    assert updates, "the read opens our window and says so"
    for ack in updates:
        assert _at_or_below(ack.h.seq, peer.ack)


def test_timestamps_never_go_backwards_when_now_does() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=MSS, timestamps=(7000, 1)))
    peer.ts = (7001, 0)
    h.advance(5.0)
    sock.send(b"x", h.now + 0.030)  # an IPC request handled 30 ms into the iteration
    sent = h.recv_one()
    # Frames of the same iteration are handled with the time it began: the ACK must not
    # carry a TSval older than the one just sent (the peer's PAWS would drop it).
    h.send(peer, F.ACK, payload=b"y" * 10)
    h.advance(0.3)
    later = [s for s in h.recv() if s.h.options.timestamps is not None]
    assert later
    assert all(_ts(s) >= _ts(sent) for s in later)


def test_a_window_closed_under_our_data_is_probed_for_as_long_as_the_peer_answers() -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=MSS))
    h.send(peer, F.ACK, window=2 * MSS)
    sock.send(b"e" * 20 * MSS, h.now)
    h.recv()
    peer.ack += MSS
    h.send(peer, F.ACK, window=0)
    for _ in range(2 * h.layer.max_retries):  # each timeout's probe is answered
        d = h.layer.next_deadline()
        assert d is not None
        h.advance(d - h.now)
        assert h.recv(), "a probe on every timeout"
        h.send(peer, F.ACK, window=0)
    assert sock.state.name == "ESTABLISHED"
    assert h.layer.counters["tcp_retransmit_timeout_abort"] == 0
    h.advance(10 * 120.0)  # the peer falls silent: then the connection times out
    assert sock.state.name == "CLOSED"
    assert h.layer.counters["tcp_retransmit_timeout_abort"] == 1
