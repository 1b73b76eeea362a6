"""RACK (RFC 8985): time-based loss detection over per-segment transmit records.

Every transmission of data (new or resent) is recorded: its sequence range, when it left
and a transmit counter.  When an ACK or SACK delivers a segment, RACK remembers the most
recently *sent* delivered segment (``xmit_ts``/``xmit_order``) and the RTT measured from it
(``rtt``).  Any segment still outstanding that was sent before that one and has not been
delivered within ``rtt + reo_wnd`` of its own transmission is lost -- whether it is SND.UNA's
segment, a hole far up the window or a retransmission that was lost again.  A segment still
inside its window arms the reordering timer (:meth:`RackScoreboard.detect_loss` returns the
time left).

Choices worth knowing:

* **Ties are broken by a transmit counter, not by the end sequence number** (RFC 8985 6.2
  uses end_seq).  A virtual-time simulation, or a burst handled in one runtime iteration,
  sends many segments at one clock reading, including a retransmission followed by new data;
  by end_seq the resend would look older than the new data and be declared lost at once.
* **Records are kept in sequence order** (a list searched by ``bisect``), and detection walks
  them up to RACK's segment.  On the loss-free path a record is one append per segment sent
  (64 KiB with TSO) and one slice deletion per ACK.
* ``lost_bytes`` (un-SACKed bytes of segments marked lost and not yet resent) is kept exact so
  the pipe estimate (RFC 6675 with RACK's marks) costs nothing to read.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter

_START = attrgetter("start")


class SentSegment:
    """One transmission of bytes [start, end) (the FIN counts as one byte)."""

    __slots__ = ("end", "lost", "lost_bytes", "order", "retransmitted", "sacked", "start",
                 "xmit")

    def __init__(self, start: int, end: int, xmit: float, order: int) -> None:
        self.start = start
        self.end = end
        self.xmit = xmit
        self.order = order
        self.retransmitted = False
        self.lost = False
        self.lost_bytes = 0  # when lost: its un-SACKed bytes, counted in the pipe as gone
        self.sacked = False  # some part of it has been SACKed


def _unsacked(start: int, end: int, sacked: list[list[int]]) -> int:
    """Bytes of [start, end) no SACK block covers (``sacked`` sorted and disjoint)."""
    left = end - start
    for s, e in sacked:
        if e <= start:
            continue
        if s >= end:
            break
        left -= min(e, end) - max(s, start)
    return left


class RackScoreboard:
    """Per-segment transmit records and RACK's state for one connection (sans-IO: every
    call gets the time)."""

    __slots__ = ("end_seq", "fack", "lost_bytes", "lost_count", "order", "relost_count",
                 "reordering_seen", "rtt", "segs", "xmit_order", "xmit_ts")

    def __init__(self) -> None:
        self.segs: list[SentSegment] = []
        self.order = 0
        self.rtt = 0.0  # RACK.rtt: RTT of the most recently sent delivered segment
        self.xmit_ts = -1.0  # RACK.xmit_ts
        self.xmit_order = -1  # tie-breaker for xmit_ts (see the module docstring)
        self.end_seq = 0  # RACK.end_seq
        self.fack = 0  # highest sequence delivered (cumulatively or by SACK)
        self.reordering_seen = False
        self.lost_bytes = 0
        self.lost_count = 0  # segments marked lost (ever), for the caller's statistics
        self.relost_count = 0  # of them, retransmissions that were lost again

    # -- transmissions ------------------------------------------------------------------

    def on_transmit(self, start: int, end: int, now: float) -> None:
        """Bytes [start, end) left now: new data, or a retransmission of recorded bytes."""
        self.order += 1
        segs = self.segs
        if not segs or start >= segs[-1].end:
            segs.append(SentSegment(start, end, now, self.order))
            return
        # A retransmission: restamp every record it covers, splitting at its edges so
        # that each record stays one transmission of one range.
        i = bisect_right(segs, start, key=_START) - 1
        if i < 0:
            i = 0
        while i < len(segs) and segs[i].start < end:
            rec = segs[i]
            if rec.end <= start:
                i += 1
                continue
            if rec.start < start:
                segs.insert(i + 1, self._split(rec, start))
                i += 1
                continue
            if rec.end > end:
                segs.insert(i + 1, self._split(rec, end))
            if rec.lost:
                rec.lost = False
                self.lost_bytes -= rec.lost_bytes
                rec.lost_bytes = 0
            rec.xmit = now
            rec.order = self.order
            rec.retransmitted = True
            i += 1
        if end > segs[-1].end:  # past what was recorded (the FIN, or new data after it)
            segs.append(SentSegment(segs[-1].end, end, now, self.order))

    @staticmethod
    def _split(rec: SentSegment, at: int) -> SentSegment:
        """Cut ``rec`` at ``at``; returns the upper part (the lower stays ``rec``)."""
        upper = SentSegment(at, rec.end, rec.xmit, rec.order)
        upper.retransmitted = rec.retransmitted
        upper.sacked = rec.sacked
        rec.end = at
        if rec.lost:
            # pro rata: exact per part only without SACKed bytes inside, but the parts
            # always sum to what was counted, so ``lost_bytes`` returns to zero exactly
            upper.lost = True
            upper.lost_bytes = rec.lost_bytes * (upper.end - at) // (upper.end - rec.start)
            rec.lost_bytes -= upper.lost_bytes
        return upper

    # -- deliveries ---------------------------------------------------------------------

    def _delivered(self, rec: SentSegment, now: float, min_rtt: float | None,
                   fack_before: int) -> None:
        """RFC 8985 6.1-6.2 steps 1-3 for one newly delivered record."""
        if not rec.retransmitted and rec.end < fack_before:
            self.reordering_seen = True  # delivered below what was already delivered
        rtt = now - rec.xmit
        if rec.retransmitted and min_rtt is not None and rtt < min_rtt:
            return  # too soon to be the retransmission's ACK: the original's, ambiguous
        if rec.xmit > self.xmit_ts or (rec.xmit == self.xmit_ts
                                        and rec.order > self.xmit_order):
            self.xmit_ts = rec.xmit
            self.xmit_order = rec.order
            self.end_seq = rec.end
            self.rtt = rtt

    def on_cumulative_ack(self, ack: int, now: float, min_rtt: float | None) -> None:
        """Everything below ``ack`` arrived: drop its records, learn from the newest."""
        segs = self.segs
        fack = self.fack
        n = 0
        for rec in segs:
            if rec.end > ack:
                break
            n += 1
        if n:
            # only the most recently sent of them can move RACK, but every one of them
            # must be checked for reordering and give back its lost bytes
            for rec in segs[:n]:
                if rec.lost:
                    self.lost_bytes -= rec.lost_bytes
                if not rec.sacked:
                    self._delivered(rec, now, min_rtt, fack)
            del segs[:n]
        if segs and segs[0].start < ack:
            head = segs[0]
            if not head.sacked:
                self._delivered(head, now, min_rtt, fack)
            head.start = ack
        if ack > self.fack:
            self.fack = ack

    def on_sacked(self, blocks: list[tuple[int, int]], now: float, min_rtt: float | None,
                  sacked: list[list[int]]) -> None:
        """Ranges newly SACKed (``sacked`` is the scoreboard after merging them)."""
        fack = self.fack
        segs = self.segs
        for s, e in blocks:
            i = bisect_right(segs, s, key=_START) - 1
            if i < 0:
                i = 0
            while i < len(segs) and segs[i].start < e:
                rec = segs[i]
                i += 1
                if rec.end <= s:
                    continue
                if not rec.sacked:
                    rec.sacked = True
                    self._delivered(rec, now, min_rtt, fack)
                if rec.lost:  # SACKed after all: what is still missing of it shrank
                    left = _unsacked(rec.start, rec.end, sacked)
                    self.lost_bytes -= rec.lost_bytes - left
                    rec.lost_bytes = left
                    if not left:
                        rec.lost = False
            if e > self.fack:
                self.fack = e

    def unmark(self, rec: SentSegment) -> None:
        """``rec`` turned out to need no resend (nothing of it is left unSACKed)."""
        if rec.lost:
            rec.lost = False
            self.lost_bytes -= rec.lost_bytes
            rec.lost_bytes = 0

    def forget_sacks(self) -> None:
        """The receiver may have reneged (a second RTO): no record counts as SACKed."""
        for rec in self.segs:
            rec.sacked = False

    def clear_lost(self) -> None:
        """After an RTO everything outstanding is resent from SND.UNA anyway."""
        for rec in self.segs:
            rec.lost = False
            rec.lost_bytes = 0
        self.lost_bytes = 0

    # -- detection ----------------------------------------------------------------------

    def detect_loss(self, now: float, reo_wnd: float, sacked: list[list[int]]) -> float | None:
        """Mark lost every un-SACKed record sent before RACK's segment and older than
        ``rtt + reo_wnd`` (RFC 8985 6.2 step 5).  Returns the time until the oldest record
        still inside its window expires (arm the reordering timer), or None."""
        if self.xmit_ts < 0:
            return None
        limit = self.rtt + reo_wnd
        xmit_ts = self.xmit_ts
        xmit_order = self.xmit_order
        end_seq = self.end_seq
        timeout: float | None = None
        j = 0
        nblocks = len(sacked)
        for rec in self.segs:
            if rec.start >= end_seq and not rec.retransmitted:
                break  # first sent after RACK's segment, and so is everything above
            if rec.lost:
                continue
            if rec.xmit > xmit_ts or (rec.xmit == xmit_ts and rec.order >= xmit_order):
                continue  # sent after (or is) RACK's segment
            while j < nblocks and sacked[j][1] <= rec.start:
                j += 1
            if j < nblocks and sacked[j][0] <= rec.start and sacked[j][1] >= rec.end:
                continue  # fully SACKed
            remaining = rec.xmit + limit - now
            if remaining <= 0:
                left = _unsacked(rec.start, rec.end, sacked[j:])
                if left:
                    rec.lost = True
                    rec.lost_bytes = left
                    self.lost_bytes += left
                    self.lost_count += 1
                    if rec.retransmitted:
                        self.relost_count += 1
            elif timeout is None or remaining < timeout:
                timeout = remaining
        return timeout

    def first_lost(self) -> SentSegment | None:
        for rec in self.segs:
            if rec.lost:
                return rec
        return None
