"""Output: building segments, the send window, retransmission and loss recovery.

:class:`Sender` adds to the :class:`~vipernet.stack.tcp.tcb.Tcb` everything that puts
segments on the wire: SYNs, ACKs (with SACK blocks), probes and resets; :meth:`Sender._output`,
which sends what the peer's window, the congestion window, Nagle (Minshall's variant) and
sender-side SWS avoidance allow; the retransmission timer with its tail-loss probe; RACK's
reordering window (RFC 8985 6.2), which a suspected loss of SND.UNA's segment must outlast
before fast recovery starts; and the SACK scoreboard that drives fast recovery,
lost-retransmission detection and the Eifel undo of spurious retransmissions.

``t_rtx`` holds one of three deadlines, told apart by flags: the reordering window
(``rack_armed``), a tail-loss probe (``tlp_armed``) or the RTO.  :meth:`_arm_rtx` always
replaces it with a probe or the RTO, so progress on the cumulative ACK cancels a pending
reordering wait by construction.
"""

from __future__ import annotations

from vipernet.stack.tcp.params import (
    DELAYED_ACK,
    MAX_PERSIST,
    MAX_REO_STEPS,
    MAX_REORDERING,
    wscale_for,
)
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
from vipernet.stack.tcp.seq import HALF, MASK, unwrap
from vipernet.stack.tcp.state import TcpState
from vipernet.stack.tcp.tcb import Tcb

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

_MIN_REO_WND = 0.001

_RECEIVING = (_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2)
_SENDING = (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK)


class Sender(Tcb):
    __slots__ = ()

    # -- control segments -------------------------------------------------------------------

    def _syn_window(self) -> int:
        win = min(self.p.rcv_buf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + win
        return win

    def _send_syn(self, now: float, *, ack: bool) -> None:
        ts = (self._tsval(now), self.ts_recent if ack else 0) if self.want_ts else None
        opts = syn_options(mss=self.p.mtu_mss,
                           window_scale=wscale_for(self.p.rcv_buf) if self.want_ws else None,
                           sack_permitted=self.want_sack, timestamps=ts)
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port, seq=self.iss,
            ack=(self.irs + self.rcv_nxt) & MASK if ack else 0,
            flags=SYN | ACK if ack else SYN, window=self._syn_window(), options=opts)
        if ack:
            self.last_ack_sent = self.rcv_nxt
        self.host.transmit(self, seg, 0, now)

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
        if with_sack and self.want_sack and (self.rb.has_gaps or self.dsack):
            irs = self.irs
            ranges = self.rb.sack_blocks(3 if ts else 4)
            if self.dsack is not None:
                # D-SACK (RFC 2883): the duplicate range first, so the sender can tell a
                # spurious retransmission from a loss and undo its window cut
                ranges = [self.dsack, *ranges][: 3 if ts else 4]
                self.dsack = None
            blocks = [((irs + s) & MASK, (irs + e) & MASK) for s, e in ranges]
        if ts is None and not blocks:
            return b""
        return data_options(ts, blocks)

    def send_ack(self, now: float) -> None:
        """A pure ACK (with SACK blocks when we hold out-of-order data).

        Its sequence number is :meth:`_acceptable_seq`."""
        seg = build_segment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.iss + self._acceptable_seq()) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=ACK, window=self._window_field(), options=self._ack_options(now, True))
        self.delack_segs = 0
        self.t_delack = None
        self.last_ack_sent = self.rcv_nxt
        self.host.transmit(self, seg, 0, now)

    def _acceptable_seq(self) -> int:
        """The sequence number of a segment without data (ACK, RST): one the peer accepts.

        SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT the peer may already hold
        everything below SND.MAX, and would drop as out of window a pure ACK whose sequence
        number lies below its RCV.NXT.  But never beyond the right edge of the peer's
        window (SND.UNA + SND.WND; Linux's tcp_acceptable_seq does the same): when the
        window closed under bytes we had sent, the peer dropped them, and an ACK numbered
        past its zero window is out of window too -- it drops every window update we send,
        both ends wait in persist backoff, and the connection stalls for good (issue 16)."""
        edge = self.snd_una + self.snd_wnd
        return self.snd_max if self.snd_max <= edge else edge

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
            seq=(self.iss + self._acceptable_seq()) & MASK, ack=(self.irs + self.rcv_nxt) & MASK,
            flags=RST | ACK, window=0)
        self.host.transmit(self, seg, 0, now)

    # -- data -------------------------------------------------------------------------------

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
        if space and self.want_sack:
            if start < self.snd_max and self.undo_retrans >= 0:
                if len(self.undo_ranges) < 256:
                    self.undo_ranges.append((start, start + space))
                    self.undo_retrans += 1
                else:
                    self.undo_retrans = -1  # too many to track: this episode stays cut
            self.rack.on_transmit(start, start + space, now)
            if self.in_recovery:
                self.prr.on_sent(space)
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
            if self.in_recovery and self.want_sack and nxt >= self.snd_max:
                # SACK recovery: new data as far as PRR's cwnd over the pipe allows
                usable = min(self.snd_una + self.snd_wnd - nxt, self.cc.cwnd - self._pipe())
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
            if nxt == self.snd_una and nxt < self.snd_max:
                self.una_rtx_time = now
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

    def _retransmit_lost(self, now: float, budget: int) -> bool:
        """SACK recovery: resend (the un-SACKed part of) the lowest segment RACK marked lost,
        at most ``budget`` bytes rounded up to a whole MSS."""
        rec = self.rack.first_lost()
        if rec is None:
            return False
        off = self._skip_sacked(max(rec.start, self.snd_una))
        end = min(rec.end, self.sb.end)
        edge = self._next_sacked_start(off)
        if edge is not None and edge < end:
            end = edge
        limit = self.smss
        if self.p.max_payload > 2 * limit:  # TSO: whole MSS multiples up to ~64 KiB
            limit = self.p.max_payload - self.p.max_payload % limit
        n = min(end - off, limit, max(self.smss, budget - budget % self.smss))
        if off >= rec.end or (n <= 0 and not (self.fin_queued and off == self.sb.end)):
            # nothing of it is left to send (SACKed, or beyond the data): not lost any more
            self.rack.unmark(rec)
            return True
        self._send_data(off, max(n, 0), now)
        if off == self.snd_una:
            self.una_rtx_time = now
        self.host.count("tcp_fast_retransmit")
        if self.rtt_seq is not None and off < self.rtt_seq:
            self.rtt_seq = None  # Karn: never time a retransmitted segment
        return True

    def _retransmit_hole(self, now: float) -> bool:
        """NewReno fast recovery (no SACK): resend the next segment at or after ``rtx_next``."""
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
            self.una_rtx_time = now
        self.rtx_next = off + used
        self.host.count("tcp_fast_retransmit")
        if self.rtt_seq is not None and off < self.rtt_seq:
            self.rtt_seq = None  # Karn: never time a retransmitted segment
        return True

    def _reo_wnd(self) -> float:
        """RACK's reordering window (RFC 8985 6.2.4): a quarter of the minimum RTT per step,
        one more step per spurious retransmission detected, at most SRTT.  Zero while no
        reordering has been seen and the loss is plain (in recovery, or DupThresh segments
        SACKed above it): then waiting only delays the retransmission."""
        rto = self.rto
        if rto.min_rtt is None or rto.srtt is None:
            return 0.0
        if self.want_sack and not self.rack.reordering_seen and (
                self.in_recovery or self._sacked_bytes() >= 3 * self.smss):
            return 0.0
        # at least 1 ms, the timer granularity of RFC 6298 (and of Linux's RACK)
        return max(min(self.reo_steps * rto.min_rtt / 4, rto.srtt), _MIN_REO_WND)

    def _loss_indicated(self, ack: int, new_sack: bool) -> bool:
        """Whether a duplicate ACK (outside recovery) says SND.UNA's segment may be lost."""
        if (self.dupacks >= self._dupthresh()
                or (new_sack and self._sacked_bytes() >= self.reordering * self.smss)) \
                and (ack > self.recover or self.recover == 0
                     or (self.want_sack and ack == self.recover and self.sacked)):
            # RFC 6582's guard (the ACK must pass ``recover``) stops a second fast
            # retransmit caused by go-back-N duplicates; but it also blinds us to a
            # new loss at exactly ``recover``.  SACK blocks tell the two apart.
            return True
        # RACK (RFC 8985 6.2): with SACK, data sent after SND.UNA's segment has been
        # delivered, so it is lost unless merely reordered, whatever the number of
        # duplicate ACKs (a short flight, or lost ACKs, may never bring three) and
        # whatever ``recover`` says: :meth:`_suspect_loss` waits the reordering window,
        # and at least an RTT since SND.UNA's segment was last resent.
        return self.want_sack and bool(self.sacked) and self.rto.srtt is not None

    def _suspect_loss(self, ack: int, now: float) -> None:
        """Enough duplicate ACKs / SACKed bytes say SND.UNA's segment is missing; but on a
        jittery path it may merely be late.  As RACK does (RFC 8985 6.2), give it the
        reordering window before calling it lost: if the cumulative ACK moves in the
        meantime, no retransmission and no window cut happen (the timer is replaced by
        :meth:`_arm_rtx`); otherwise :meth:`_on_reorder_timeout` starts fast recovery."""
        if self.rack_armed:
            return
        wnd = self._reo_wnd()
        if wnd <= 0.0:
            self._enter_recovery(ack, now)
            return
        self.rack_armed = True
        self.tlp_armed = False
        deadline = now + wnd
        srtt = self.rto.srtt
        if srtt is not None and self.una_rtx_time + srtt + wnd > deadline:
            # SND.UNA's segment was resent less than an RTT ago (a go-back after a
            # timeout): its retransmission cannot have been answered yet
            deadline = self.una_rtx_time + srtt + wnd
        if self.t_rtx is None or deadline < self.t_rtx:
            self.t_rtx = deadline
        self.host.count("tcp_reorder_wait")

    # -- RACK-TLP and PRR (with SACK) ---------------------------------------------------

    def _rack_on_ack(self, acked: int, sacked_before: int, now: float) -> None:
        """After an ACK's scoreboard updates: RACK's loss detection, recovery entry, PRR's
        budget, and the retransmissions and new data it allows (RFC 8985 6.2, RFC 6937)."""
        if not self.sacked and not self.in_recovery:
            return  # nothing outstanding below delivered data: nothing to detect
        delivered = acked + self._sacked_bytes() - sacked_before
        timeout = self._rack_detect(now)
        if self.in_recovery:
            self._prr_step(max(delivered, 0))
            self._recover_holes(now)
        if timeout is not None:
            self._arm_reorder(now + timeout)

    def _rack_detect(self, now: float) -> float | None:
        """Mark what RACK finds lost; start fast recovery on the first loss."""
        if not self.sacked:
            return None
        rack = self.rack
        before = rack.lost_count
        relost = rack.relost_count
        timeout = rack.detect_loss(now, self._reo_wnd(), self.sacked)
        if rack.relost_count != relost:
            self.host.count("tcp_lost_retransmit")
        if rack.lost_count != before and not self.in_recovery and self.state in _SENDING:
            self._enter_rack_recovery(now)
        return timeout

    def _enter_rack_recovery(self, now: float) -> None:
        """RACK found a loss: cut the window once for this episode and let PRR pace the
        sending down to the new ``ssthresh``."""
        self.host.count("tcp_fast_recovery")
        self._remember_undo(self.snd_una, now)
        self.in_recovery = True
        self.recover = self.snd_max
        self.rtx_una_mark = None
        flight = self.snd_max - self.snd_una
        self.cc.enter_recovery(flight)
        self.prr.start(self.cc.ssthresh, flight)
        # RFC 8985 6.2.4: shrink the window back after 16 recoveries with no spurious one
        self.reo_calm += 1
        if self.reo_calm >= 16:
            self.reo_calm = 0
            self.reo_steps = 1

    def _prr_step(self, delivered: int) -> None:
        pipe = self._pipe()
        sndcnt = self.prr.on_ack(delivered, pipe, self.smss)
        if self.prr.out == 0 and sndcnt < self.smss:
            sndcnt = self.smss  # the fast retransmit itself always goes out
        self.cc.cwnd = pipe + sndcnt

    def _arm_reorder(self, deadline: float) -> None:
        """A suspect segment is still inside its reordering window: look again then."""
        if self.t_rtx is None or deadline < self.t_rtx or self.tlp_armed:
            self.rack_armed = True
            self.tlp_armed = False
            self.t_rtx = deadline
            self.host.count("tcp_reorder_wait")

    def _on_reorder_timeout(self, now: float) -> None:
        if self.want_sack:
            self.rack_armed = False
            if self.state not in _SENDING or self.snd_max <= self.snd_una:
                self._arm_rtx(now)
                return
            timeout = self._rack_detect(now)
            if self.in_recovery:
                if self.prr.out == 0:
                    self._prr_step(0)
                self._recover_holes(now)
                self._output(now)
            self._arm_rtx(now)
            if timeout is not None:
                self._arm_reorder(now + timeout)
            return
        self.rack_armed = False
        if (self.state in _SENDING and self.snd_max > self.snd_una and not self.in_recovery
                and self.dupacks > 0):
            self._enter_recovery(self.snd_una, now)
            # no ACK is being processed to send new data afterwards: do it here, or data
            # sent beyond this retransmission (which reveals its loss) waits for an ACK
            # that may never come
            self._output(now)
        else:
            self._arm_rtx(now)

    def _enter_recovery(self, ack: int, now: float) -> None:
        """Fast retransmit and recovery (RFC 5681 3.2, RFC 6675 with SACK)."""
        self.host.count("tcp_fast_recovery")
        self._remember_undo(ack, now)
        self.in_recovery = True
        self.recover = self.snd_max
        self.rtx_next = ack
        self.rtx_una_mark = None
        self.cc.enter_recovery(self.snd_max - ack)
        self._recover_holes(now)
        self.t_rtx = now + self.rto.current()
        # RFC 8985 6.2.4: shrink the window back after 16 recoveries with no spurious one
        self.reo_calm += 1
        if self.reo_calm >= 16:
            self.reo_calm = 0
            self.reo_steps = 1

    def _resend_lost_retransmit(self, now: float) -> None:
        """SND.UNA's retransmission was lost too: go over the holes again from SND.UNA.
        Resending SND.UNA's segment alone was tried: in the seeded simulations (5% loss)
        it lost 12% of the throughput (1.22 -> 1.08 MB/s), since the other holes' resends
        of the same round are often lost with it, and was no better through the injector."""
        self.host.count("tcp_lost_retransmit")
        self.rtx_next = self.snd_una

    def _arm_rtx(self, now: float) -> None:
        """Arm the retransmission timer, or first a tail-loss probe (RFC 8985 7): a loss at
        the end of a flight produces no duplicate ACKs, and a 200 ms RTO is dozens of RTTs
        on a LAN; a probe after ~2 SRTT turns it into a SACK-driven fast recovery.

        With SACK the probe is armed in fast recovery too (RFC 8985 7.2 does not): when a
        retransmission is lost and nothing sent after it is left to be SACKed, RACK has
        nothing to compare it with and only the RTO -- hundreds of RTTs on a LAN -- would
        find it; through 5% loss that was most of our timeouts."""
        self.rack_armed = False
        rto = self.rto.current()
        srtt = self.rto.srtt
        if (srtt is not None and not self.tlp_done
                and (not self.in_recovery or self.want_sack)
                and self.rtx_count == 0 and self.state in _SENDING):
            pto = max(2 * srtt, 0.01)
            if self.snd_max - self.snd_una <= self.smss:
                pto += DELAYED_ACK  # a lone segment may be waiting on a delayed ACK
            if pto < rto:
                self.tlp_armed = True
                self.t_rtx = now + pto
                return
        self.tlp_armed = False
        if self.want_sack and self.rtx_count == 0 and self.rack.segs:
            rto -= self._rto_restart_credit(now)
        self.t_rtx = now + rto

    def _rto_restart_credit(self, now: float) -> float:
        """RTO restart (RFC 7765): with fewer than four segments outstanding and nothing new
        to send (no more ACKs will come to clock the flight out), time the RTO from the
        earliest outstanding transmission rather than from this ACK, so a tail loss costs
        one RTO, not an RTO plus the time since that segment left."""
        if self.sb.end > self.snd_max or self.snd_max - self.snd_una >= 4 * self.smss:
            return 0.0
        earliest = min(rec.xmit for rec in self.rack.segs)
        return max(0.0, min(now - earliest, self.rto.current() - self.rto.min_rto))

    def _tail_loss_probe(self, now: float) -> None:
        """Resend the last segment of the flight (or send one new one) once."""
        self.tlp_armed = False
        self.tlp_done = True
        self.host.count("tcp_tail_loss_probe")
        data_end = self.sb.end
        # New data only within the peer's window: one MSS past its edge is dropped, and
        # a window that then closes leaves SND.MAX beyond it (see _acceptable_seq).
        usable = self.snd_una + self.snd_wnd - self.snd_max
        if self.snd_nxt == self.snd_max and data_end > self.snd_max and usable > 0:
            n = min(self.smss, data_end - self.snd_max, usable)
            used = self._send_data(self.snd_max, n, now, new_fin=True)
            self.snd_nxt = self.snd_max = self.snd_max + used
        elif self.in_recovery and self.sacked:
            # in recovery the last segment is SACKed already: probe the first hole instead
            start = self.snd_una
            end = min(start + self.smss, data_end, self.sacked[0][0])
            self._send_data(start, max(end - start, 0), now)
        else:
            end = min(self.snd_max, data_end)
            start = max(self.snd_una, end - self.smss)
            if end > start or self.snd_max > data_end:
                self._send_data(start, max(end - start, 0), now)
            if self.rtt_seq is not None and start < self.rtt_seq:
                self.rtt_seq = None
        self.t_rtx = now + self.rto.current()

    # -- loss detection: the SACK scoreboard and spurious retransmissions -----------------------

    def _pipe(self) -> int:
        """RFC 6675's estimate of bytes in the network: outstanding, minus SACKed, minus
        the holes we count as lost and have not resent (with SACK: what RACK marked)."""
        una = self.snd_una
        outstanding = self.snd_max - una
        if self.want_sack:
            return outstanding - self._sacked_bytes() - self.rack.lost_bytes
        if not self.sacked:
            return outstanding
        sacked = 0
        pending = 0
        cur = max(self.rtx_next, una)
        for s, e in self.sacked:
            sacked += e - s
            if s > cur:
                pending += s - cur
            if e > cur:
                cur = e
        return outstanding - sacked - pending

    def _recover_holes(self, now: float) -> None:
        """Resend lost holes while the pipe has room (NewReno: at least one per call)."""
        if self.want_sack:
            while self.rack.lost_bytes > 0:
                budget = self.cc.cwnd - self._pipe()
                if budget <= 0 or not self._retransmit_lost(now, budget):
                    break
            return
        sent = self._retransmit_hole(now)
        while sent and self.sacked and self._pipe() < self.cc.ssthresh:
            sent = self._retransmit_hole(now)

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
        """Before cutting cwnd for a loss, note what to restore if it proves spurious:
        by timestamps (Eifel) or, with SACK, by D-SACKs for every retransmission."""
        self.undo_cwnd = self.cc.cwnd
        self.undo_ssthresh = self.cc.ssthresh
        self.undo_seq = una
        if self.ts_enabled:
            self.undo_tsval = self._tsval(now)
        self.undo_ranges = []
        self.undo_retrans = 0 if self.want_sack else -1

    def _on_dsack(self, s: int, e: int) -> None:
        """A D-SACK (RFC 2883) for [s, e): if it is one of our retransmissions, that one
        was spurious.  One step more of RACK's reordering window per round trip (RFC 8985
        6.2.4); and once every retransmission of the episode is proved spurious, undo
        its window cut.  D-SACKs for ranges we never resent are network duplicates (the
        fault injector makes 1% of them) and move nothing."""
        ranges = self.undo_ranges
        hit = next((i for i, (rs, re) in enumerate(ranges) if rs <= s and e <= re), None)
        if hit is None:
            return
        del ranges[hit]
        self.host.count("tcp_dsack_spurious")
        if self.snd_una >= self.dsack_round_end:
            self.dsack_round_end = self.snd_max
            self.reo_steps = min(self.reo_steps + 1, MAX_REO_STEPS)
            self.reo_calm = 0
        if self.undo_retrans > 0:
            self.undo_retrans -= 1
            if self.undo_retrans == 0:
                self._undo_cut("tcp_dsack_undo")

    def _check_dsack(self, blocks: tuple[tuple[int, int], ...], ack: int) -> None:
        """D-SACK (RFC 2883): a first block below the cumulative ACK, or inside the second
        block, reports a duplicate rather than new data."""
        iss = self.iss
        ds = unwrap(blocks[0][0], iss, ack)
        de = unwrap(blocks[0][1], iss, ack)
        if de <= ack or (len(blocks) > 1 and unwrap(blocks[1][0], iss, ack) <= ds
                         and de <= unwrap(blocks[1][1], iss, ack)):
            self._on_dsack(ds, de)

    def _undo_cut(self, counter: str) -> None:
        """The episode's window cut was for nothing: restore what it was before."""
        self.host.count(counter)
        self.undo_retrans = -1
        self.undo_tsval = None
        self.cc.undo(self.undo_cwnd, self.undo_ssthresh)
        if self.in_recovery:
            self.in_recovery = False
            self.recover = self.snd_una
        self.rtx_una_mark = None

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
        self.reo_steps = min(self.reo_steps + 1, MAX_REO_STEPS)
        self.reo_calm = 0
        if self.sacked and self.sacked[-1][1] > ack:
            # Other holes remain: some of this episode's losses are real, so the window
            # cut stands; keep recovering them.
            self.host.count("tcp_spurious_retransmit")
            return False
        self.host.count("tcp_spurious_retransmit_undone")
        self.cc.undo(self.undo_cwnd, self.undo_ssthresh)
        self.in_recovery = False
        self.recover = ack  # lets a real loss right after this start fast recovery
        self.rtx_una_mark = None
        return True

    def _update_sacked(self, blocks: tuple[tuple[int, int], ...], ack: int,
                       now: float) -> bool:
        iss = self.iss
        changed: list[tuple[int, int]] = []
        # an old (reordered) ACK may lie below SND.UNA: SACK information below SND.UNA is
        # meaningless, and kept it would count as delivered data that is not outstanding
        if ack < self.snd_una:
            ack = self.snd_una
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
                changed.append((s, e))
        if changed:
            self.rack.on_sacked(changed, now, self.rto.min_rtt, self.sacked)
        return bool(changed)

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
