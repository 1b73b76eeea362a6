"""One TCP connection: the RFC 9293 state machine with RFC 5961, 7323, 2018, 6298, 5681/6582.

The engine is sans-IO.  It is driven by three kinds of calls, each given ``now``:

* :meth:`Connection.on_segment` for a segment the layer demultiplexed to it,
* :meth:`Connection.on_timer` when the deadline it registered has passed,
* the application calls (``app_send``, ``app_recv``, ``app_shutdown``, ``app_close``...).

It answers through its :class:`ConnectionHost` (the layer): ``transmit`` a built segment,
``arm`` a deadline, ``notify`` the socket of a readiness change, ``state_changed``.

Sequence numbers are unwrapped offsets (see :mod:`seq`): on the send side the SYN is offset 0
relative to ``iss`` and data starts at 1; the same on the receive side relative to ``irs``.
Everything inside is then plain integer arithmetic; :func:`wrap`/:func:`unwrap` convert at
the wire boundary.

Every state change goes through :meth:`Connection._set_state`, which logs it.
"""

from __future__ import annotations

import errno
import functools
import logging
from typing import TYPE_CHECKING, Protocol

from vipernet.stack.tcp.congestion import NewReno
from vipernet.stack.tcp.recv_buffer import RecvBuffer
from vipernet.stack.tcp.rto import RtoEstimator
from vipernet.stack.tcp.segment import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Segment,
    build_segment,
    data_options,
    syn_options,
)
from vipernet.stack.tcp.send_buffer import SendBuffer
from vipernet.stack.tcp.seq import HALF, MASK, unwrap
from vipernet.stack.tcp.state import TcpState

if TYPE_CHECKING:
    from vipernet.stack.tcp.timewait import TimeWait

log = logging.getLogger("vipernet.tcp")

_S = TcpState
_CLOSED = _S.CLOSED
_SYN_SENT = _S.SYN_SENT
_SYN_RECEIVED = _S.SYN_RECEIVED
_ESTABLISHED = _S.ESTABLISHED
_FIN_WAIT_1 = _S.FIN_WAIT_1
_FIN_WAIT_2 = _S.FIN_WAIT_2
_CLOSE_WAIT = _S.CLOSE_WAIT
_CLOSING = _S.CLOSING
_LAST_ACK = _S.LAST_ACK
_TIME_WAIT = _S.TIME_WAIT

_RECEIVING = (_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2)
_SENDING = (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK)

_EMPTY_RECV = RecvBuffer()  # shared by connections in TIME_WAIT (nothing is ever pushed)

DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
# dupthresh ceiling.  Raising it after spurious retransmissions helps pure reordering but,
# without RACK's time-based loss detection, turned real losses into RTOs in the seeded
# simulations (5% loss + jitter: 1.4 -> 0.6 MB/s), so it stays at 3 for now.
MAX_REORDERING = 3
QUICKACKS = 16  # like Linux's quick-ACK mode: no delayed ACK for this many segments
DELAYED_ACK = 0.04  # Linux's minimum; RFC 9293 allows up to 0.5 s, the brief <= 0.2 s
MAX_PERSIST = 60.0


class ConnectionHost(Protocol):
    """What a connection needs from its layer."""

    msl: float
    fin_timeout: float
    syn_retries: int
    max_retries: int

    def transmit(self, conn: Connection | TimeWait, segment: bytearray, payload_len: int,
                 now: float) -> None: ...
    def arm(self, conn: Connection | TimeWait, deadline: float) -> None: ...
    def notify(self, conn: Connection) -> None: ...
    def state_changed(self, conn: Connection | TimeWait, old: TcpState, new: TcpState,
                      now: float) -> None: ...
    def challenge_ack_allowed(self, now: float) -> bool: ...
    def count(self, name: str) -> None: ...
    def ack_soon(self, conn: Connection) -> None: ...


class ConnectionParams:
    """Per-connection limits the layer decides (from the device) and socket options."""

    __slots__ = ("keep_cnt", "keep_idle", "keep_intvl", "keepalive", "max_payload", "mtu_mss",
                 "nodelay", "rcv_buf", "snd_buf", "use_sack", "use_timestamps",
                 "use_window_scale")

    def __init__(self, *, mtu_mss: int = 1460, max_payload: int = 1460,
                 rcv_buf: int = 4 << 20, snd_buf: int = 4 << 20) -> None:
        self.mtu_mss = mtu_mss  # MSS we advertise: what fits one MTU after IP+TCP headers
        self.max_payload = max_payload  # largest payload of one segment we emit (TSO: 64 KiB)
        self.rcv_buf = rcv_buf
        self.snd_buf = snd_buf
        self.nodelay = False
        self.keepalive = False
        self.keep_idle = 7200.0
        self.keep_intvl = 75.0
        self.keep_cnt = 9
        self.use_sack = True
        self.use_timestamps = True
        self.use_window_scale = True

    def copy(self) -> ConnectionParams:
        c = ConnectionParams(mtu_mss=self.mtu_mss, max_payload=self.max_payload,
                             rcv_buf=self.rcv_buf, snd_buf=self.snd_buf)
        for name in ConnectionParams.__slots__:
            setattr(c, name, getattr(self, name))
        return c


@functools.lru_cache(maxsize=64)
def _wscale_for(buf: int) -> int:
    shift = 0
    while shift < 14 and (0xFFFF << shift) < buf:
        shift += 1
    return shift


class Connection:
    __slots__ = (
        "cc",
        "delack_segs",
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
        "quickacks",
        "rb",
        "rcv_adv",
        "rcv_fin_at",
        "rcv_nxt",
        "rcv_wscale",
        "rd_shut",
        "recover",
        "remote_ip",
        "remote_port",
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
        "ts_offset",
        "ts_recent",
        "undo_cwnd",
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
        self.state = _CLOSED
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
        self.ts_recent = 0
        self.smss = min(params.mtu_mss, DEFAULT_MSS)
        # reliability
        self.rto = RtoEstimator()
        self.cc = NewReno(self.smss)
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.rtx_count = 0
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        self.rtx_next = 0
        self.rtx_una_mark: int | None = None  # SND.MAX when SND.UNA's segment was resent
        self.sacked: list[list[int]] = []
        # reordering tolerance (duplicate-ACK threshold), raised by detected spurious
        # retransmissions, and what to restore when one is detected (Eifel, RFC 3522)
        self.reordering = 3
        self.undo_cwnd = 0
        self.undo_ssthresh = 0
        self.undo_seq = 0
        self.undo_tsval: int | None = None
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
        if new == _CLOSED:
            self.t_rtx = self.t_persist = self.t_delack = self.t_keep = self.t_wait = None
        elif new == _TIME_WAIT:
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

    # -- opening ----------------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """connect(): send our SYN."""
        self.snd_una = 0
        self.snd_nxt = 1
        self.snd_max = 1
        self._set_state(_SYN_SENT, now)
        self._send_syn(now, ack=False)
        self.t_rtx = now + self.rto.current()
        self._rearm()

    def open_passive(self, seg: Segment, now: float) -> None:
        """A listener accepted ``seg`` (a SYN): become SYN_RECEIVED and answer SYN-ACK."""
        self.passive = True
        self.irs = seg.seq
        self.rcv_nxt = 1
        self._negotiate(seg, now)
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_una = 0
        self.snd_nxt = 1
        self.snd_max = 1
        self.last_rx = now
        self._set_state(_SYN_RECEIVED, now)
        self._send_syn(now, ack=True)
        self.t_rtx = now + self.rto.current()
        self._rearm()

    def _negotiate(self, seg: Segment, now: float) -> None:
        """Options from the peer's SYN (our own SYN offered, or will offer, the ``want_*``)."""
        self.syn_options_seen = True
        peer_mss = seg.mss if seg.mss else DEFAULT_MSS
        if self.want_ws and seg.window_scale is not None:
            self.snd_wscale = seg.window_scale
            self.rcv_wscale = _wscale_for(self.p.rcv_buf)
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

    def _syn_window(self) -> int:
        win = min(self.p.rcv_buf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + win
        return win

    def _send_syn(self, now: float, *, ack: bool) -> None:
        ts = (self._tsval(now), self.ts_recent if ack else 0) if self.want_ts else None
        opts = syn_options(mss=self.p.mtu_mss,
                           window_scale=_wscale_for(self.p.rcv_buf) if self.want_ws else None,
                           sack_permitted=self.want_sack, timestamps=ts)
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port, seq=self.iss,
            ack=(self.irs + self.rcv_nxt) & MASK if ack else 0,
            flags=SYN | ACK if ack else SYN, window=self._syn_window(), options=opts)
        if ack:
            self.last_ack_sent = self.rcv_nxt
        self.host.transmit(self, seg, 0, now)

    # -- helpers ----------------------------------------------------------------------------

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & MASK

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

    def _window_field(self) -> int:
        """The window to advertise now; moves the right edge only forward (no shrinking)
        and only by a worthwhile amount (receiver-side SWS avoidance, RFC 9293 3.8.6.2.2)."""
        free = self.p.rcv_buf - self.rb.size
        if self.rd_shut:
            free = self.p.rcv_buf
        edge = self.rcv_nxt + max(free, 0)
        if edge - self.rcv_adv >= min(self.p.rcv_buf // 2, self.p.mtu_mss) or (
                free >= self.p.rcv_buf // 2 and edge > self.rcv_adv):
            self.rcv_adv = edge
        win = self.rcv_adv - self.rcv_nxt
        if win < 0:
            win = 0
        shift = self.rcv_wscale
        field = (win + (1 << shift) - 1) >> shift  # round up: rounding down would shrink
        if field > 0xFFFF:
            field = 0xFFFF
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + (field << shift))
        return field

    def _ack_options(self, now: float, with_sack: bool) -> bytes:
        ts = (self._tsval(now), self.ts_recent) if self.ts_enabled else None
        blocks = None
        if with_sack and self.want_sack and self.rb.has_gaps:
            irs = self.irs
            blocks = [((irs + s) & MASK, (irs + e) & MASK) for s, e in
                      self.rb.sack_blocks(3 if ts else 4)]
        if ts is None and not blocks:
            return b""
        return data_options(ts, blocks)

    def send_ack(self, now: float) -> None:
        """A pure ACK (with SACK blocks when we hold out-of-order data).

        Its sequence number is SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT the
        peer may already hold everything below SND.MAX, and would drop as out of window a
        pure ACK whose sequence number lies below its RCV.NXT."""
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.iss + self.snd_max) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=ACK, window=self._window_field(), options=self._ack_options(now, True))
        self.delack_segs = 0
        self.t_delack = None
        self.last_ack_sent = self.rcv_nxt
        self.host.transmit(self, seg, 0, now)

    def _send_probe(self, now: float) -> None:
        """Zero-window / keepalive probe: an ACK one below SND.UNA, which the peer must
        answer with its current ACK and window (RFC 9293 3.8.6.1, 3.8.4)."""
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.iss + self.snd_una - 1) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=ACK, window=self._window_field(), options=self._ack_options(now, False))
        self.host.transmit(self, seg, 0, now)

    def _send_rst(self, now: float) -> None:
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.iss + self.snd_max) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=RST | ACK, window=0)
        self.host.transmit(self, seg, 0, now)

    def _challenge_ack(self, now: float) -> None:
        if self.host.challenge_ack_allowed(now):
            self.host.count("tcp_challenge_ack")
            self.send_ack(now)
        else:
            self.host.count("tcp_challenge_ack_limited")

    def _fail(self, err: int, now: float) -> None:
        self.error = err
        self.rb.clear()
        self._set_state(_CLOSED, now)

    # -- output -----------------------------------------------------------------------------

    def _send_data(self, start: int, length: int, now: float, *, new_fin: bool = False) -> int:
        """Emit one segment with bytes [start, start+length) (+FIN when it ends the stream
        and the FIN was sent before, or ``new_fin`` says this is its first transmission).

        Returns the sequence space used."""
        data_end = self.sb.end
        flags = ACK
        space = length
        if start + length == data_end:
            flags |= PSH
            if self.fin_queued and (new_fin or self.snd_max > data_end):
                flags |= FIN
                space += 1
        opts = (data_options((self._tsval(now), self.ts_recent), None)
                if self.ts_enabled else b"")
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.iss + start) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=flags, window=self._window_field(), options=opts)
        if length:
            self.sb.copy_into(seg, start, length)
        self.delack_segs = 0
        self.t_delack = None
        self.last_ack_sent = self.rcv_nxt
        self.host.transmit(self, seg, length, now)
        return space

    def _output(self, now: float) -> None:
        """Send whatever the windows, Nagle and SWS avoidance allow."""
        if self.state not in _SENDING:
            return
        sb = self.sb
        limit = self.smss
        if self.p.max_payload > 2 * limit:  # TSO: whole MSS multiples up to ~64 KiB
            limit = self.p.max_payload - self.p.max_payload % limit
        while True:
            data_end = sb.end
            total_end = data_end + 1 if self.fin_queued else data_end
            nxt = self.snd_nxt
            if nxt >= total_end:
                break
            if nxt < self.snd_max and self.sacked:
                nxt = self._skip_sacked(nxt)
                if nxt != self.snd_nxt:
                    self.snd_nxt = nxt
                    continue
            cwnd = self.cc.cwnd
            if 0 < self.dupacks < 3 and not self.in_recovery:
                cwnd += self.dupacks * self.smss  # limited transmit (RFC 3042)
            wnd = self.snd_wnd if self.snd_wnd < cwnd else cwnd
            usable = self.snd_una + wnd - nxt
            avail = data_end - nxt
            if avail <= 0:
                # only the FIN is left; it needs no window space of its own
                if usable < 0:
                    break
                n = 0
            else:
                if usable <= 0:
                    break
                n = min(avail, usable, limit)
                if nxt < self.snd_max:
                    # retransmission after a timeout: stop before SACKed data
                    edge = self._next_sacked_start(nxt)
                    if edge is not None and nxt + n > edge:
                        n = edge - nxt
                elif n < avail and n < self.smss:
                    # sender SWS avoidance (RFC 9293 3.8.6.2.1): no runt while more is queued,
                    # unless nothing is in flight (then nothing else will clock us out)
                    if self.snd_max > self.snd_una and n < self.max_snd_wnd // 2:
                        break
                elif (n == avail and n < self.smss and not self.p.nodelay
                      and not self.fin_queued and self.snd_sml > self.snd_una):
                    # Nagle, Minshall's variant (as Linux): hold a runt only while an
                    # earlier runt is unacknowledged, so a write's tail goes out at once
                    break
            used = self._send_data(nxt, n, now, new_fin=True)
            if n < self.smss:
                self.snd_sml = nxt + used
            self.snd_nxt = nxt + used
            if self.snd_nxt > self.snd_max:
                if self.rtt_seq is None:
                    self.rtt_seq = self.snd_nxt
                    self.rtt_time = now
                self.snd_max = self.snd_nxt
            if self.t_rtx is None:
                self._arm_rtx(now)
            self.t_persist = None
        # Zero window with data waiting and nothing in flight: the persist timer probes.
        if (self.snd_wnd == 0 and self.snd_max == self.snd_una and self.t_persist is None
                and (sb.end > self.snd_una or (self.fin_queued and self.snd_max <= sb.end))):
            self.t_rtx = None
            self.t_persist = now + min(
                MAX_PERSIST, self.rto.current() * (1 << min(self.persist_backoff, 16)))

    def _skip_sacked(self, off: int) -> int:
        for s, e in self.sacked:
            if s <= off < e:
                return e
            if s > off:
                break
        return off

    def _next_sacked_start(self, off: int) -> int | None:
        for s, _e in self.sacked:
            if s > off:
                return s
        return None

    def _retransmit_hole(self, now: float) -> bool:
        """Fast recovery: resend the next un-SACKed segment at or after ``rtx_next``."""
        off = max(self.rtx_next, self.snd_una)
        off = self._skip_sacked(off)
        high = self.sacked[-1][1] if self.sacked else self.snd_una + 1
        if off >= self.snd_max or (off > self.snd_una and off >= high):
            return False
        data_end = self.sb.end
        n = min(self.smss, data_end - off)
        edge = self._next_sacked_start(off)
        if edge is not None and off + n > edge:
            n = edge - off
        if n <= 0 and not (self.fin_queued and off == data_end):
            return False
        used = self._send_data(off, max(n, 0), now)
        if off == self.snd_una:
            self.rtx_una_mark = self.snd_max
        self.rtx_next = off + used
        self.host.count("tcp_fast_retransmit")
        if self.rtt_seq is not None and off < self.rtt_seq:
            self.rtt_seq = None  # Karn: never time a retransmitted segment
        return True

    # -- timers -----------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        self.scheduled = None
        if self.t_wait is not None and self.t_wait <= now:
            self.t_wait = None
            if self.state in (_TIME_WAIT, _FIN_WAIT_2):
                self._set_state(_CLOSED, now)
                return
        if self.t_rtx is not None and self.t_rtx <= now:
            self.t_rtx = None
            self._on_rtx_timeout(now)
        if self.t_persist is not None and self.t_persist <= now:
            self.t_persist = None
            if self.snd_wnd == 0 and self.state in _SENDING:
                self.host.count("tcp_zero_window_probe")
                self._send_probe(now)
                self.persist_backoff += 1
                self.t_persist = now + min(
                    MAX_PERSIST, self.rto.current() * (1 << min(self.persist_backoff, 16)))
            else:
                self._output(now)
        if self.t_delack is not None and self.t_delack <= now:
            self.t_delack = None
            if self.state in (_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2, _CLOSE_WAIT, _CLOSING,
                              _LAST_ACK):
                self.send_ack(now)
        if self.t_keep is not None and self.t_keep <= now:
            self.t_keep = None
            self._on_keepalive(now)
        if self.state != _CLOSED:
            self._rearm()

    def _arm_rtx(self, now: float) -> None:
        """Arm the retransmission timer, or first a tail-loss probe (RFC 8985 7): a loss at
        the end of a flight produces no duplicate ACKs, and a 200 ms RTO is dozens of RTTs
        on a LAN; a probe after ~2 SRTT turns it into a SACK-driven fast recovery."""
        rto = self.rto.current()
        srtt = self.rto.srtt
        if (srtt is not None and not self.tlp_done and not self.in_recovery
                and self.rtx_count == 0 and self.state in _SENDING):
            pto = max(2 * srtt, 0.01)
            if self.snd_max - self.snd_una <= self.smss:
                pto += DELAYED_ACK  # a lone segment may be waiting on a delayed ACK
            if pto < rto:
                self.tlp_armed = True
                self.t_rtx = now + pto
                return
        self.tlp_armed = False
        self.t_rtx = now + rto

    def _tail_loss_probe(self, now: float) -> None:
        """Resend the last segment of the flight (or send one new one) once."""
        self.tlp_armed = False
        self.tlp_done = True
        self.host.count("tcp_tail_loss_probe")
        data_end = self.sb.end
        if self.snd_nxt == self.snd_max and data_end > self.snd_max and self.snd_wnd > 0:
            n = min(self.smss, data_end - self.snd_max, self.snd_wnd)
            used = self._send_data(self.snd_max, n, now, new_fin=True)
            self.snd_nxt = self.snd_max = self.snd_max + used
        else:
            end = min(self.snd_max, data_end)
            start = max(self.snd_una, end - self.smss)
            if end > start or self.snd_max > data_end:
                self._send_data(start, max(end - start, 0), now)
            if self.rtt_seq is not None and start < self.rtt_seq:
                self.rtt_seq = None
        self.t_rtx = now + self.rto.current()

    def _on_rtx_timeout(self, now: float) -> None:
        st = self.state
        if self.tlp_armed and st in _SENDING and self.snd_max > self.snd_una:
            self._tail_loss_probe(now)
            return
        self.tlp_armed = False
        self.rtx_count += 1
        self.host.count("tcp_rto")
        if st in (_SYN_SENT, _SYN_RECEIVED):
            if self.rtx_count > self.host.syn_retries:
                self.host.count("tcp_connect_timeout")
                self._fail(errno.ETIMEDOUT, now)
                return
            self.rto.on_timeout()
            self._send_syn(now, ack=st == _SYN_RECEIVED)
            self.t_rtx = now + self.rto.current()
            return
        if st not in _SENDING or self.snd_max == self.snd_una:
            return
        if self.rtx_count > self.host.max_retries:
            self.host.count("tcp_retransmit_timeout_abort")
            self._send_rst(now)
            self._fail(errno.ETIMEDOUT, now)
            return
        flight = self.snd_max - self.snd_una
        if self.rtx_count == 1 and not self.in_recovery:
            self._remember_undo(self.snd_una, now)
        else:
            self.undo_tsval = None
        self.cc.on_timeout(flight)
        self.rto.on_timeout()
        self.in_recovery = False
        self.dupacks = 0
        self.recover = self.snd_max
        self.rtt_seq = None
        if self.rtx_count >= 2:
            # A second timeout without progress: perhaps the receiver reneged on what it
            # SACKed (RFC 2018 8), so resend everything.  After the first, trust the SACK
            # scoreboard and resend only the holes (RFC 6675 5.1).
            self.sacked.clear()
        self.snd_nxt = self.snd_una
        self.t_rtx = now + self.rto.current()
        if self.snd_wnd == 0:
            self._send_probe(now)
            return
        self._output(now)

    def _on_keepalive(self, now: float) -> None:
        if not self.p.keepalive or self.state not in (_ESTABLISHED, _CLOSE_WAIT):
            return
        idle = now - self.last_rx
        if self.keep_probes == 0 and idle < self.p.keep_idle:
            self.t_keep = self.last_rx + self.p.keep_idle
            return
        if self.keep_probes >= self.p.keep_cnt:
            self.host.count("tcp_keepalive_abort")
            self._send_rst(now)
            self._fail(errno.ETIMEDOUT, now)
            return
        self.keep_probes += 1
        self.host.count("tcp_keepalive_probe")
        self._send_probe(now)
        self.t_keep = now + self.p.keep_intvl

    def _restart_keepalive(self, now: float) -> None:
        if self.p.keepalive:
            self.keep_probes = 0
            self.t_keep = now + self.p.keep_idle

    # -- input ------------------------------------------------------------------------------

    def on_segment(self, seg: Segment, now: float) -> None:
        st = self.state
        if st == _SYN_SENT:
            self._on_syn_sent(seg, now)
        elif st != _CLOSED:
            self._on_synchronized(seg, now)
        if self.state != _CLOSED:
            self._rearm()

    def _on_syn_sent(self, seg: Segment, now: float) -> None:
        f = seg.flags
        ack_ok = False
        if f & ACK:
            a = (seg.ack - self.iss) & MASK
            if a == 0 or a > self.snd_max:
                if not f & RST:
                    self.host.count("tcp_syn_sent_bad_ack")
                    self._rst_for(seg, now)
                return
            ack_ok = True
        if f & RST:
            if ack_ok:
                self.host.count("tcp_connection_refused")
                self._fail(errno.ECONNREFUSED, now)
            return
        if not f & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = 1
        self._negotiate(seg, now)
        self.snd_wnd = seg.window
        self.max_snd_wnd = seg.window
        self.snd_wl1 = 0
        self.last_rx = now
        if ack_ok:
            self.snd_una = 1
            self.snd_wl2 = 1
            self.rtx_count = 0
            self.t_rtx = None
            if self.ts_enabled and seg.tsecr:
                self.rto.sample(((self._tsval(now) - seg.tsecr) & MASK) / 1000)
            self._set_state(_ESTABLISHED, now)
            self._restart_keepalive(now)
            self.send_ack(now)
            self._output(now)
        else:
            # simultaneous open (RFC 9293 3.5 figure 7)
            self._set_state(_SYN_RECEIVED, now)
            self._send_syn(now, ack=True)

    def _rst_for(self, seg: Segment, now: float) -> None:
        """RFC 9293 reset generation for a segment that does not belong here."""
        if seg.flags & ACK:
            out = build_segment(src_port=self.local_port, dst_port=self.remote_port,
                                seq=seg.ack, ack=0, flags=RST, window=0)
        else:
            n = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
            out = build_segment(src_port=self.local_port, dst_port=self.remote_port, seq=0,
                                ack=(seg.seq + n) & MASK, flags=RST | ACK, window=0)
        self.host.transmit(self, out, 0, now)

    def _on_synchronized(self, seg: Segment, now: float) -> None:
        st = self.state
        f = seg.flags
        payload = seg.payload
        plen = len(payload)
        seq = unwrap(seg.seq, self.irs, self.rcv_nxt)
        rcv_nxt = self.rcv_nxt
        if (st == _SYN_RECEIVED and not self.passive and f & SYN and f & ACK and seq == 0
                and not plen and unwrap(seg.ack, self.iss, self.snd_una) == self.snd_max):
            # Simultaneous open: the peer's SYN-ACK repeats its SYN; its ACK is what counts
            f &= ~SYN
            seq = 1
        # PAWS (RFC 7323 5): an old timestamp means an old duplicate
        # Pure ACKs are exempt: reordering makes old ACKs common and harmless (the ACK
        # range check covers them), and dropping them would throw away SACK information;
        # Linux exempts them too (tcp_disordered_ack).
        if (self.ts_enabled and seg.tsval is not None and not f & RST
                and (plen or f & (SYN | FIN))
                and (seg.tsval - self.ts_recent) & MASK >= HALF):
            self.host.count("tcp_paws_drop")
            self.send_ack(now)
            return
        seglen = plen + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        wnd = self.rcv_adv - rcv_nxt
        if seglen == 0:
            ok = seq == rcv_nxt if wnd <= 0 else rcv_nxt <= seq < rcv_nxt + wnd
        elif wnd <= 0:
            ok = False
        else:
            ok = (rcv_nxt <= seq < rcv_nxt + wnd) or (rcv_nxt <= seq + seglen - 1 < rcv_nxt + wnd)
        if not ok:
            if f & RST:
                self.host.count("tcp_rst_out_of_window")
                return
            if st == _SYN_RECEIVED:
                if f & SYN and seq == 0:
                    self.host.count("tcp_syn_retransmitted")
                    self._send_syn(now, ack=True)
                return
            self.host.count("tcp_segment_out_of_window")
            if st == _TIME_WAIT and f & FIN:
                self.t_wait = now + 2 * self.host.msl
            self.send_ack(now)
            return
        self.last_rx = now
        # RST (RFC 5961 3.2): only an exact match resets; in-window gets a challenge ACK
        if f & RST:
            if seq != rcv_nxt:
                self._challenge_ack(now)
                return
            self.host.count("tcp_rst_received")
            if st == _SYN_RECEIVED and self.passive:
                self._set_state(_CLOSED, now)
            elif st == _SYN_RECEIVED:
                self._fail(errno.ECONNREFUSED, now)
            elif st in (_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2, _CLOSE_WAIT):
                self._fail(errno.ECONNRESET, now)
            else:
                self._set_state(_CLOSED, now)
            return
        # SYN in a synchronized state (RFC 5961 4.2): challenge ACK, whatever its sequence
        if f & SYN:
            self._challenge_ack(now)
            return
        if not f & ACK:
            self.host.count("tcp_no_ack_drop")
            return
        ack = unwrap(seg.ack, self.iss, self.snd_una)
        if st == _SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self.host.count("tcp_syn_received_bad_ack")
                self._rst_for(seg, now)
                return
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self._set_state(_ESTABLISHED, now)
            self._restart_keepalive(now)
            st = _ESTABLISHED
        # ACK range check (RFC 5961 5.2)
        if ack > self.snd_max:
            self.host.count("tcp_ack_unsent_data")
            self.send_ack(now)
            return
        if ack < self.snd_una - self.max_snd_wnd:
            self.host.count("tcp_ack_too_old")
            self._challenge_ack(now)
            return
        if self.ts_enabled and seg.tsval is not None and seq <= self.last_ack_sent:
            self.ts_recent = seg.tsval  # RFC 7323 4.3
        if self.p.keepalive:
            self._restart_keepalive(now)
        self._process_ack(seg, seq, ack, plen, now)
        if self.state == _CLOSED:
            return
        st = self.state
        fin_acked = self.fin_queued and self.snd_una > self.sb.end
        if fin_acked:
            if st == _FIN_WAIT_1:
                self._set_state(_FIN_WAIT_2, now)
                if self.orphan:
                    self.t_wait = now + self.host.fin_timeout
                st = _FIN_WAIT_2
            elif st == _CLOSING:
                self._set_state(_TIME_WAIT, now)
                return
            elif st == _LAST_ACK:
                self._set_state(_CLOSED, now)
                return
        if st == _TIME_WAIT:
            if f & FIN:
                self.send_ack(now)
                self.t_wait = now + 2 * self.host.msl
            return
        # segment text (RFC 9293 3.10.7.4 seventh) and FIN
        ack_now = False
        if plen or f & FIN:
            ack_now = self._process_data(seg, seq, payload, now)
        if self.state == _CLOSED:
            return
        self._output(now)
        if ack_now:
            self.send_ack(now)
        elif self.delack_segs and self.t_delack is None:
            self.t_delack = now + DELAYED_ACK

    def _process_ack(self, seg: Segment, seq: int, ack: int, plen: int, now: float) -> None:
        snd_una = self.snd_una
        new_sack = False
        if self.want_sack and seg.sack_blocks and self.snd_max > ack:
            new_sack = self._update_sacked(seg.sack_blocks, ack)
        # window update (RFC 9293 3.10.7.4, SND.WL1/WL2)
        wnd = seg.window << self.snd_wscale
        window_changed = False
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            window_changed = wnd != self.snd_wnd
            self.snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd:
                self.persist_backoff = 0
                self.t_persist = None
        if ack > snd_una:
            acked = ack - snd_una
            flight_before = self.snd_max - snd_una
            # RTT by timing one segment at a time with Karn's rule, not from TSecr: with
            # losses in both directions the peer's TS.Recent legitimately goes stale
            # (RFC 7323 4.3) and echo-based samples would inflate the RTO by seconds.
            if self.rtt_seq is not None and ack >= self.rtt_seq:
                self.rto.sample(now - self.rtt_time)
                self.rtt_seq = None
            self.sb.ack_to(ack)
            self.snd_una = ack
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            if self.sacked:
                self._prune_sacked(ack)
            self.rtx_count = 0
            self.dupacks = 0
            # New data got through: the path works again, so drop the exponential backoff
            # now rather than waiting for a Karn-clean sample (what Linux does too).
            self.rto.backoff = 0
            if self._check_spurious(seg, ack):
                if self.snd_nxt < self.snd_max:
                    self.snd_nxt = self._skip_sacked(max(self.snd_nxt, ack))
            elif self.in_recovery:
                if ack >= self.recover:
                    self.in_recovery = False
                    self.cc.exit_recovery(self.snd_max - ack)
                else:
                    self.cc.on_partial_ack(acked)
                    self._retransmit_hole(now)
            else:
                self.cc.on_ack(acked, flight_before)
            self.tlp_done = False
            if self.snd_una >= self.snd_max:
                self.t_rtx = None
                self.tlp_armed = False
            else:
                self._arm_rtx(now)
            if self.socket is not None:
                self.host.notify(self)
        elif (ack == snd_una and self.snd_max > snd_una and plen == 0
              and not seg.flags & (SYN | FIN) and (not window_changed or new_sack)):
            self.dupacks += 1
            if self.in_recovery:
                self.cc.on_dupack_in_recovery()
                mark = self.rtx_una_mark
                if (mark is not None and self.sacked and self.sacked[-1][1] > mark
                        and self.snd_una < mark):
                    # Data sent after our retransmission of SND.UNA's segment has been
                    # SACKed while SND.UNA stands still: the retransmission was lost too.
                    # Resend it now instead of waiting for the RTO.
                    self.host.count("tcp_lost_retransmit")
                    self.rtx_next = self.snd_una
                self._retransmit_hole(now)
            elif (self.dupacks >= self._dupthresh()
                  or (new_sack and self._sacked_bytes() >= self.reordering * self.smss)) \
                    and (ack > self.recover or self.recover == 0
                         or (self.want_sack and ack == self.recover and self.sacked)):
                # RFC 6582's guard (the ACK must pass ``recover``) stops a second fast
                # retransmit caused by go-back-N duplicates; but it also blinds us to a
                # new loss at exactly ``recover``.  SACK blocks tell the two apart.
                self.host.count("tcp_fast_recovery")
                self._remember_undo(ack, now)
                self.in_recovery = True
                self.recover = self.snd_max
                self.rtx_next = ack
                self.rtx_una_mark = None
                self.cc.enter_recovery(self.snd_max - ack)
                self._retransmit_hole(now)
                self.t_rtx = now + self.rto.current()

    def _dupthresh(self) -> int:
        """The reordering tolerance (3, raised after spurious retransmissions), or fewer
        when fewer segments are outstanding and nothing new can go out to draw more
        duplicate ACKs (early retransmit, RFC 5827)."""
        oseg = -(-(self.snd_max - self.snd_una) // self.smss)
        if oseg > self.reordering or (
                self.sb.end > self.snd_max and self.snd_wnd > self.snd_max - self.snd_una):
            return self.reordering
        return max(1, oseg - 1)

    def _remember_undo(self, una: int, now: float) -> None:
        """Before cutting cwnd for a loss, note what to restore if it proves spurious."""
        if self.ts_enabled:
            self.undo_cwnd = self.cc.cwnd
            self.undo_ssthresh = self.cc.ssthresh
            self.undo_seq = una
            self.undo_tsval = self._tsval(now)

    def _check_spurious(self, seg: Segment, ack: int) -> bool:
        """Eifel detection (RFC 3522): the first ACK covering our retransmission echoes a
        timestamp older than the retransmission, so the original arrived: the "loss" was
        reordering.  Undo the window cut and tolerate more reordering from now on."""
        tsval = self.undo_tsval
        if tsval is None or ack <= self.undo_seq:
            return False
        self.undo_tsval = None
        if seg.tsval is None or not seg.tsecr or (seg.tsecr - tsval) & MASK < HALF:
            return False
        self.reordering = min(self.reordering + 1, MAX_REORDERING)
        if self.sacked and self.sacked[-1][1] > ack:
            # Other holes remain: some of this episode's losses are real, so the window
            # cut stands; keep recovering them.
            self.host.count("tcp_spurious_retransmit")
            return False
        self.host.count("tcp_spurious_retransmit_undone")
        self.cc.cwnd = max(self.cc.cwnd, self.undo_cwnd)
        self.cc.ssthresh = max(self.cc.ssthresh, self.undo_ssthresh)
        self.in_recovery = False
        self.recover = ack  # lets a real loss right after this start fast recovery
        self.rtx_una_mark = None
        return True

    def _update_sacked(self, blocks: tuple[tuple[int, int], ...], ack: int) -> bool:
        iss = self.iss
        changed = False
        for ws, we in blocks:
            s = unwrap(ws, iss, ack)
            e = unwrap(we, iss, ack)
            if s < ack:
                s = ack
            if e > self.snd_max:
                e = self.snd_max
            if e <= s:
                continue  # D-SACK or bogus: ignore
            if self._add_sacked(s, e):
                changed = True
        return changed

    def _add_sacked(self, s: int, e: int) -> bool:
        sacked = self.sacked
        out: list[list[int]] = []
        placed = False
        changed = True
        for blk in sacked:
            if blk[1] < s:
                out.append(blk)
            elif blk[0] > e:
                if not placed:
                    out.append([s, e])
                    placed = True
                out.append(blk)
            else:
                if blk[0] <= s and blk[1] >= e:
                    changed = False
                s = min(s, blk[0])
                e = max(e, blk[1])
        if not placed:
            out.append([s, e])
        if len(out) > 64:  # bounded: forget the highest ranges
            del out[64:]
        self.sacked = out
        return changed

    def _prune_sacked(self, ack: int) -> None:
        out = [b for b in self.sacked if b[1] > ack]
        if out and out[0][0] < ack:
            out[0] = [ack, out[0][1]]
        self.sacked = out

    def _sacked_bytes(self) -> int:
        return sum(e - s for s, e in self.sacked)

    def _process_data(self, seg: Segment, seq: int, payload: memoryview | bytes,
                      now: float) -> bool:
        """Queue in-window data; returns whether to ACK at once."""
        st = self.state
        f = seg.flags
        if st not in _RECEIVING:
            return False  # after the peer's FIN nothing more may arrive; ignore
        plen = len(payload)
        fin = bool(f & FIN)
        if plen:
            if seq < self.rcv_nxt:
                cut = self.rcv_nxt - seq
                payload = payload[cut:]
                seq = self.rcv_nxt
            end = seq + len(payload)
            if end > self.rcv_adv:
                payload = payload[: self.rcv_adv - seq]
                fin = False
                end = self.rcv_adv
        else:
            end = seq
        if fin:
            self.rcv_fin_at = end
        ack_now = False
        if seq == self.rcv_nxt:
            if payload:
                if not self.rd_shut:
                    self.rb.push(payload)
                self.rcv_nxt = end
                if self.rb.has_gaps:
                    self.rcv_nxt = self.rb.pop_ready(self.rcv_nxt)
                    ack_now = True  # filled (part of) a gap: tell the sender at once
                    self.quickacks = QUICKACKS
                else:
                    self.delack_segs += 1
                    if self.quickacks:
                        # Quick-ACK mode (as Linux): while the sender is in slow start or
                        # recovering, a delayed ACK for an odd segment would stall a small
                        # window for 40 ms, so every segment is ACKed (after the batch).
                        self.quickacks -= 1
                        if self.delack_segs == 1:
                            self.host.ack_soon(self)
                    elif self.delack_segs == 2:
                        # Every second segment deserves an ACK, but not this instant: the
                        # layer sends it after the current batch of frames, so a burst of
                        # back-to-back segments is answered by one ACK, not one per pair.
                        self.host.ack_soon(self)
                if self.socket is not None or self.listener is not None:
                    self.host.notify(self)
        elif payload:
            self.host.count("tcp_out_of_order")
            self.quickacks = QUICKACKS
            if not self.rb.add_out_of_order(seq, payload):
                self.host.count("tcp_out_of_order_drop")
            ack_now = True
        if self.rcv_fin_at == self.rcv_nxt and not self.fin_received:
            self.rcv_nxt += 1
            self.fin_received = True
            ack_now = True
            if st == _ESTABLISHED:
                self._set_state(_CLOSE_WAIT, now)
            elif st == _FIN_WAIT_1:
                if self.fin_queued and self.snd_una > self.sb.end:
                    self._set_state(_TIME_WAIT, now)
                else:
                    self._set_state(_CLOSING, now)
            elif st == _FIN_WAIT_2:
                self._set_state(_TIME_WAIT, now)
            self.host.notify(self)
        return ack_now

    # -- application calls ------------------------------------------------------------------

    @property
    def send_space(self) -> int:
        return self.p.snd_buf - len(self.sb)

    def app_send(self, data: bytes | memoryview, now: float) -> int:
        n = min(len(data), self.p.snd_buf - len(self.sb))
        if n <= 0:
            return 0
        self.sb.append(data[:n] if n < len(data) else data)
        self._output(now)
        self._rearm()
        return n

    def app_recv(self, max_bytes: int, now: float) -> bytes:
        out = self.rb.read(max_bytes)
        if out and self.state in _RECEIVING:
            # Window update once the application freed a worthwhile amount (RFC 9293
            # 3.8.6.2.2); otherwise the next ACK carries the larger window anyway.
            free = self.p.rcv_buf - self.rb.size
            edge = self.rcv_nxt + free
            advertised = self.rcv_adv - self.rcv_nxt
            if edge - self.rcv_adv >= max(2 * self.p.mtu_mss, self.p.rcv_buf // 4) or (
                    advertised < self.p.mtu_mss and edge - self.rcv_adv >= self.p.mtu_mss):
                self.send_ack(now)
                self._rearm()
        return out

    def app_shutdown_write(self, now: float) -> None:
        """Queue our FIN after every queued byte (half-close / close)."""
        st = self.state
        if self.fin_queued:
            return
        if st in (_SYN_SENT, _CLOSED):
            self._set_state(_CLOSED, now)
            return
        self.fin_queued = True
        if st in (_SYN_RECEIVED, _ESTABLISHED):
            self._set_state(_FIN_WAIT_1, now)
        elif st == _CLOSE_WAIT:
            self._set_state(_LAST_ACK, now)
        self._output(now)
        self._rearm()

    def app_shutdown_read(self) -> None:
        self.rd_shut = True
        self.rb.clear()

    def app_close(self, now: float) -> None:
        """close(): lingering close, or RST when unread data would be lost (as Linux)."""
        self.orphan = True
        self.socket = None
        if self.state in (_CLOSED, _TIME_WAIT):
            return
        if self.rb.size or self.rb.has_gaps:
            self.host.count("tcp_close_with_unread_data")
            self.abort(now)
            return
        if self.state == _SYN_SENT:
            self._set_state(_CLOSED, now)
            return
        self.app_shutdown_write(now)
        if self.state == _FIN_WAIT_2 and self.t_wait is None:
            self.t_wait = now + self.host.fin_timeout
            self._rearm()

    def abort(self, now: float) -> None:
        if self.state in (_SYN_RECEIVED, _ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2, _CLOSE_WAIT):
            self._send_rst(now)
        self.rb.clear()
        self._set_state(_CLOSED, now)
