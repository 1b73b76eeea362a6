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
from vipernet.stack.tcp.segment import Segment
from vipernet.stack.tcp.state import TcpState
from vipernet.stack.tcp.tcb import ConnectionHost

__all__ = ["Connection", "ConnectionHost", "ConnectionParams"]

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


class Connection(Receiver):
    __slots__ = ()

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

    def _on_rtx_timeout(self, now: float) -> None:
        st = self.state
        if self.rack_armed:
            self._on_reorder_timeout(now)
            return
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
