"""One TCP connection: the RFC 9293 state machine with RFC 5961, 7323, 2018, 6298, 5681/6582.

The engine is sans-IO.  It is driven by three kinds of calls, each given ``now``:

* :meth:`Connection.on_segment` for a segment the layer demultiplexed to it,
* :meth:`Connection.on_timer` when the deadline it registered has passed,
* the application calls (``app_send``, ``app_recv``, ``app_shutdown_write``, ``app_close``).

It answers through its :class:`ConnectionHost` (the layer): ``transmit`` a built segment,
``arm`` a deadline, ``notify`` the socket of a readiness change, ``state_changed``.

The class is layered, one concern per file: :mod:`tcb` (the state and the transition choke
point ``_set_state``), :mod:`sender` (output and loss recovery), :mod:`receiver` (segment
arrival) and this module (opening, timers, the application's calls).
"""

from __future__ import annotations

import errno

from vipernet.stack.tcp.params import MAX_PERSIST, ConnectionParams
from vipernet.stack.tcp.receiver import Receiver
from vipernet.stack.tcp.rto import MAX_RTO
from vipernet.stack.tcp.segment import Segment
from vipernet.stack.tcp.state import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    RECEIVING,
    SENDING,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
)
from vipernet.stack.tcp.tcb import ConnectionHost

__all__ = ["Connection", "ConnectionHost", "ConnectionParams"]



class Connection(Receiver):
    __slots__ = ()

    # -- opening ----------------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """connect(): send our SYN."""
        self.snd_una = 0
        self.snd_nxt = 1
        self.snd_max = 1
        self._set_state(SYN_SENT, now)
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
        self._set_state(SYN_RECEIVED, now)
        self._send_syn(now, ack=True)
        self.t_rtx = now + self.rto.current()
        self._rearm()

    # -- timers -----------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        self.scheduled = None
        if self.t_wait is not None and self.t_wait <= now:
            self.t_wait = None
            if self.state in (TIME_WAIT, FIN_WAIT_2):
                self._set_state(CLOSED, now)
                return
        if self.t_rtx is not None and self.t_rtx <= now:
            self.t_rtx = None
            self._on_rtx_timeout(now)
        if self.t_persist is not None and self.t_persist <= now:
            self.t_persist = None
            if self.snd_wnd == 0 and self.state in SENDING:
                self.host.count("tcp_zero_window_probe")
                self._send_probe(now)
                self.persist_backoff += 1
                self.t_persist = now + min(
                    MAX_PERSIST, self.rto.current() * (1 << min(self.persist_backoff, 16)))
            else:
                self._output(now)
        if self.t_delack is not None and self.t_delack <= now:
            self.t_delack = None
            if self.state in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING,
                              LAST_ACK):
                self.send_ack(now)
        if self.t_keep is not None and self.t_keep <= now:
            self.t_keep = None
            self._on_keepalive(now)
        if self.state != CLOSED:
            self._rearm()

    def _on_rtx_timeout(self, now: float) -> None:
        st = self.state
        if self.rack_armed:
            self._on_reorder_timeout(now)
            return
        if self.tlp_armed and st in SENDING and self.snd_max > self.snd_una:
            self._tail_loss_probe(now)
            return
        self.tlp_armed = False
        self.rtx_count += 1
        self.host.count("tcp_rto")
        if st in (SYN_SENT, SYN_RECEIVED):
            if self.rtx_count > self.host.syn_retries:
                self.host.count("tcp_connect_timeout")
                self._fail(errno.ETIMEDOUT, now)
                return
            self.rto.on_timeout()
            self._send_syn(now, ack=st == SYN_RECEIVED)
            self.t_rtx = now + self.rto.current()
            return
        if st not in SENDING or self.snd_max == self.snd_una:
            return
        # A peer that closed its window under our data and still answers the probes is
        # slow, not gone: those timeouts are window probes, and they never end the
        # connection -- unless the peer left the last two probes unanswered (they are
        # MAX_RTO apart at most), or nobody owns the socket any more (Linux's
        # tcp_retransmit_timer draws the same line).
        window_closed = (self.snd_wnd == 0 and not self.orphan
                         and now - self.last_rx < 2 * MAX_RTO)
        if self.rtx_count > self.host.max_retries and not window_closed:
            self.host.count("tcp_retransmit_timeout_abort")
            self._send_rst(now)
            self._fail(errno.ETIMEDOUT, now)
            return
        flight = self.snd_max - self.snd_una
        if self.rtx_count == 1 and not self.in_recovery:
            self._remember_undo(self.snd_una, now)
        else:
            self.undo_tsval = None  # a timeout on a timeout or in recovery: the cut stands
            self.undo_retrans = -1
        self.cc.on_timeout(flight)
        self.rto.on_timeout()
        self.in_recovery = False
        self.dupacks = 0
        self.recover = self.snd_max
        self.rtt_seq = None
        # everything outstanding is resent from SND.UNA now (go-back-N over the holes)
        self.rack.clear_lost()
        if self.rtx_count >= 2:
            # A second timeout without progress: perhaps the receiver reneged on what it
            # SACKed (RFC 2018 8), so resend everything.  After the first, trust the SACK
            # scoreboard and resend only the holes (RFC 6675 5.1).
            self.sacked.clear()
            self.rack.forget_sacks()
        self.snd_nxt = self.snd_una
        self.t_rtx = now + self.rto.current()
        if self.snd_wnd == 0:
            self._send_probe(now)
            return
        self._output(now)

    def _on_keepalive(self, now: float) -> None:
        if not self.p.keepalive or self.state not in (ESTABLISHED, CLOSE_WAIT):
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

    # -- application calls ------------------------------------------------------------------

    def path_mtu_lowered(self, mss: int, now: float) -> None:
        """The path takes at most ``mss`` payload bytes per segment (before options): send
        smaller segments from now on and resend the flight in them at once -- the big
        ones were dropped on the way, and waiting for the RTO would stall the transfer
        (Linux's tcp_simple_retransmit).  The congestion window is kept: no congestion
        was signalled."""
        self.p.mtu_mss = min(self.p.mtu_mss, mss)  # what a handshake still to finish uses
        if self.ts_enabled:
            mss -= 12
        if mss >= self.smss:
            return
        self.smss = mss
        self.cc.mss = mss
        self.host.count("tcp_mss_lowered")
        if self.state in (SYN_SENT, SYN_RECEIVED):
            return
        if self.snd_max > self.snd_una:
            self.snd_nxt = self.snd_una
            self.rtt_seq = None  # the resent segments must not give an RTT sample
            self._output(now)
            self._rearm()

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
        if out and self.state in RECEIVING:
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
        if st in (SYN_SENT, CLOSED):
            self._set_state(CLOSED, now)
            return
        self.fin_queued = True
        if st in (SYN_RECEIVED, ESTABLISHED):
            self._set_state(FIN_WAIT_1, now)
        elif st == CLOSE_WAIT:
            self._set_state(LAST_ACK, now)
        self._output(now)
        self._rearm()

    def app_shutdown_read(self) -> None:
        self.rd_shut = True
        self.rb.clear()

    def app_close(self, now: float) -> None:
        """close(): lingering close, or RST when unread data would be lost (as Linux)."""
        self.orphan = True
        self.socket = None
        if self.state in (CLOSED, TIME_WAIT):
            return
        if self.rb.size or self.rb.has_gaps:
            self.host.count("tcp_close_with_unread_data")
            self.abort(now)
            return
        if self.state == SYN_SENT:
            self._set_state(CLOSED, now)
            return
        self.app_shutdown_write(now)
        if self.state == FIN_WAIT_2 and self.t_wait is None:
            self.t_wait = now + self.host.fin_timeout
            self._rearm()

    def abort(self, now: float) -> None:
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self._send_rst(now)
        self.rb.clear()
        self._set_state(CLOSED, now)
