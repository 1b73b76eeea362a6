"""Crafting DNS replies with dnspython, and fake sockets/clock for driving the resolver."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

Record = tuple[str, str, int, Sequence[str]]  # (owner, type, ttl, values)


def reply(
    query: bytes,
    records: Sequence[Record] = (),
    *,
    rcode: int = dns.rcode.NOERROR,
    truncated: bool = False,
    ident: int | None = None,
    qname: str | None = None,
    authority: Sequence[Record] = (),
    is_response: bool = True,
) -> bytes:
    """A reply to ``query`` (bytes as the resolver sent them), optionally tampered with."""
    request = dns.message.from_wire(query)
    if qname is not None:
        request = dns.message.make_query(qname, request.question[0].rdtype)
        request.id = dns.message.from_wire(query).id
    response = dns.message.make_response(request)
    for owner, rtype, ttl, values in records:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, *values))
    for owner, rtype, ttl, values in authority:
        response.authority.append(dns.rrset.from_text(owner, ttl, "IN", rtype, *values))
    response.set_rcode(dns.rcode.Rcode(rcode))
    if truncated:
        response.flags |= dns.flags.TC
    if not is_response:
        response.flags &= ~dns.flags.QR
    if ident is not None:
        response.id = ident
    return response.to_wire()


def question_of(query: bytes) -> tuple[str, int]:
    message = dns.message.from_wire(query)
    return message.question[0].name.to_text(omit_final_dot=True), message.question[0].rdtype


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


Server = Callable[[bytes, tuple[str, int]], list[tuple[bytes, object]]]


class FakeNetwork:
    """Hands out fake UDP sockets; ``server(query, to)`` returns the datagrams that come back.

    A recvfrom with nothing queued advances the fake clock by the socket timeout and
    raises TimeoutError, as a real socket would after waiting.
    """

    def __init__(self, clock: FakeClock, server: Server) -> None:
        self.clock = clock
        self.server = server
        self.sockets: list[FakeUdpSocket] = []
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def factory(self) -> FakeUdpSocket:
        sock = FakeUdpSocket(self)
        self.sockets.append(sock)
        return sock


class FakeUdpSocket:
    def __init__(self, network: FakeNetwork) -> None:
        self.network = network
        self.bound: tuple[str, int] | None = None
        self.timeout: float | None = None
        self.closed = False
        self.inbox: deque[tuple[bytes, object]] = deque()

    def settimeout(self, timeout: float | None, /) -> None:
        self.timeout = timeout

    def bind(self, address: tuple[str, int], /) -> None:
        self.bound = address

    def sendto(self, data: bytes, address: tuple[str, int], /) -> int:
        self.network.sent.append((data, address))
        self.inbox.extend(self.network.server(data, address))
        return len(data)

    def recvfrom(self, bufsize: int, /) -> tuple[bytes, object]:
        if self.inbox:
            return self.inbox.popleft()
        self.network.clock.now += self.timeout or 0.0
        raise TimeoutError("timed out")

    def close(self) -> None:
        self.closed = True
