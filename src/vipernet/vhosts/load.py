"""The load generator behind ``vipernet load``: N virtual hosts x C connections each.

:class:`LoadRun` is driven by :class:`~.loop.HostsLoop` (its :meth:`LoadRun.on_turn` is
the loop's ``on_turn``) and works the hosts' stack sockets directly, without threads:
every connection is a small state machine stepped when the switch reports its socket
changed.  Each of the N x C *slots* runs one connection at a time and opens the next when
one ends, until ``count`` connections were started or ``duration`` has passed.

Patterns: ``connect`` (handshake, then close) and ``http-get`` (handshake, one
``GET`` with ``Connection: close``, the response read to end of stream; a status outside
2xx/3xx counts as an error).  At most ``max_connecting`` handshakes are under way at once:
a burst of thousands of SYNs (and as many ARP requests) overruns the receiving kernel's
backlog queue (``netdev_max_backlog``, 1000) and is then measured as loss, not as load.

Latencies: *connect* is from the SYN being queued to the connection being established;
*request* from the request being queued to the end of the response.  Errors are counted
by kind: the errno name the stack reported (``ECONNREFUSED``, ``ETIMEDOUT``,
``EHOSTUNREACH``...), ``connect_timeout`` / ``request_timeout`` (our own limits), or
``bad_response`` / ``http_<status>``.
"""

from __future__ import annotations

import errno
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from vipernet.vhosts.host_stack import HostStack
from vipernet.vhosts.switch import VirtualHosts

PATTERNS = ("connect", "http-get")
_RECV_CHUNK = 65536
_TIMEOUT_SCAN = 0.1  # how often open connections are checked against their time limits


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    target: tuple[str, int]
    connections: int = 1  # per host, at once
    pattern: str = "connect"
    count: int | None = None  # connections to start in all (None: one per slot, or duration)
    duration: float | None = None  # seconds; slots keep reconnecting until then
    path: str = "/"
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    max_connecting: int = 256


@dataclass(slots=True)
class LoadStats:
    started_at: float
    started: int = 0
    completed: int = 0
    open: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connect_latencies: list[float] = field(default_factory=list)
    request_latencies: list[float] = field(default_factory=list)
    response_bytes: int = 0
    finished_at: float | None = None
    peers: set[str] = field(default_factory=set)  # our hosts that completed a connection

    def summary(self, now: float) -> dict[str, Any]:
        elapsed = max((self.finished_at or now) - self.started_at, 1e-9)
        return {
            "elapsed_s": round(elapsed, 3),
            "started": self.started,
            "completed": self.completed,
            "failed": sum(self.errors.values()),
            "connections_per_s": round(self.completed / elapsed, 1),
            "connect_ms": _percentiles(self.connect_latencies),
            "request_ms": _percentiles(self.request_latencies),
            "errors": dict(sorted(self.errors.items())),
            "response_bytes": self.response_bytes,
            "hosts_completed": len(self.peers),
        }


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return round(ordered[index] * 1000, 3)

    return {"p50": pick(0.50), "p99": pick(0.99), "max": round(ordered[-1] * 1000, 3)}


class _Connection:
    __slots__ = ("connected_at", "deadline", "host", "phase", "request", "response",
                 "sent_at", "sock", "started")

    def __init__(self, host: HostStack, sock: Any, now: float, deadline: float) -> None:
        self.host = host
        self.sock = sock
        self.phase = "connecting"
        self.started = now
        self.deadline = deadline
        self.connected_at = 0.0
        self.sent_at = 0.0
        self.request = memoryview(b"")
        self.response = bytearray()


class LoadRun:
    """See the module docstring; :attr:`done` once every slot is idle for good."""

    def __init__(self, hosts: VirtualHosts, plan: LoadPlan, now: float) -> None:
        if plan.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {plan.pattern!r} (known: {', '.join(PATTERNS)})")
        self.hosts = hosts
        self.plan = plan
        self.stats = LoadStats(started_at=now)
        # Slots waiting to open their next connection: taken from the left, given back on
        # the right, so every host gets its turn before any host gets a second.
        self._idle: deque[HostStack] = deque(
            host for _ in range(plan.connections) for host in hosts)
        slots = len(self._idle)
        self._budget = plan.count if plan.count is not None else (
            None if plan.duration is not None else slots)
        self._ends_at = None if plan.duration is None else now + plan.duration
        self._by_sock: dict[object, _Connection] = {}
        self._connecting = 0
        self._next_scan = now + _TIMEOUT_SCAN
        self._now = now
        host_header = plan.target[0] if plan.target[1] == 80 else \
            f"{plan.target[0]}:{plan.target[1]}"
        self._request = (f"GET {plan.path} HTTP/1.1\r\nHost: {host_header}\r\n"
                         "User-Agent: vipernet-load\r\nConnection: close\r\n\r\n").encode()

    @property
    def done(self) -> bool:
        return not self._by_sock and not self._may_start(self._now)

    def _may_start(self, now: float) -> bool:
        if self._ends_at is not None and now >= self._ends_at:
            return False
        return self._budget is None or self.stats.started < self._budget

    def on_turn(self, now: float) -> float | None:
        """Step the connections whose sockets changed, start new ones, expire late ones;
        returns when the run next needs a turn without any frame arriving."""
        self._now = now
        by_sock = self._by_sock
        for sock in self.hosts.take_changed():
            conn = by_sock.get(sock)
            if conn is not None:
                self._step(conn, now)
        if now >= self._next_scan:
            self._next_scan = now + _TIMEOUT_SCAN
            for conn in [c for c in by_sock.values() if c.deadline <= now]:
                kind = "connect_timeout" if conn.phase == "connecting" else "request_timeout"
                self._fail(conn, kind, now)
        self._start_more(now)
        if self.stats.finished_at is None and self.done:
            self.stats.finished_at = now
        return self._next_scan if by_sock or self._may_start(now) else None

    def stop(self, now: float) -> None:
        """End the run now (Ctrl-C, the duration): open connections are closed, not
        counted."""
        self._budget = self.stats.started
        for conn in list(self._by_sock.values()):
            self._finish(conn, now)
        self.stats.finished_at = now

    # -- one connection ---------------------------------------------------------------------

    def _start_more(self, now: float) -> None:
        plan = self.plan
        attempts = plan.max_connecting  # per turn: a slot failing at once must not spin
        while (self._idle and attempts > 0 and self._connecting < plan.max_connecting
               and self._may_start(now)):
            attempts -= 1
            host = self._idle.popleft()
            self.stats.started += 1
            try:
                sock = host.tcp_socket()
                sock.connect(plan.target, now)
            except BlockingIOError:
                pass
            except OSError as exc:
                self._count_error(exc.errno)
                self._idle.append(host)
                continue
            finally:
                self.hosts.touch(host)
            conn = _Connection(host, sock, now, now + plan.connect_timeout)
            self._by_sock[sock] = conn
            self._connecting += 1
            self.stats.open += 1

    def _step(self, conn: _Connection, now: float) -> None:
        sock = conn.sock
        self.hosts.touch(conn.host)
        try:
            if conn.phase == "connecting":
                if not sock.writable and not sock.readable:
                    return
                err = sock.take_error()
                if err:
                    raise OSError(err, "connect")
                self._connecting -= 1
                conn.phase = "request"
                conn.connected_at = now
                self.stats.connect_latencies.append(now - conn.started)
                if self.plan.pattern == "connect":
                    self._succeed(conn, now)
                    return
                conn.request = memoryview(self._request)
                conn.sent_at = now
                conn.deadline = now + self.plan.request_timeout
            self._exchange(conn, now)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(conn, _errno_name(exc.errno), now)

    def _exchange(self, conn: _Connection, now: float) -> None:
        sock = conn.sock
        while conn.request:
            n = sock.send(conn.request, now)  # BlockingIOError: wait for writable
            conn.request = conn.request[n:]
        while True:
            data = sock.recv(_RECV_CHUNK)  # BlockingIOError: wait for more
            if not data:
                break
            conn.response += data
        self.stats.response_bytes += len(conn.response)
        status = _status_of(bytes(conn.response[:32]))
        if status is None:
            self._fail(conn, "bad_response", now)
        elif not 200 <= status < 400:
            self._fail(conn, f"http_{status}", now)
        else:
            self.stats.request_latencies.append(now - conn.sent_at)
            self._succeed(conn, now)

    def _succeed(self, conn: _Connection, now: float) -> None:
        self.stats.completed += 1
        self.stats.peers.add(str(conn.host.config.ip.ip))
        self._finish(conn, now)

    def _fail(self, conn: _Connection, kind: str, now: float) -> None:
        self.stats.errors[kind] += 1
        self._finish(conn, now)

    def _count_error(self, code: int | None) -> None:
        self.stats.errors[_errno_name(code)] += 1

    def _finish(self, conn: _Connection, now: float) -> None:
        if self._by_sock.pop(conn.sock, None) is None:
            return
        if conn.phase == "connecting":
            self._connecting -= 1
        self.stats.open -= 1
        conn.sock.close(now)
        self.hosts.touch(conn.host)
        self._idle.append(conn.host)


def _errno_name(code: int | None) -> str:
    if code is None:
        return "EIO"
    return errno.errorcode.get(code, f"errno_{code}")


def _status_of(head: bytes) -> int | None:
    """The status code of an HTTP/1.x status line, or None."""
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1][:3].isdigit():
        return None
    return int(parts[1][:3])
