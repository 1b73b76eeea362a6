"""The blocking stub resolver: :class:`DnsQuery` driven over any socket-like objects.

``Resolver(udp_socket_factory, servers, clock, rng).resolve(name) -> list[str]``.

The factory returns a fresh datagram socket per attempt (the stdlib's
``lambda: socket.socket(AF_INET, SOCK_DGRAM)`` or a vipernet UDP socket); it needs only
``settimeout``, ``bind``, ``sendto``, ``recvfrom`` and ``close``.  Each attempt binds
port 0, so every query leaves from a new random port chosen by the stack.  With a
``tcp_socket_factory`` (``settimeout``, ``connect``, ``sendall``, ``recv``, ``close``),
truncated answers are asked again over TCP.

Code that must not block (netd, which serves many clients from one loop) drives
:class:`vipernet.dns.query.DnsQuery` itself; this class is that loop written out plainly.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from vipernet.dns.cache import Answer, DnsCache
from vipernet.dns.errors import NameNotFound
from vipernet.dns.query import (
    AAAA,
    MAX_MESSAGE,
    A,
    DnsQuery,
    SendQuery,
    Server,
    WaitUntil,
    parse_server,
    tcp_frame,
)

_TIMEOUTS = (TimeoutError, BlockingIOError)  # socket.timeout is TimeoutError since 3.10


class DatagramSocket(Protocol):
    def settimeout(self, timeout: float | None, /) -> None: ...
    def bind(self, address: tuple[str, int], /) -> None: ...
    def sendto(self, data: bytes, address: tuple[str, int], /) -> int: ...
    def recvfrom(self, bufsize: int, /) -> tuple[bytes, object]: ...
    def close(self) -> None: ...


class StreamSocket(Protocol):
    def settimeout(self, timeout: float | None, /) -> None: ...
    def connect(self, address: tuple[str, int], /) -> None: ...
    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, bufsize: int, /) -> bytes: ...
    def close(self) -> None: ...


class Resolver:
    """A caching stub resolver for A (and AAAA) records."""

    def __init__(
        self,
        udp_socket_factory: Callable[[], DatagramSocket],
        servers: Sequence[str | Server],
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        *,
        tcp_socket_factory: Callable[[], StreamSocket] | None = None,
        timeout: float = 1.0,
        attempts: int = 2,
        lifetime: float = 5.0,
        cache: DnsCache | None = None,
        bind_address: str = "0.0.0.0",
    ) -> None:
        self.servers = [parse_server(s) for s in servers]
        self._udp_factory = udp_socket_factory
        self._tcp_factory = tcp_socket_factory
        self._clock = clock
        self._rng = rng if rng is not None else random.SystemRandom()
        self.timeout = timeout
        self.attempts = attempts
        self.lifetime = lifetime
        self.cache = cache if cache is not None else DnsCache()
        self._bind_address = bind_address
        self.counters: Counter[str] = Counter()

    def resolve(self, name: str, rdtype: int = A, *, timeout: float | None = None) -> list[str]:
        """Addresses of ``name`` (sorted); raises a :class:`DnsError` subclass.

        ``timeout`` is the deadline of this whole resolution, retries and servers included
        (a silent network fails after ``timeout`` seconds, not after ``attempts`` tries);
        without it the resolver's ``timeout``/``attempts``/``lifetime`` apply.
        """
        return list(self.resolve_answer(name, rdtype, timeout=timeout).addresses)

    def resolve_answer(self, name: str, rdtype: int = A, *,
                       timeout: float | None = None) -> Answer:
        literal = _literal(name, rdtype)
        if literal is not None:
            return literal
        now = self._clock()
        cached = self.cache.get(name, rdtype, now)
        if cached is not None:
            self.counters["cache_hits"] += 1
            if cached.answer is None:
                raise NameNotFound(f"{name}: no such name (NXDOMAIN, cached)")
            return cached.answer
        query = DnsQuery(
            name,
            servers=self.servers,
            now=now,
            rng=self._rng,
            rdtype=rdtype,
            timeout=self.timeout if timeout is None else min(self.timeout, timeout),
            attempts=self.attempts if timeout is None else None,
            lifetime=self.lifetime if timeout is None else timeout,
            allow_tcp=self._tcp_factory is not None,
        )
        try:
            answer = self._drive(query)
        except NameNotFound:
            self.cache.put_nxdomain(query.name, rdtype, query.negative_ttl, self._clock())
            raise
        finally:
            self.counters.update(query.counters)
        self.cache.put_answer(answer, self._clock())
        return answer

    def _drive(self, query: DnsQuery) -> Answer:
        udp: DatagramSocket | None = None
        try:
            while True:
                now = self._clock()
                action = query.next_action(now)
                if isinstance(action, Answer):
                    return action
                if isinstance(action, SendQuery):
                    if action.over_tcp:
                        self._exchange_tcp(query, action)
                        continue
                    if udp is not None:
                        udp.close()
                    udp = self._send_udp(query, action)
                    continue
                assert isinstance(action, WaitUntil)
                if udp is None:  # nothing to wait on (a send failed): move on, never spin
                    query.transport_failed(now)
                    continue
                self._wait_udp(query, udp, action.deadline)
        finally:
            if udp is not None:
                udp.close()

    def _send_udp(self, query: DnsQuery, action: SendQuery) -> DatagramSocket | None:
        sock = self._udp_factory()
        try:
            sock.bind((self._bind_address, 0))
            sock.sendto(action.data, action.server)
        except OSError:
            sock.close()
            query.transport_failed(self._clock())
            return None
        return sock

    def _wait_udp(self, query: DnsQuery, sock: DatagramSocket, deadline: float) -> None:
        remaining = deadline - self._clock()
        if remaining <= 0:
            return
        sock.settimeout(remaining)
        try:
            data, source = sock.recvfrom(MAX_MESSAGE)
        except _TIMEOUTS:
            return
        except OSError:
            query.transport_failed(self._clock())
            return
        query.receive(data, source, self._clock())

    def _exchange_tcp(self, query: DnsQuery, action: SendQuery) -> None:
        assert self._tcp_factory is not None
        sock = self._tcp_factory()
        try:
            sock.settimeout(max(action.deadline - self._clock(), 0.001))
            sock.connect(action.server)
            sock.sendall(tcp_frame(action.data))
            length = int.from_bytes(_recv_exactly(sock, 2), "big")
            message = _recv_exactly(sock, length)
        except OSError:  # includes timeouts and a peer closing early
            query.transport_failed(self._clock())
            return
        finally:
            sock.close()
        if not query.receive(message, action.server, self._clock(), over_tcp=True):
            query.transport_failed(self._clock())  # nothing more will come on this stream


def _recv_exactly(sock: StreamSocket, count: int) -> bytes:
    chunks: list[bytes] = []
    while count:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionResetError("DNS server closed the TCP connection early")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _literal(name: str, rdtype: int) -> Answer | None:
    """An address literal resolves to itself (as getaddrinfo does), without a query."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    if (ip.version == 4) != (rdtype == A) or rdtype not in (A, AAAA):
        return None
    return Answer(name=name, canonical_name=name, rdtype=rdtype, addresses=(str(ip),), ttl=0)
