"""The stall watchdog: connections that owe something and have made no progress.

A connection that stops for good is the worst thing a stack can do, and the hardest to
see from outside: the socket table looks healthy (ESTABLISHED, nothing queued) while the
peer retransmits into silence.  The watchdog looks at every socket once a second and
compares a *progress signature* with the one it saw before: how far the peer
acknowledged our data, how far we received theirs, how much the application read and
wrote.  A socket whose
signature has not changed for :data:`STALL_AFTER` seconds **while it owes something** is
stalled.  Owing something means one of:

* data we sent is unacknowledged (``SND.UNA < SND.MAX``) — the peer or the path is gone,
  or our retransmission machinery is;
* the peer's data waits on a hole (out-of-order bytes queued) or for our ACK;
* (checked apart, by :meth:`NetService.sweep`) a parked request that could be answered
  now — a RECV on a readable socket, a SEND on a writable one: netd failed to wake it,
  which must never happen.  Every sweep retries the parked socket requests of sockets
  that made no progress; one answered that way is counted (``watchdog.lost_wakeups``),
  so a lost wake-up costs a second, not the connection.

An idle connection with a parked RECV and nothing in flight owes nothing: the peer is
simply quiet (an idle SSH session), so it is never reported.

What it reports: ``stalled`` (seconds without progress) on the socket's row of
``vipernet stat``, the gauge ``watchdog.stalled`` (sockets stalled now) and the counter
``watchdog.stalls`` (sockets that became stalled) in ``vipernet info --counters``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vipernet.stack.socket_api import StackSocket

STALL_AFTER = 10.0  # seconds without progress, while owing something, before a stall
SWEEP_EVERY = 1.0  # how often the watchdog looks


@dataclass(slots=True)
class _Progress:
    signature: tuple[int, ...]
    since: float
    reported: bool = False


class Watchdog:
    """Progress bookkeeping for the sockets of one :class:`~vipernet.netd.service.NetService`."""

    __slots__ = ("_count", "_progress", "next_sweep", "stall_after", "stalled")

    def __init__(self, count: Callable[[str, int], None], *,
                 stall_after: float = STALL_AFTER) -> None:
        self._count = count
        self._progress: dict[int, _Progress] = {}
        self.stall_after = stall_after
        self.stalled: dict[int, float] = {}  # sock id -> seconds without progress
        self.next_sweep = 0.0

    def sweep(self, now: float, sockets: Iterable[tuple[int, StackSocket]]) -> list[int]:
        """Look at every ``(sock id, socket)``; returns the ids of the sockets without
        progress since the last sweep (their parked requests get retried)."""
        self.next_sweep = now + SWEEP_EVERY
        seen: dict[int, _Progress] = {}
        stalled: dict[int, float] = {}
        unchanged: list[int] = []
        for sock_id, sock in sockets:
            signature = _tcp_signature(sock)
            old = self._progress.get(sock_id)
            if old is None or old.signature != signature:
                seen[sock_id] = _Progress(signature, now)
                continue
            seen[sock_id] = old
            unchanged.append(sock_id)
            if not _owes(sock):
                old.since = now  # nothing owed: quiet, not stuck
                old.reported = False
                continue
            idle = now - old.since
            if idle >= self.stall_after:
                stalled[sock_id] = round(idle, 1)
                if not old.reported:
                    old.reported = True
                    self._count("watchdog.stalls", 1)
        self._progress = seen  # sockets gone since the last sweep are forgotten here
        self.stalled = stalled
        return unchanged


def _tcp_signature(sock: StackSocket) -> tuple[int, ...]:
    conn = getattr(sock, "connection", None)
    if conn is None or not hasattr(conn, "snd_una"):
        return ()
    return (conn.snd_una, conn.snd_max, conn.rcv_nxt, conn.rb.size, len(conn.sb),
            conn.rb.ooo_bytes)


def _owes(sock: StackSocket) -> bool:
    conn = getattr(sock, "connection", None)
    if conn is None or not hasattr(conn, "snd_una"):
        return False
    if conn.state.name in ("CLOSED", "TIME_WAIT", "LISTEN"):
        return False
    return bool(conn.snd_max > conn.snd_una or conn.rb.ooo_bytes
                or conn.rcv_nxt > conn.last_ack_sent)
