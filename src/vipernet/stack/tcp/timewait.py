"""A compact TIME_WAIT record: what is left of a connection nobody holds a socket for.

TIME_WAIT lasts 2*MSL (60 s), so a server or client cycling thousands of connections a second
holds tens of thousands of them.  Once the application has closed its socket, the layer
swaps the full :class:`Connection` for this small record: the two sequence numbers, the
timestamp state and the deadline.  It answers exactly what RFC 9293 3.10.7.4 asks of
TIME_WAIT: a retransmitted FIN is acknowledged again and restarts the 2*MSL timer, other
segments with data get an ACK, an exact RST ends it early, and a SYN for a listening port is
the layer's business (TIME_WAIT reuse).
"""

from __future__ import annotations

import logging
from typing import Protocol

from vipernet.stack.tcp.segment import ACK, FIN, RST, SYN, Segment, build_segment, data_options
from vipernet.stack.tcp.seq import MASK, unwrap
from vipernet.stack.tcp.state import TcpState

log = logging.getLogger("vipernet.tcp")


class TimeWaitHost(Protocol):
    """What a TIME_WAIT record needs from its layer: a part of ``tcb.ConnectionHost``, so
    this module stays below the connection modules (which name :class:`TimeWait`)."""

    msl: float

    def transmit(self, conn: TimeWait, segment: bytearray, payload_len: int,
                 now: float) -> None: ...
    def arm(self, conn: TimeWait, deadline: float) -> None: ...
    def state_changed(self, conn: TimeWait, old: TcpState, new: TcpState,
                      now: float) -> None: ...
    def count(self, name: str) -> None: ...


class EndedConnection(Protocol):
    """The fields of the connection (a ``tcb.Tcb``) a record is made from."""

    @property
    def host(self) -> TimeWaitHost: ...

    local_ip: int
    local_port: int
    remote_ip: int
    remote_port: int
    iss: int
    snd_max: int
    irs: int
    rcv_nxt: int
    rcv_adv: int
    rcv_wscale: int
    ts_enabled: bool
    ts_offset: int
    ts_ms: int
    ts_recent: int
    t_wait: float | None


class TimeWait:
    __slots__ = ("host", "irs", "local_ip", "local_port", "rcv_nxt", "remote_ip", "remote_port",
                 "scheduled", "snd_wire", "state", "t_wait", "ts_enabled", "ts_ms",
                 "ts_offset", "ts_recent", "window")

    # Attributes the layer reads on any table entry.
    port_ref = False
    listener = None
    socket = None
    smss = 536

    def __init__(self, conn: EndedConnection) -> None:
        self.host = conn.host
        self.state = TcpState.TIME_WAIT
        self.local_ip = conn.local_ip
        self.local_port = conn.local_port
        self.remote_ip = conn.remote_ip
        self.remote_port = conn.remote_port
        self.irs = conn.irs
        self.rcv_nxt = conn.rcv_nxt
        self.snd_wire = (conn.iss + conn.snd_max) & MASK
        self.ts_enabled = conn.ts_enabled
        self.ts_offset = conn.ts_offset
        self.ts_ms = conn.ts_ms
        self.ts_recent = conn.ts_recent
        win = max(conn.rcv_adv - conn.rcv_nxt, 0) >> conn.rcv_wscale
        self.window = min(win, 0xFFFF)
        self.t_wait = conn.t_wait
        self.scheduled: float | None = None

    def __repr__(self) -> str:
        return f"<TimeWait {self.local_port}->{self.remote_port}>"

    def arm(self) -> None:
        if self.t_wait is not None and (self.scheduled is None or self.t_wait < self.scheduled):
            self.scheduled = self.t_wait
            self.host.arm(self, self.t_wait)

    def _set_state(self, new: TcpState, now: float) -> None:
        if new == self.state:
            return
        old = self.state
        self.state = new
        self.t_wait = None
        self.host.state_changed(self, old, new, now)

    def on_timer(self, now: float) -> None:
        self.scheduled = None
        if self.t_wait is not None and self.t_wait <= now:
            self._set_state(TcpState.CLOSED, now)
        else:
            self.arm()

    def on_segment(self, seg: Segment, now: float) -> None:
        f = seg.flags
        seq = unwrap(seg.seq, self.irs, self.rcv_nxt)
        if f & RST:
            if seq == self.rcv_nxt:
                self.host.count("tcp_time_wait_rst")
                self._set_state(TcpState.CLOSED, now)
            return
        if f & FIN:
            self.host.count("tcp_time_wait_fin_reacked")
            self.t_wait = now + 2 * self.host.msl
            self._ack(now)
            self.arm()
        elif f & SYN or len(seg.payload):
            self._ack(now)

    def _ack(self, now: float) -> None:
        self.ts_ms = max(self.ts_ms, int(now * 1000))  # monotonic, as Tcb._tsval
        opts = (data_options(((self.ts_ms + self.ts_offset) & MASK, self.ts_recent), None)
                if self.ts_enabled else b"")
        out = build_segment(src_port=self.local_port, dst_port=self.remote_port,
                            seq=self.snd_wire, ack=(self.irs + self.rcv_nxt) & MASK, flags=ACK,
                            window=self.window, options=opts)
        self.host.transmit(self, out, 0, now)
