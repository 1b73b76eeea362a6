"""Input: what a connection does with each segment the layer hands it.

:class:`Receiver` implements RFC 9293 3.10.7 for SYN_SENT and for the synchronized states,
with RFC 7323 PAWS, the RFC 5961 checks (RST only at exactly RCV.NXT, challenge ACKs for
in-window RSTs and any SYN, the ACK range check), ACK processing (window update, RTT, the
congestion controller and fast recovery), in-order and out-of-order data, the delayed-ACK
and quick-ACK policy, and the FIN.
"""

from __future__ import annotations

import errno

from vipernet.stack.tcp.params import DELAYED_ACK, QUICKACKS
from vipernet.stack.tcp.segment import ACK, FIN, RST, SYN, Segment, build_segment
from vipernet.stack.tcp.sender import Sender
from vipernet.stack.tcp.seq import HALF, MASK, unwrap
from vipernet.stack.tcp.state import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    RECEIVING,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
)


class Receiver(Sender):
    __slots__ = ()

    def on_segment(self, seg: Segment, now: float) -> None:
        st = self.state
        if st == SYN_SENT:
            self._on_syn_sent(seg, now)
        elif st != CLOSED:
            self._on_synchronized(seg, now)
        if self.state != CLOSED:
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
            self._set_state(ESTABLISHED, now)
            self._restart_keepalive(now)
            self.send_ack(now)
            self._output(now)
        else:
            # simultaneous open (RFC 9293 3.5 figure 7)
            self._set_state(SYN_RECEIVED, now)
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
        if (st == SYN_RECEIVED and not self.passive and f & SYN and f & ACK and seq == 0
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
            if st == SYN_RECEIVED:
                if f & SYN and seq == 0:
                    self.host.count("tcp_syn_retransmitted")
                    self._send_syn(now, ack=True)
                return
            self.host.count("tcp_segment_out_of_window")
            if plen and seq < rcv_nxt:
                self.dsack = (seq, min(seq + plen, rcv_nxt))
            if st == TIME_WAIT and f & FIN:
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
            if st == SYN_RECEIVED and self.passive:
                self._set_state(CLOSED, now)
            elif st == SYN_RECEIVED:
                self._fail(errno.ECONNREFUSED, now)
            elif st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
                self._fail(errno.ECONNRESET, now)
            else:
                self._set_state(CLOSED, now)
            return
        # SYN in a synchronized state (RFC 5961 4.2): challenge ACK, whatever its sequence
        if f & SYN:
            self._challenge_ack(now)
            return
        if not f & ACK:
            self.host.count("tcp_no_ack_drop")
            return
        ack = unwrap(seg.ack, self.iss, self.snd_una)
        if st == SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self.host.count("tcp_syn_received_bad_ack")
                self._rst_for(seg, now)
                return
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self._set_state(ESTABLISHED, now)
            self._restart_keepalive(now)
            st = ESTABLISHED
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
        if self.state == CLOSED:
            return
        st = self.state
        fin_acked = self.fin_queued and self.snd_una > self.sb.end
        if fin_acked:
            if st == FIN_WAIT_1:
                self._set_state(FIN_WAIT_2, now)
                if self.orphan:
                    self.t_wait = now + self.host.fin_timeout
                st = FIN_WAIT_2
            elif st == CLOSING:
                self._set_state(TIME_WAIT, now)
                return
            elif st == LAST_ACK:
                self._set_state(CLOSED, now)
                return
        if st == TIME_WAIT:
            if f & FIN:
                self.send_ack(now)
                self.t_wait = now + 2 * self.host.msl
            return
        # segment text (RFC 9293 3.10.7.4 seventh) and FIN
        ack_now = False
        if plen or f & FIN:
            ack_now = self._process_data(seg, seq, payload, now)
        if self.state == CLOSED:
            return
        self._output(now)
        if ack_now:
            self.send_ack(now)
        elif self.delack_segs and self.t_delack is None:
            self.t_delack = now + DELAYED_ACK

    def _process_ack(self, seg: Segment, seq: int, ack: int, plen: int, now: float) -> None:
        snd_una = self.snd_una
        new_sack = False
        rack_mode = self.want_sack  # RACK-TLP + PRR; NewReno's duplicate ACKs without SACK
        sacked_before = self._sacked_bytes() if rack_mode and self.sacked else 0
        if rack_mode and seg.sack_blocks and self.undo_ranges:
            self._check_dsack(seg.sack_blocks, ack)
        if rack_mode and seg.sack_blocks and self.snd_max > ack:
            new_sack = self._update_sacked(seg.sack_blocks, ack, now)
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
                if self.cc.cwnd < self.cc.ssthresh:
                    self.cc.on_rtt(now - self.rtt_time, ack, self.snd_max)
            self.sb.ack_to(ack)
            self.snd_una = ack
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            if self.sacked:
                self._prune_sacked(ack)
            if rack_mode:
                self.rack.on_cumulative_ack(ack, now, self.rto.min_rtt)
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
                elif not rack_mode:
                    self.cc.on_partial_ack(acked)
                    self._recover_holes(now)
            else:
                self.cc.on_ack(acked, flight_before, now, self.rto.srtt)
            self.tlp_done = False
            if self.snd_una >= self.snd_max:
                self.t_rtx = None
                self.tlp_armed = False
            else:
                self._arm_rtx(now)
            if self.socket is not None:
                self.host.notify(self)
        elif (ack == snd_una and self.snd_max > snd_una and (plen == 0 or new_sack)
              and not seg.flags & (SYN | FIN) and (not window_changed or new_sack)):
            # RFC 6675 2: with SACK, a duplicate ACK is one that SACKs new data, even
            # when it carries data of its own (both directions busy)
            self.dupacks += 1
            if rack_mode:
                pass  # RACK below looks at what the SACK blocks delivered
            elif self.in_recovery:
                self.cc.on_dupack_in_recovery()
                mark = self.rtx_una_mark
                if (mark is not None and self.sacked and self.sacked[-1][1] > mark
                        and self.snd_una < mark):
                    # Data sent after our retransmission of SND.UNA's segment has been
                    # SACKed while SND.UNA stands still: the retransmission was lost too.
                    # Resend it now instead of waiting for the RTO.
                    self._resend_lost_retransmit(now)
                self._recover_holes(now)
            elif self._loss_indicated(ack, new_sack):
                self._suspect_loss(ack, now)
        if rack_mode and self.snd_max > self.snd_una:
            self._rack_on_ack(ack - snd_una if ack > snd_una else 0, sacked_before, now)

    def _process_data(self, seg: Segment, seq: int, payload: memoryview | bytes,
                      now: float) -> bool:
        """Queue in-window data; returns whether to ACK at once."""
        st = self.state
        f = seg.flags
        if st not in RECEIVING:
            return False  # after the peer's FIN nothing more may arrive; ignore
        plen = len(payload)
        fin = bool(f & FIN)
        if plen:
            if seq < self.rcv_nxt:
                self.dsack = (seq, self.rcv_nxt)
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
            if st == ESTABLISHED:
                self._set_state(CLOSE_WAIT, now)
            elif st == FIN_WAIT_1:
                if self.fin_queued and self.snd_una > self.sb.end:
                    self._set_state(TIME_WAIT, now)
                else:
                    self._set_state(CLOSING, now)
            elif st == FIN_WAIT_2:
                self._set_state(TIME_WAIT, now)
            self.host.notify(self)
        return ack_now
