"""NET_DNS_RESOLVE: netd drives :class:`vipernet.dns.query.DnsQuery` over stack UDP sockets.

The resolver core is sans-IO; this handler is its I/O shell inside netd's loop.  Each
attempt goes out from a fresh stack UDP socket bound to port 0 (random source port, as
the core expects), the request stays parked while the query waits, and the waiter is
retried whenever that socket has a datagram or the core's next deadline passes.  Answers
and NXDOMAIN are cached (TTL-bound) for every client.  The reply maps the core's
outcomes onto errnos: NXDOMAIN -> ENOENT, no A record -> ENODATA, timeout -> ETIMEDOUT,
server failure/refusal -> EIO, invalid name -> EINVAL, CNAME loop -> ELOOP, a reply that
does not parse -> EBADMSG, a truncated answer whose TCP retry failed -> EMSGSIZE.
A truncated (TC) answer is asked again over a stack TCP connection (2-byte length prefix,
RFC 7766) when the stack has TCP; otherwise the core moves on as after a failed attempt.

The request's timeout is the deadline of the whole resolution (``attempts=None`` in the
core): retries go round the servers with growing waits until it, and the last one waits
out what is left, so ``vipernet dig --timeout 20`` against a silent server takes 20 s and
``--timeout 0.5`` half a second.  Each query's counters (see ``vipernet.dns.query``) are
added to netd's counters as ``dns.NAME`` when it ends (``dns.trailing_junk``,
``dns.malformed``, ``dns.attempt_timeouts``, ...), plus ``dns.cache_hits``; ``vipernet
info --counters`` lists them.
"""

from __future__ import annotations

import contextlib
import errno
import random
from typing import Any

from vipernet.dns.cache import Answer, DnsCache
from vipernet.dns.errors import (
    CnameLoop,
    DnsError,
    DnsTimeout,
    InvalidName,
    MalformedReply,
    NameNotFound,
    NoRecords,
    Truncated,
)
from vipernet.dns.query import A, DnsQuery, SendQuery, WaitUntil, tcp_frame
from vipernet.netd import protocol as p
from vipernet.netd.protocol import Message
from vipernet.netd.service import NetService, Session, Waiter

DEFAULT_LIFETIME = 5.0  # when the client asked to wait forever
MAX_LIFETIME = 60.0
MAX_TCP_ANSWER = 65535
ATTEMPT_TIMEOUT = 1.0


def _errno_for(exc: DnsError) -> int:
    if isinstance(exc, NameNotFound):
        return errno.ENOENT
    if isinstance(exc, NoRecords):
        return errno.ENODATA
    if isinstance(exc, DnsTimeout):
        return errno.ETIMEDOUT
    if isinstance(exc, InvalidName):
        return errno.EINVAL
    if isinstance(exc, CnameLoop):
        return errno.ELOOP
    if isinstance(exc, MalformedReply):
        return errno.EBADMSG
    if isinstance(exc, Truncated):
        return errno.EMSGSIZE
    return errno.EIO


class DnsHandler:
    """The NET_DNS_RESOLVE extension (one per netd, shared cache)."""

    def __init__(self, servers: list[str], *, rng: random.Random,
                 cache: DnsCache | None = None) -> None:
        self.servers = servers
        self.rng = rng
        self.cache = cache or DnsCache()

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message | None:
        body = p.ResolveRequest.decode(request.body)
        entry = self.cache.get(body.hostname, A, now)
        if entry is not None:
            service.count("dns.cache_hits")
            if entry.answer is None:
                return p.error_reply(request, errno.ENOENT, f"{body.hostname}: name not found")
            return self._answer(request, entry.answer)
        if not self.servers:
            return p.error_reply(request, errno.EHOSTUNREACH, "no DNS server configured")
        timeout = p.timeout_from_ms(body.timeout_ms)
        lifetime = DEFAULT_LIFETIME if timeout is None or timeout <= 0 else timeout
        lifetime = min(lifetime, MAX_LIFETIME)
        try:
            # attempts=None: the lifetime bounds the whole query, not each try.
            query = DnsQuery(body.hostname, servers=self.servers, now=now,
                             rng=self.rng, timeout=min(ATTEMPT_TIMEOUT, lifetime),
                             attempts=None, lifetime=lifetime, allow_tcp=True)
        except DnsError as exc:
            return p.error_reply(request, _errno_for(exc), str(exc))
        job = _Job(self, service, request, query)
        return job.start(session, now)

    def _answer(self, request: Message, answer: Answer) -> Message:
        addresses = tuple(a for a in answer.addresses if ":" not in a)
        return p.reply_to(request, p.ResolveReply(addresses=addresses).encode())


class _Job:
    """One resolution in progress: the query, its current socket and its waiter."""

    def __init__(self, handler: DnsHandler, service: NetService, request: Message,
                 query: DnsQuery) -> None:
        self.handler = handler
        self.service = service
        self.request = request
        self.query = query
        self.sock: Any = None  # the current attempt's socket (UDP, or TCP after TC)
        self.over_tcp = False
        self.server: tuple[str, int] = ("0.0.0.0", 0)
        self.tcp_out = b""  # the length-prefixed query still to write
        self.tcp_in = bytearray()  # the length-prefixed answer read so far
        self.waiter: Waiter | None = None
        self.counted = False

    def start(self, session: Session, now: float) -> Message | None:
        reply = self.step(now, False)
        if reply is not None:
            self.finish(now)
            return reply
        self.waiter = Waiter(session, self.request, self._watched(), self.query.next_deadline(),
                             self.step, self.finish)
        self.service.park(self.waiter)
        return None

    def _watched(self) -> tuple[Any, ...]:
        return () if self.sock is None else (self.sock,)

    def close(self, now: float) -> None:
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close(now)

    def finish(self, now: float) -> None:
        """However the job ends (answer, error, client gone): release and count it once."""
        self.close(now)
        if not self.counted:
            self.counted = True
            for name, n in self.query.counters.items():
                self.service.count(f"dns.{name}", n)

    def step(self, now: float, expired: bool) -> Message | None:
        query = self.query
        if self.sock is not None and self.over_tcp:
            self._pump_tcp(now)
        elif self.sock is not None:
            while True:
                try:
                    data, source = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                except OSError:
                    query.transport_failed(now)  # e.g. ICMP port unreachable
                    break
                query.receive(data, source, now)
        try:
            while True:
                action = query.next_action(now)
                if isinstance(action, Answer):
                    self.handler.cache.put_answer(action, now)
                    return self.handler._answer(self.request, action)
                if isinstance(action, WaitUntil):
                    break
                self._send(action, now)
        except NameNotFound as exc:
            if query.negative_ttl:
                self.handler.cache.put_nxdomain(query.name, A, query.negative_ttl, now)
            return p.error_reply(self.request, errno.ENOENT, str(exc))
        except DnsError as exc:
            return p.error_reply(self.request, _errno_for(exc), str(exc))
        if self.waiter is not None:
            self.waiter.deadline = query.next_deadline()
            self.service.watch(self.waiter, self._watched())
        return None

    def _send(self, action: SendQuery, now: float) -> None:
        self.close(now)
        self.over_tcp = action.over_tcp
        self.server = action.server
        try:
            if action.over_tcp:
                self._connect_tcp(action, now)
                return
            sock = self.service.stack.udp_socket()
            sock.bind(("0.0.0.0", 0))
            self.sock = sock
            sock.sendto(action.data, action.server, now)
        except (OSError, ImportError, NotImplementedError):
            self.close(now)
            self.query.transport_failed(now)

    # -- DNS over TCP, for answers that came back truncated (RFC 7766) ----------------------

    def _connect_tcp(self, action: SendQuery, now: float) -> None:
        sock = self.service.stack.tcp_socket()
        self.sock = sock
        self.tcp_out = tcp_frame(action.data)
        self.tcp_in = bytearray()
        with contextlib.suppress(BlockingIOError):  # EINPROGRESS: pumped once connected
            sock.connect(action.server, now)
        self._pump_tcp(now)

    def _pump_tcp(self, now: float) -> None:
        sock = self.sock
        try:
            err = sock.take_error()
            if err:
                raise OSError(err, "DNS over TCP failed")
            while self.tcp_out and sock.writable:
                n = sock.send(self.tcp_out, now)
                if n <= 0:
                    break
                self.tcp_out = self.tcp_out[n:]
            while len(self.tcp_in) < 2 + MAX_TCP_ANSWER:
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    return
                if not chunk:
                    raise OSError(errno.ECONNRESET, "DNS server closed before answering")
                self.tcp_in += chunk
                if len(self.tcp_in) >= 2:
                    length = int.from_bytes(self.tcp_in[:2], "big")
                    if len(self.tcp_in) >= 2 + length:
                        answer = bytes(self.tcp_in[2:2 + length])
                        self.close(now)
                        if not self.query.receive(answer, self.server, now, over_tcp=True):
                            # nothing more comes on this stream: do not wait for the deadline
                            self.query.transport_failed(now)
                        return
        except OSError:
            self.close(now)
            self.query.transport_failed(now)
