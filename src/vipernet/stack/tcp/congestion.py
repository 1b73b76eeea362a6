"""Congestion control: the interface the engine drives, and the algorithms by name.

Each algorithm is one module (:mod:`newreno`, :mod:`cubic`) implementing
:class:`CongestionControl` in bytes; :func:`make_congestion` builds one by the name a socket
option chose.  The connection tells the controller about acknowledged bytes, RTT samples,
the start and end of fast recovery, timeouts and undone cuts; the controller owns ``cwnd``
and ``ssthresh`` -- except during SACK recovery, where PRR (:mod:`prr`) sets ``cwnd`` per
ACK from the ``ssthresh`` the controller chose.  A new algorithm needs only a module with a
class of this shape and an entry in :data:`ALGORITHMS`.
"""

from __future__ import annotations

from typing import Protocol

from vipernet.stack.tcp.cubic import Cubic
from vipernet.stack.tcp.newreno import NewReno
from vipernet.stack.tcp.params import INITIAL_WINDOW_SEGMENTS

__all__ = ["ALGORITHMS", "INITIAL_WINDOW_SEGMENTS", "CongestionControl", "Cubic", "NewReno",
           "make_congestion"]


class CongestionControl(Protocol):
    name: str
    cwnd: int
    ssthresh: int
    mss: int

    def set_mss(self, mss: int) -> None: ...
    def on_rtt(self, rtt: float, ack: int, snd_max: int) -> None: ...
    def on_ack(self, acked: int, flight: int, now: float = 0.0,
               srtt: float | None = None) -> None: ...
    def enter_recovery(self, flight: int) -> None: ...
    def on_dupack_in_recovery(self) -> None: ...
    def on_partial_ack(self, acked: int) -> None: ...
    def exit_recovery(self, flight: int) -> None: ...
    def on_timeout(self, flight: int) -> None: ...
    def undo(self, cwnd: int, ssthresh: int) -> None: ...


ALGORITHMS: dict[str, type[NewReno]] = {"newreno": NewReno, "cubic": Cubic}


def make_congestion(name: str, mss: int) -> CongestionControl:
    """The controller called ``name`` (unknown names get the default, NewReno)."""
    return ALGORITHMS.get(name, NewReno)(mss)
