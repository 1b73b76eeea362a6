"""NET_DNS_RESOLVE: netd drives :class:`vipernet.dns.query.DnsQuery` over stack UDP sockets.

The servers asked are the configured ones (``netd --dns``, a DHCP lease's) and then
those the link announced in Router Advertisements (RDNSS, RFC 8106), IPv4 or IPv6.

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
``dns.malformed``, ``dns.malformed.pointer_loop`` and the other reasons,
``dns.attempt_timeouts``, ...), plus ``dns.cache_hits``; ``vipernet
info --counters`` lists them.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import random
from collections.abc import Callable
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
from vipernet.dns.query import AAAA, A, DnsQuery, SendQuery, WaitUntil, tcp_frame
from vipernet.netd import protocol as p
from vipernet.netd.protocol import Message
from vipernet.netd.service import NetService, Session, Waiter
from vipernet.stack.socket_api import AF_INET, AF_INET6, Address

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


Outcome = Answer | DnsError  # how one query ended


class DnsHandler:
    """NET_DNS_RESOLVE (A records) and NET_DNS_RESOLVE_ALL (A and/or AAAA, one request)
    extensions: one per netd, the cache shared by every client."""

    def __init__(self, servers: list[str], *, rng: random.Random,
                 cache: DnsCache | None = None,
                 learned: Callable[[float], list[str]] | None = None) -> None:
        self.servers = servers  # configured (netd --dns, or a DHCP lease's)
        self.rng = rng
        self.cache = cache or DnsCache()
        # Servers the link taught us (RDNSS, RFC 8106), asked after the configured ones.
        self.learned = learned

    def servers_now(self, now: float) -> list[str]:
        learned = self.learned(now) if self.learned is not None else []
        return self.servers + [s for s in learned if s not in self.servers]

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message | None:
        body = p.ResolveRequest.decode(request.body)
        return self._resolve(service, session, request, body.hostname, body.timeout_ms,
                             (A,), now)

    def resolve_all(self, service: NetService, session: Session, request: Message,
                    now: float) -> Message | None:
        body = p.ResolveAllRequest.decode(request.body)
        rdtypes = tuple(t for bit, t in ((p.WANT_AAAA, AAAA), (p.WANT_A, A))
                        if body.families & bit)
        if not rdtypes or body.families & ~(p.WANT_A | p.WANT_AAAA):
            return p.error_reply(request, errno.EINVAL,
                                 f"families 0x{body.families:02x}: want 0x01, 0x02 or 0x03")
        return self._resolve(service, session, request, body.hostname, body.timeout_ms,
                             rdtypes, now)

    def _resolve(self, service: NetService, session: Session, request: Message, name: str,
                 timeout_ms: int, rdtypes: tuple[int, ...], now: float) -> Message | None:
        outcomes: dict[int, Outcome] = {}
        for rdtype in rdtypes:
            entry = self.cache.get(name, rdtype, now)
            if entry is not None:
                service.count("dns.cache_hits")
                outcomes[rdtype] = entry.answer or NameNotFound(f"{name}: name not found")
        missing = [t for t in rdtypes if t not in outcomes]
        servers = self.servers_now(now)
        if missing and not servers:
            return p.error_reply(request, errno.EHOSTUNREACH, "no DNS server configured")
        timeout = p.timeout_from_ms(timeout_ms)
        lifetime = DEFAULT_LIFETIME if timeout is None or timeout <= 0 else timeout
        lifetime = min(lifetime, MAX_LIFETIME)
        jobs = []
        for rdtype in missing:
            try:
                # attempts=None: the lifetime bounds the whole query, not each try.
                query = DnsQuery(name, rdtype=rdtype, servers=servers, now=now, rng=self.rng,
                                 timeout=min(ATTEMPT_TIMEOUT, lifetime), attempts=None,
                                 lifetime=lifetime, allow_tcp=True)
            except DnsError as exc:
                return p.error_reply(request, _errno_for(exc), str(exc))
            jobs.append(_Job(self, service, query))
        resolution = _Resolution(self, service, request, rdtypes, outcomes, jobs)
        return resolution.start(session, now)

    def reply(self, service: NetService, request: Message, rdtypes: tuple[int, ...],
              outcomes: dict[int, Outcome]) -> Message:
        """The reply for every query ended: addresses if any query found some (the
        other's failure is then only a missing family), else the most telling error."""
        answers = [o for t in rdtypes if isinstance(o := outcomes[t], Answer)]
        if request.code == p.Code.DNS_RESOLVE:
            if answers:
                return p.reply_to(request, p.ResolveReply(addresses=tuple(
                    a for a in answers[0].addresses if ":" not in a)).encode())
        elif answers:
            addresses = self._ordered(service, [a for ans in answers for a in ans.addresses])
            return p.reply_to(request, p.ResolveAllReply(addresses=addresses).encode())
        errors = [o for o in outcomes.values() if isinstance(o, DnsError)]
        # A failure to get an answer (timeout, server failure...) says more than "no such
        # name/records" from the other query; between those two, NXDOMAIN wins.
        failed = [e for e in errors if not isinstance(e, NameNotFound | NoRecords)]
        chosen = failed[0] if failed else next(
            (e for e in errors if isinstance(e, NameNotFound)), errors[0])
        return p.error_reply(request, _errno_for(chosen), str(chosen))

    @staticmethod
    def _ordered(service: NetService, addresses: list[str]) -> tuple[str, ...]:
        """IPv6 first when the stack has a source address for it (RFC 6724 rule 2's
        spirit: a family we cannot send from goes last), else IPv4 first."""
        v6 = [a for a in addresses if ":" in a]
        v4 = [a for a in addresses if ":" not in a]
        stack: Any = service.stack  # the real Stack: its IPv6 parts, when it has them
        usable6 = bool(v6) and getattr(stack, "ipv6", None) is not None and (
            stack.nd.source_for(ipaddress.IPv6Address(v6[0])) is not None)
        return tuple(v6 + v4 if usable6 else v4 + v6)


class _Resolution:
    """One request's queries (one per record type not cached) and its waiter."""

    def __init__(self, handler: DnsHandler, service: NetService, request: Message,
                 rdtypes: tuple[int, ...], outcomes: dict[int, Outcome],
                 jobs: list[_Job]) -> None:
        self.handler = handler
        self.service = service
        self.request = request
        self.rdtypes = rdtypes
        self.outcomes = outcomes
        self.jobs = jobs
        self.waiter: Waiter | None = None

    def start(self, session: Session, now: float) -> Message | None:
        reply = self.step(now, False)
        if reply is not None:
            self.finish(now)
            return reply
        self.waiter = Waiter(session, self.request, self._watched(), self._deadline(),
                             self.step, self.finish)
        self.service.park(self.waiter)
        return None

    def _watched(self) -> tuple[Any, ...]:
        return tuple(job.sock for job in self.jobs if job.sock is not None)

    def _deadline(self) -> float | None:
        deadlines = [d for job in self.jobs if job.outcome is None
                     and (d := job.query.next_deadline()) is not None]
        return min(deadlines, default=None)

    def step(self, now: float, expired: bool) -> Message | None:
        for job in self.jobs:
            if job.outcome is None:
                job.step(now)
                if job.outcome is not None:
                    job.close(now)
                    self.outcomes[job.query.rdtype] = job.outcome
        if all(t in self.outcomes for t in self.rdtypes):
            return self.handler.reply(self.service, self.request, self.rdtypes, self.outcomes)
        if self.waiter is not None:
            self.waiter.deadline = self._deadline()
            self.service.watch(self.waiter, self._watched())
        return None

    def finish(self, now: float) -> None:
        for job in self.jobs:
            job.finish(now)


class _Job:
    """One query in progress (one record type): the query and its current socket."""

    def __init__(self, handler: DnsHandler, service: NetService, query: DnsQuery) -> None:
        self.handler = handler
        self.service = service
        self.query = query
        self.outcome: Outcome | None = None
        self.sock: Any = None  # the current attempt's socket (UDP, or TCP after TC)
        self.over_tcp = False
        self.server: tuple[str, int] = ("0.0.0.0", 0)
        self.tcp_out = b""  # the length-prefixed query still to write
        self.tcp_in = bytearray()  # the length-prefixed answer read so far
        self.counted = False

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

    def step(self, now: float) -> None:
        """Take what arrived and act; ``self.outcome`` is set once the query ended."""
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
                query.receive(data, _plain(source), now)
        try:
            while True:
                action = query.next_action(now)
                if isinstance(action, Answer):
                    self.handler.cache.put_answer(action, now)
                    self.outcome = action
                    return
                if isinstance(action, WaitUntil):
                    return
                self._send(action, now)
        except NameNotFound as exc:
            if query.negative_ttl:
                self.handler.cache.put_nxdomain(query.name, query.rdtype, query.negative_ttl,
                                                now)
            self.outcome = exc
        except DnsError as exc:
            self.outcome = exc

    def _send(self, action: SendQuery, now: float) -> None:
        self.close(now)
        self.over_tcp = action.over_tcp
        self.server = action.server
        try:
            if action.over_tcp:
                self._connect_tcp(action, now)
                return
            six = ":" in action.server[0]
            sock = self.service.stack.udp_socket(AF_INET6 if six else AF_INET)
            sock.bind(("::", 0) if six else ("0.0.0.0", 0))
            self.sock = sock
            sock.sendto(action.data, action.server, now)
        except (OSError, ImportError, NotImplementedError):
            self.close(now)
            self.query.transport_failed(now)

    # -- DNS over TCP, for answers that came back truncated (RFC 7766) ----------------------

    def _connect_tcp(self, action: SendQuery, now: float) -> None:
        sock = self.service.stack.tcp_socket(AF_INET6 if ":" in action.server[0] else AF_INET)
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


def _plain(source: Address) -> tuple[str, int]:
    """A datagram's source as the query compares it with its server: (host, port), also
    for the 4-tuple an AF_INET6 socket reports."""
    return (str(source[0]), int(source[1]))
