"""A listening endpoint: the SYN queue (half-open connections) and the accept queue.

Each SYN to a listening port creates a full :class:`Connection` in SYN_RECEIVED (no SYN
cookies: the queues are bounded instead).  When its handshake completes the connection
moves to the accept queue, where ``accept()`` finds it.  A SYN that arrives while the accept
queue is full is dropped, not reset, so the peer retries later (as Linux does); so is a SYN
beyond the SYN-queue bound.
"""

from __future__ import annotations

from collections import deque

from vipernet.stack.tcp.connection import Connection, ConnectionParams

SYN_QUEUE_MIN = 128


class Listener:
    __slots__ = ("accept_queue", "backlog", "params", "port", "socket", "syn_queue")

    def __init__(self, port: int, backlog: int, params: ConnectionParams,
                 socket: object) -> None:
        self.port = port
        self.backlog = max(1, min(backlog, 65535))
        self.params = params
        self.socket = socket
        self.syn_queue: set[Connection] = set()
        self.accept_queue: deque[Connection] = deque()

    def can_take_syn(self) -> bool:
        return (len(self.accept_queue) < self.backlog
                and len(self.syn_queue) < max(SYN_QUEUE_MIN, self.backlog))

    def add_half_open(self, conn: Connection) -> None:
        conn.listener = self
        self.syn_queue.add(conn)

    def established(self, conn: Connection) -> None:
        self.syn_queue.discard(conn)
        self.accept_queue.append(conn)

    def forget(self, conn: Connection) -> None:
        """A queued connection died before accept().

        A half-open one simply disappears; one already in the accept queue stays there, so
        accept() returns it and the application sees ECONNRESET, as on Linux."""
        self.syn_queue.discard(conn)

    def pop(self) -> Connection | None:
        if not self.accept_queue:
            return None
        conn = self.accept_queue.popleft()
        conn.listener = None
        return conn
