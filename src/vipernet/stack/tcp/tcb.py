"""The transmission control block: one connection's state, and its core transitions.

:class:`Tcb` holds every field of a connection (one ``__slots__`` list, so 10,000 of them stay
small) and what all parts share: the transition choke point :meth:`Tcb._set_state`, which
logs every change, option negotiation, the timer registration and error exits.  The behaviour
is layered on top: :mod:`sender` (output, retransmission, loss recovery), :mod:`receiver`
(segment arrival) and :mod:`connection` (opening, timers, the application's calls).

Sequence numbers are unwrapped offsets (see :mod:`seq`): on the send side the SYN is offset 0
relative to ``iss`` and data starts at 1; the same on the receive side relative to ``irs``.
Everything inside is then plain integer arithmetic; ``wrap``/``unwrap`` convert at the wire
boundary.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from vipernet.stack.tcp.congestion import CongestionControl, make_congestion
from vipernet.stack.tcp.params import DEFAULT_MSS, QUICKACKS, ConnectionParams, wscale_for
from vipernet.stack.tcp.prr import Prr
from vipernet.stack.tcp.rack import RackScoreboard
from vipernet.stack.tcp.recv_buffer import RecvBuffer
from vipernet.stack.tcp.rto import RtoEstimator
from vipernet.stack.tcp.segment import Segment
from vipernet.stack.tcp.send_buffer import SendBuffer
from vipernet.stack.tcp.seq import MASK
from vipernet.stack.tcp.state import (
    CLOSED,
    TIME_WAIT,
    TcpState,
)

if TYPE_CHECKING:
    from vipernet.stack.tcp.timewait import TimeWait

log = logging.getLogger("vipernet.tcp")


_EMPTY_RECV = RecvBuffer()  # shared by connections in TIME_WAIT (nothing is ever pushed)


class ConnectionHost(Protocol):
    """What a connection needs from its layer."""

    msl: float
    fin_timeout: float
    syn_retries: int
    max_retries: int

    def transmit(self, conn: Tcb | TimeWait, segment: bytearray, payload_len: int,
                 now: float) -> None: ...
    def arm(self, conn: Tcb | TimeWait, deadline: float) -> None: ...
    def notify(self, conn: Tcb) -> None: ...
    def state_changed(self, conn: Tcb | TimeWait, old: TcpState, new: TcpState,
                      now: float) -> None: ...
    def challenge_ack_allowed(self, now: float) -> bool: ...
    def count(self, name: str) -> None: ...
    def ack_soon(self, conn: Tcb) -> None: ...


class Tcb:
    __slots__ = (
        "cc",
        "delack_segs",
        "dsack",
        "dsack_round_end",
        "dupacks",
        "error",
        "fin_queued",
        "fin_received",
        "host",
        "in_recovery",
        "irs",
        "iss",
        "keep_probes",
        "last_ack_sent",
        "last_rx",
        "listener",
        "local_ip",
        "local_port",
        "max_snd_wnd",
        "orphan",
        "p",
        "passive",
        "persist_backoff",
        "port_ref",
        "prr",
        "quickacks",
        "rack",
        "rack_armed",
        "rb",
        "rcv_adv",
        "rcv_fin_at",
        "rcv_nxt",
        "rcv_wscale",
        "rd_shut",
        "recover",
        "remote_ip",
        "remote_port",
        "reo_calm",
        "reo_steps",
        "reordering",
        "rto",
        "rtt_seq",
        "rtt_time",
        "rtx_count",
        "rtx_next",
        "rtx_una_mark",
        "sacked",
        "sb",
        "scheduled",
        "smss",
        "snd_max",
        "snd_nxt",
        "snd_sml",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "socket",
        "state",
        "syn_options_seen",
        "t_delack",
        "t_keep",
        "t_persist",
        "t_rtx",
        "t_wait",
        "tlp_armed",
        "tlp_done",
        "ts_enabled",
        "ts_ms",
        "ts_offset",
        "ts_recent",
        "una_rtx_time",
        "undo_cwnd",
        "undo_ranges",
        "undo_retrans",
        "undo_seq",
        "undo_ssthresh",
        "undo_tsval",
        "want_sack",
        "want_ts",
        "want_ws",
    )

    def __init__(self, host: ConnectionHost, params: ConnectionParams, *, local_ip: int,
                 local_port: int, remote_ip: int, remote_port: int, iss: int,
                 ts_offset: int) -> None:
        self.host = host
        self.p = params
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.state = CLOSED
        self.socket: object | None = None  # the TcpSocket owning us (for notify)
        self.listener: object | None = None  # the Listener that spawned us, until accepted
        self.passive = False
        self.port_ref = False  # this connection holds a reference on its local port
        self.orphan = False  # the application closed its socket; we finish alone
        self.error: int | None = None
        # send side (unwrapped offsets from iss)
        self.iss = iss
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_sml = 0  # end of the last sub-MSS segment sent (Minshall's Nagle)
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.sb = SendBuffer(1)
        self.fin_queued = False
        # receive side (unwrapped offsets from irs)
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_wscale = 0
        self.rb = RecvBuffer()
        self.rcv_fin_at: int | None = None
        self.fin_received = False
        self.rd_shut = False
        self.last_ack_sent = 0
        self.delack_segs = 0
        self.quickacks = QUICKACKS  # segments to ACK at once (start of stream, after loss)
        # options
        self.want_ws = params.use_window_scale
        self.want_sack = params.use_sack
        self.want_ts = params.use_timestamps
        self.syn_options_seen = False
        self.ts_enabled = False
        self.ts_offset = ts_offset
        self.ts_ms = 0  # the newest clock reading a timestamp was made of (see _tsval)
        self.ts_recent = 0
        self.smss = min(params.mtu_mss, DEFAULT_MSS)
        # reliability
        self.rto = RtoEstimator()
        self.cc: CongestionControl = make_congestion(params.congestion, self.smss)
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.rtx_count = 0
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        self.rtx_next = 0
        self.rtx_una_mark: int | None = None  # SND.MAX when SND.UNA's segment was resent
        self.sacked: list[list[int]] = []
        # with SACK: per-segment transmit records and RACK's loss detection (RFC 8985),
        # and PRR's sending budget during fast recovery (RFC 6937)
        self.rack = RackScoreboard()
        self.prr = Prr()
        self.dsack: tuple[int, int] | None = None  # a duplicate range to report (RFC 2883)
        # reordering tolerance (duplicate-ACK threshold), raised by detected spurious
        # retransmissions, and what to restore when one is detected (Eifel, RFC 3522)
        self.reordering = 3
        self.undo_cwnd = 0
        self.undo_ssthresh = 0
        self.undo_seq = 0
        self.undo_tsval: int | None = None
        # D-SACK undo (RFC 3708's idea, as Linux): the ranges resent in this loss episode
        # and how many of them no D-SACK has yet proved spurious (-1: undo impossible)
        self.undo_ranges: list[tuple[int, int]] = []
        self.undo_retrans = -1
        self.dsack_round_end = 0  # one reordering-window step per round trip of D-SACKs
        self.persist_backoff = 0
        self.keep_probes = 0
        self.last_rx = 0.0
        # timers (absolute deadlines or None) and the one registered with the host
        self.t_rtx: float | None = None
        self.t_persist: float | None = None
        self.t_delack: float | None = None
        self.t_keep: float | None = None
        self.t_wait: float | None = None
        self.tlp_armed = False  # t_rtx currently holds a tail-loss probe, not the RTO
        self.tlp_done = False  # one probe per flight
        # t_rtx currently holds the reordering window (RFC 8985 6.2): a suspected loss
        # becomes fast recovery only if the hole is still there when it expires
        self.rack_armed = False
        self.reo_steps = 1  # reordering window in quarters of the minimum RTT
        self.una_rtx_time = 0.0  # when SND.UNA's segment was last resent
        self.reo_calm = 0  # recoveries since the last spurious one (to shrink it again)
        self.scheduled: float | None = None

    def __repr__(self) -> str:
        return (f"<Connection {self.local_port}->{self.remote_port} {self.state.name} "
                f"una={self.snd_una} nxt={self.snd_nxt} rcv={self.rcv_nxt}>")

    # -- the transition choke point -------------------------------------------------------

    def _set_state(self, new: TcpState, now: float) -> None:
        old = self.state
        if old == new:
            return
        self.state = new
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tcp %d->%d: %s -> %s", self.local_port, self.remote_port, old.name,
                      new.name)
        if new == CLOSED:
            self.t_rtx = self.t_persist = self.t_delack = self.t_keep = self.t_wait = None
        elif new == TIME_WAIT:
            self.t_rtx = self.t_persist = self.t_keep = None
            self.t_wait = now + 2 * self.host.msl
            self._shed_buffers()
        self.host.state_changed(self, old, new, now)
        self.host.notify(self)

    def _shed_buffers(self) -> None:
        """TIME_WAIT keeps only sequence state: drop the per-connection buffers so thousands
        of connections cycling through TIME_WAIT cost a few hundred bytes each."""
        if not self.rb.size and not self.rb.has_gaps:
            self.rb = _EMPTY_RECV
        if not len(self.sb):
            self.sb = SendBuffer(self.sb.end)
        self.sacked = []
        self.rack.segs = []

    def _negotiate(self, seg: Segment, now: float) -> None:
        """Options from the peer's SYN (our own SYN offered, or will offer, the ``want_*``)."""
        self.syn_options_seen = True
        peer_mss = seg.mss if seg.mss else DEFAULT_MSS
        if self.want_ws and seg.window_scale is not None:
            self.snd_wscale = seg.window_scale
            self.rcv_wscale = wscale_for(self.p.rcv_buf)
        else:
            self.want_ws = False
            self.snd_wscale = self.rcv_wscale = 0
        self.want_sack = self.want_sack and seg.sack_permitted
        if self.want_ts and seg.tsval is not None:
            self.ts_enabled = True
            self.ts_recent = seg.tsval
        else:
            self.want_ts = False
            self.ts_enabled = False
        mss = max(64, min(peer_mss, self.p.mtu_mss))
        if self.ts_enabled:
            mss -= 12
        self.smss = mss
        self.cc.set_mss(mss)

    # -- shared helpers ---------------------------------------------------------------------

    def _tsval(self, now: float) -> int:
        """TSval of a segment sent now: milliseconds, and never below one already sent.

        RFC 7323 5.4 wants the timestamp clock monotonic, and the peer enforces it: Linux
        drops (PAWS) a segment whose TSval is more than 1 below the newest it holds.  The
        ``now`` callers pass is not monotonic across a runtime iteration: frames are
        handled with the time the iteration began, IPC requests with a later reading, and
        a socket call between iterations with the time of the last event; a window update
        stamped a few milliseconds "in the past" was dropped by the kernel, and a peer
        that never learns our window opened waits in its persist backoff (issue 16)."""
        ms = int(now * 1000)
        if ms < self.ts_ms:
            ms = self.ts_ms
        else:
            self.ts_ms = ms
        return (ms + self.ts_offset) & MASK

    def _rearm(self) -> None:
        t: float | None = None
        for d in (self.t_rtx, self.t_persist, self.t_delack, self.t_keep, self.t_wait):
            if d is not None and (t is None or d < t):
                t = d
        if t is not None and (self.scheduled is None or t < self.scheduled):
            self.scheduled = t
            self.host.arm(self, t)

    def next_deadline(self) -> float | None:
        t: float | None = None
        for d in (self.t_rtx, self.t_persist, self.t_delack, self.t_keep, self.t_wait):
            if d is not None and (t is None or d < t):
                t = d
        return t

    def _challenge_ack(self, now: float) -> None:
        if self.host.challenge_ack_allowed(now):
            self.host.count("tcp_challenge_ack")
            self.send_ack(now)
        else:
            self.host.count("tcp_challenge_ack_limited")

    def _fail(self, err: int, now: float) -> None:
        self.error = err
        self.rb.clear()
        self._set_state(CLOSED, now)

    def _restart_keepalive(self, now: float) -> None:
        if self.p.keepalive:
            self.keep_probes = 0
            self.t_keep = now + self.p.keep_idle

    # -- implemented by the layers above ------------------------------------------------------

    def send_ack(self, now: float) -> None:
        raise NotImplementedError

    def on_timer(self, now: float) -> None:
        raise NotImplementedError
