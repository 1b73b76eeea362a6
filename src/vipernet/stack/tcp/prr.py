"""Proportional Rate Reduction (RFC 6937, with the slow-start reduction bound PRR-SSRB).

During fast recovery PRR decides how much may be sent per ACK, so that by the end of the
recovery the data in flight has come down to ``ssthresh`` smoothly -- about one segment sent
per two delivered with NewReno's cut, seven per ten with CUBIC's -- instead of NewReno's
silence for half a window followed by a burst.  If the pipe falls below ``ssthresh`` (more
was lost than the cut), PRR-SSRB lets it grow back by at most one segment more than was
delivered per ACK, like slow start.

Sans-IO: the sender feeds :meth:`Prr.on_ack` the bytes each ACK delivered and the pipe, and
:meth:`Prr.on_sent` every byte it sends in recovery; ``sndcnt`` is what may go out now.
"""

from __future__ import annotations


class Prr:
    __slots__ = ("delivered", "out", "recover_fs", "sndcnt", "ssthresh")

    def __init__(self) -> None:
        self.delivered = 0  # prr_delivered
        self.out = 0  # prr_out
        self.recover_fs = 1
        self.ssthresh = 0
        self.sndcnt = 0

    def start(self, ssthresh: int, flight: int) -> None:
        """Recovery begins with ``flight`` bytes outstanding (RecoverFS)."""
        self.delivered = 0
        self.out = 0
        self.recover_fs = max(flight, 1)
        self.ssthresh = ssthresh
        self.sndcnt = 0

    def on_ack(self, delivered: int, pipe: int, mss: int) -> int:
        """An ACK in recovery delivered ``delivered`` bytes (cumulatively or by SACK) and
        left ``pipe`` in flight; returns (and stores) the bytes that may be sent now."""
        self.delivered += delivered
        if pipe > self.ssthresh:
            # proportional part: ceil(prr_delivered * ssthresh / RecoverFS) - prr_out
            sndcnt = -(-self.delivered * self.ssthresh // self.recover_fs) - self.out
        else:
            limit = max(self.delivered - self.out, delivered) + mss  # PRR-SSRB
            sndcnt = min(self.ssthresh - pipe, limit)
        if sndcnt < 0:
            sndcnt = 0
        self.sndcnt = sndcnt
        return sndcnt

    def on_sent(self, nbytes: int) -> None:
        self.out += nbytes
        self.sndcnt = max(self.sndcnt - nbytes, 0)
