"""The sans-IO core of the stub resolver: one :class:`DnsQuery` per name to resolve.

The query never touches a socket or a clock.  The caller drives it::

    query = DnsQuery("example.test", servers=[("10.0.2.3", 53)], now=now, rng=rng)
    while True:
        action = query.next_action(now)        # raises a DnsError when resolution failed
        if isinstance(action, Answer):         # done: action.addresses
            break
        if isinstance(action, SendQuery):      # send action.data to action.server, over UDP
            ...                                # from a fresh port 0 socket, or over TCP
        else:                                  # WaitUntil: wait for a reply until
            ...                                # action.deadline, then call next_action again
        query.receive(data, source, now)       # every datagram that arrives, from anyone
        query.transport_failed(now)            # if sending/connecting failed

Every attempt gets a fresh random query id (from the injected ``random.Random``); the
caller is expected to send each UDP attempt from a new socket bound to port 0 so the
source port is random too.  A reply is accepted only if it comes from the server the
attempt went to, carries that attempt's id, is a response, and repeats the question;
anything else is ignored and counted in :attr:`DnsQuery.counters` (``wrong_server``,
``wrong_id``, ``not_response``, ``wrong_question``, ``malformed``, ``late``).  A reply
with bytes after its last record is used as if they were not there and counted in
``trailing_junk`` (glibc's stub and most others read only what the header announces;
dropping such an answer turned a working server into a misleading timeout).  A reply
from the attempt's server that does not parse is remembered: if nothing better arrives,
the query ends with :class:`MalformedReply` naming the server, never with a timeout; if
its header carries the attempt's id, the server has answered that attempt, so the next
try goes out at once (as after SERVFAIL).  Why it does not parse is found by walking the
message (:func:`vipernet.dns.malformed.diagnose`) and counted in ``malformed.KIND`` (see
:data:`vipernet.dns.malformed.MALFORMED_KINDS`);
the error of a query that got one such reply describes it ("malformed reply from
10.0.2.3:53: 43 bytes that do not parse as a DNS message (RDLENGTH past the end)"), of
one that got several, counts them per server ("10.0.2.3 sent 3 malformed replies
(compression pointer loop)").

Outcomes: NOERROR with addresses -> :class:`Answer`, following CNAMEs (inside one
answer, or with a new query for the target) up to ``max_cnames`` hops with loop
detection; NXDOMAIN -> :class:`NameNotFound` at once (with :attr:`negative_ttl` from the
SOA for caching); SERVFAIL / REFUSED / other rcodes -> the next server, and the error
when all tries are used; TC -> the same question over TCP when ``allow_tcp`` (use
:func:`tcp_frame` for the 2-byte length prefix), else whatever the truncated answer
holds; silence -> the next attempt after ``timeout``, :class:`DnsTimeout` after
``attempts`` rounds over the servers or after ``lifetime`` in total.

With ``attempts=None`` the ``lifetime`` is the deadline of the whole query, as a caller's
"resolve within S seconds" means: the attempts go round the servers waiting ``timeout``,
doubled each round (at most :data:`MAX_ATTEMPT_WAIT`), as many rounds as fit in the
lifetime, and the last attempt waits until the lifetime ends.  A fixed count bounds the
tries too, so servers that fail at once (ICMP unreachable, REFUSED) end the query early
with their error instead of being asked in a tight loop until the deadline.

Wire format is dnspython's (``dns.message``); nothing here encodes DNS by hand.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from vipernet.dns.cache import Answer
from vipernet.dns.errors import (
    BadRecordLength,
    CnameLoop,
    DnsError,
    DnsTimeout,
    InvalidName,
    MalformedReply,
    NameNotFound,
    NoRecords,
    Refused,
    ServerFailure,
    Truncated,
)
from vipernet.dns.malformed import (
    ADDRESS_RDLENGTH,
    BadLength,
    Malformation,
    bad_address_length,
    diagnose,
)

Server = tuple[str, int]
A = int(dns.rdatatype.A)
AAAA = int(dns.rdatatype.AAAA)
MAX_MESSAGE = 65535
DEFAULT_NEGATIVE_TTL = 60  # when an NXDOMAIN carries no SOA
MAX_NEGATIVE_TTL = 3600
# The longest single wait with ``attempts=None`` (glibc's RES_TIMEOUT): past it, another
# try is worth more than waiting longer for a lost datagram.
MAX_ATTEMPT_WAIT = 5.0
MAX_ROUNDS = 32
HEADER_SIZE = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class SendQuery:
    """Send ``data`` to ``server``; over TCP, prefix it with :func:`tcp_frame`."""

    server: Server
    data: bytes
    over_tcp: bool
    deadline: float  # when this attempt is given up


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitUntil:
    """Feed replies to :meth:`DnsQuery.receive` until ``deadline``, then ask again."""

    deadline: float


Action = SendQuery | WaitUntil | Answer


@dataclass(frozen=True, slots=True)
class _Attempt:
    ident: int
    server: Server
    over_tcp: bool
    deadline: float


def tcp_frame(message: bytes) -> bytes:
    """A DNS message with the 2-byte length prefix of DNS over TCP (RFC 1035 4.2.2)."""
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"DNS message of {len(message)} bytes does not fit a TCP frame")
    return len(message).to_bytes(2, "big") + message


def parse_server(server: str | Server) -> Server:
    """``"10.0.2.3"`` or ``("10.0.2.3", 5353)`` -> ``(address, port)``."""
    if isinstance(server, str):
        host, port = server, 53
    else:
        host, port = server
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidName(f"DNS server must be an IP address, not {host!r}") from None
    if not 0 < port < 65536:
        raise InvalidName(f"DNS server port {port} out of range")
    return (host, port)


def _same_endpoint(a: object, b: Server) -> bool:
    if not isinstance(a, tuple) or len(a) < 2:  # AF_INET6 sources have 4 fields
        return False
    host: object = a[0]
    port: object = a[1]
    try:
        return ipaddress.ip_address(str(host)) == ipaddress.ip_address(b[0]) and port == b[1]
    except ValueError:
        return False


def _to_name(name: str) -> dns.name.Name:
    if not name or name.strip(".") == "" or len(name) > 253 + 1:
        raise InvalidName(f"not a domain name: {name!r}")
    try:
        return dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise InvalidName(f"not a domain name: {name!r}: {exc}") from None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnsQuery:
    """Resolve one name to addresses of one type: the state of a resolution in progress."""

    def __init__(
        self,
        name: str,
        *,
        servers: Sequence[str | Server],
        now: float,
        rng: random.Random,
        rdtype: int = A,
        timeout: float = 1.0,
        attempts: int | None = 2,
        lifetime: float = 5.0,
        allow_tcp: bool = False,
        max_cnames: int = 8,
    ) -> None:
        if not servers:
            raise InvalidName("no DNS servers given")
        if rdtype not in (A, AAAA):
            raise InvalidName(f"only A and AAAA lookups are supported, not type {rdtype}")
        self.servers = [parse_server(s) for s in servers]
        self.qname = _to_name(name)
        self.name = _text(self.qname)
        self.rdtype = dns.rdatatype.RdataType(rdtype)
        self.timeout = timeout
        # None: the lifetime is the query's deadline (see the module docstring).
        self.until_lifetime = attempts is None
        self.attempts = (
            _rounds_within(lifetime, timeout, len(self.servers))
            if attempts is None
            else max(1, attempts)
        )
        self.allow_tcp = allow_tcp
        self.max_cnames = max_cnames
        self.counters: Counter[str] = Counter()
        self.negative_ttl = 0  # set with NameNotFound: how long the caller may cache it
        self._rng = rng
        self._end = now + lifetime
        self._current = self.qname  # the name being asked now (moves along CNAMEs)
        self._seen = {self.qname}
        self._hops = 0
        self._ttl = 2**31 - 1
        self._result: Answer | None = None
        self._error: DnsError | None = None
        self._last_failure: DnsError | None = None
        # Per server, in the order they first sent one: the reasons of its malformed replies.
        self._malformed_from: dict[Server, list[str]] = {}
        self._outstanding: list[_Attempt] = []
        self._pending: SendQuery | None = None
        self._server_index = 0
        self._tries_left = 0
        self._start_question(now)

    # -- what the caller asks ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def next_action(self, now: float) -> Action:
        """The next thing to do; raises the :class:`DnsError` if resolution failed."""
        while True:
            if self._error is not None:
                raise self._error
            if self._result is not None:
                return self._result
            if now >= self._end:
                self.counters["lifetime_expired"] += 1
                # A server that answered with something unusable beats "no answer".
                self._fail(
                    self._last_failure
                    or DnsTimeout(f"{self.name}: no answer within the time limit")
                )
                continue
            if self._pending is not None:
                action, self._pending = self._pending, None
                return action
            latest = self._outstanding[-1]
            if now < latest.deadline:
                return WaitUntil(deadline=latest.deadline)
            self.counters["attempt_timeouts"] += 1
            self._next_try(now)

    def next_deadline(self) -> float | None:
        """When :meth:`next_action` must next be called (None once done)."""
        if self.done:
            return None
        if self._pending is not None or not self._outstanding:
            return 0.0  # a query is ready to send: act at once
        return min(self._outstanding[-1].deadline, self._end)

    def transport_failed(self, now: float) -> None:
        """Sending or connecting for the latest attempt failed: move on to the next."""
        if self.done:
            return
        if self._pending is not None:
            return  # that attempt was already given up (a bad reply moved us on)
        self.counters["transport_failures"] += 1
        self._next_try(now)

    def receive(self, data: bytes, source: object, now: float, *, over_tcp: bool = False) -> bool:
        """Offer one reply (a datagram from ``source``, or a message read over TCP).

        Returns True if the reply was accepted as the answer to an outstanding attempt.
        """
        if self.done:
            self.counters["late"] += 1
            return False
        candidates = [a for a in self._outstanding if a.over_tcp == over_tcp]
        if not over_tcp:
            candidates = [a for a in candidates if _same_endpoint(source, a.server)]
            if not candidates:
                self.counters["wrong_server"] += 1
                return False
        message, problem = self._parse(data)
        if message is None:
            assert problem is not None
            self.counters["malformed"] += 1
            kind = "address_length" if isinstance(problem, BadLength) else problem.kind
            self.counters[f"malformed.{kind}"] += 1
            self._malformed(data, candidates, problem, now)
            return False
        attempt = next((a for a in candidates if a.ident == message.id), None)
        if attempt is None:
            self.counters["wrong_id"] += 1
            return False
        if not message.flags & dns.flags.QR or message.opcode() != dns.opcode.QUERY:
            self.counters["not_response"] += 1
            return False
        if not self._asks_our_question(message):
            self.counters["wrong_question"] += 1
            return False
        self.counters["accepted"] += 1
        self._outstanding.clear()
        self._handle(message, attempt, now)
        return True

    # -- internals ----------------------------------------------------------------------

    def _parse(self, data: bytes
               ) -> tuple[dns.message.Message | None, Malformation | BadLength | None]:
        """The message, or None and why it does not parse."""
        try:
            return dns.message.from_wire(data), None
        except dns.message.TrailingJunk:
            self.counters["trailing_junk"] += 1
            try:  # the records the header announced are all there: use them
                return dns.message.from_wire(data, ignore_trailing=True), None
            except Exception as exc:  # hostile input: any type
                failure = exc
        except Exception as exc:  # dnspython raises many types on hostile input
            failure = exc
        # Checked before the TC rescue below: a record that lies about its length is a
        # broken server, not a cut answer, and must not pass as a truncated one.
        bad = bad_address_length(data)
        if bad is not None:
            self.counters["bad_rdlength"] += 1
            return None, bad
        # A truncated answer may be cut mid-record; its header and question still count.
        try:
            message = dns.message.from_wire(data, question_only=True)
        except Exception:
            return None, diagnose(data, failure)
        if message.flags & dns.flags.TC:
            return message, None
        return None, diagnose(data, failure)

    def _malformed(self, data: bytes, candidates: list[_Attempt],
                   problem: Malformation | BadLength, now: float) -> None:
        """An unparsable reply from an attempt's server (the source was checked already)."""
        if not candidates:
            return  # a stream message with no stream attempt out: nothing to blame
        attempt = candidates[-1]
        if isinstance(problem, BadLength):
            rdtype, rdlength = problem
            expected = ADDRESS_RDLENGTH[rdtype]
            type_name = dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))
            reason = detail = f"{type_name} record with RDLENGTH {rdlength}, not {expected}"
        else:
            reason = problem.reason
            detail = (f"{len(data)} bytes, {reason}" if problem.kind == "short_header" else
                      f"{len(data)} bytes that do not parse as a DNS message ({reason})")
        self._malformed_from.setdefault(attempt.server, []).append(reason)
        text = self._malformed_text(attempt.server, detail)
        if isinstance(problem, BadLength):
            self._last_failure = BadRecordLength(text, rdtype=rdtype, rdlength=rdlength,
                                                 expected=expected)
        else:
            self._last_failure = MalformedReply(text)
        if len(data) < HEADER_SIZE or not data[2] & 0x80:
            return  # cannot tell which query it answers: keep waiting for a good one
        ident = int.from_bytes(data[:2], "big")
        if any(a.ident == ident for a in candidates):
            # The server answered this attempt with bytes we cannot use; waiting longer
            # would only turn its answer into a timeout.
            self._outstanding.clear()
            self._next_try(now)

    def _malformed_text(self, server: Server, detail: str) -> str:
        """The error text for the malformed replies so far; ``detail`` describes the
        latest, from ``server``.  One reply is described; several are counted per
        server with their reasons, as dig's "communications error ... malformed"."""
        if sum(len(r) for r in self._malformed_from.values()) == 1:
            return f"{self.name}: malformed reply from {server[0]}:{server[1]}: {detail}"
        parts = []
        for where, reasons in self._malformed_from.items():
            n = len(reasons)
            said = "; ".join(dict.fromkeys(reasons))  # each reason once, first seen first
            replies = "reply" if n == 1 else "replies"
            parts.append(f"{_server_text(where)} sent {n} malformed {replies} ({said})")
        return f"{self.name}: " + ", ".join(parts)

    def _asks_our_question(self, message: dns.message.Message) -> bool:
        if len(message.question) != 1:
            return False
        question = message.question[0]
        return (
            question.name == self._current  # dns.name compares case-insensitively
            and question.rdtype == self.rdtype
            and question.rdclass == dns.rdataclass.IN
        )

    def _start_question(self, now: float) -> None:
        """Ask the current name afresh: a full set of tries over the servers."""
        self._tries_left = self.attempts * len(self.servers)
        self._outstanding.clear()
        self._send(now, over_tcp=False)

    def _send(self, now: float, *, over_tcp: bool, server: Server | None = None) -> None:
        if server is None:
            server = self.servers[self._server_index % len(self.servers)]
        self._tries_left -= 1
        ident = self._rng.randrange(0x10000)
        query = dns.message.make_query(self._current, self.rdtype)
        query.id = ident
        wait = self.timeout
        if self.until_lifetime:
            done = self.attempts * len(self.servers) - self._tries_left - 1
            wait = _round_wait(self.timeout, done // len(self.servers))
        deadline = min(now + wait, self._end)
        if self.until_lifetime and self._tries_left <= 0:
            deadline = self._end  # the last try may use all the time the caller gave
        self._outstanding.append(_Attempt(ident, server, over_tcp, deadline))
        self._pending = SendQuery(
            server=server, data=query.to_wire(), over_tcp=over_tcp, deadline=deadline
        )
        self.counters["queries_tcp" if over_tcp else "queries_udp"] += 1

    def _next_try(self, now: float) -> None:
        if self._tries_left <= 0:
            self._fail(
                self._last_failure or DnsTimeout(f"{self.name}: no answer from any DNS server")
            )
            return
        self._server_index += 1
        self._send(now, over_tcp=False)

    def _fail(self, error: DnsError) -> None:
        self._error = error
        self._pending = None
        self._outstanding.clear()

    def _handle(self, message: dns.message.Message, attempt: _Attempt, now: float) -> None:
        rcode = message.rcode()
        if message.flags & dns.flags.TC and not attempt.over_tcp:
            self.counters["truncated"] += 1
            if self.allow_tcp:
                # Reported only if the TCP retry fails too: then this, not a timeout.
                server = f"{attempt.server[0]}:{attempt.server[1]}"
                self._last_failure = Truncated(
                    f"{self.name}: truncated answer from {server} and the retry over TCP "
                    "failed")
                self._tries_left += 1  # the stream retry is part of the same try
                self._send(now, over_tcp=True, server=attempt.server)
                return
            if rcode == dns.rcode.NOERROR and self._follow(message, now, truncated=True):
                return
            self._fail(Truncated(f"{self.name}: truncated answer and no TCP to retry"))
            return
        if rcode == dns.rcode.NXDOMAIN:
            self.negative_ttl = self._negative_ttl(message)
            self._fail(NameNotFound(f"{_text(self._current)}: no such name (NXDOMAIN)"))
            return
        if rcode != dns.rcode.NOERROR:
            server = f"{attempt.server[0]}:{attempt.server[1]}"
            text = dns.rcode.to_text(rcode)
            self.counters[f"rcode_{text.lower()}"] += 1
            error_type = Refused if rcode == dns.rcode.REFUSED else ServerFailure
            self._last_failure = error_type(f"{self.name}: {text} from {server}")
            self._next_try(now)
            return
        self._follow(message, now, truncated=False)

    def _follow(self, message: dns.message.Message, now: float, *, truncated: bool) -> bool:
        """Walk the CNAME chain inside the answer; True if it settled the outcome."""
        name = self._current
        ttl = self._ttl
        IN = dns.rdataclass.IN
        while True:
            records = message.get_rrset(message.answer, name, IN, self.rdtype)
            if records:
                addresses = tuple(sorted({str(r.address) for r in records}, key=_sort_key))
                self._result = Answer(
                    name=self.name,
                    canonical_name=_text(name),
                    rdtype=int(self.rdtype),
                    addresses=addresses,
                    ttl=min(ttl, records.ttl),
                )
                return True
            cname = message.get_rrset(message.answer, name, IN, dns.rdatatype.CNAME)
            if not cname:
                break
            target: dns.name.Name = cname[0].target
            ttl = min(ttl, cname.ttl)
            self._hops += 1
            if self._hops > self.max_cnames or target in self._seen:
                self.counters["cname_loops"] += 1
                limit = self.max_cnames
                self._fail(CnameLoop(f"{self.name}: CNAME chain loops or exceeds {limit} hops"))
                return True
            self._seen.add(target)
            name = target
        if truncated:
            return False
        self._ttl = ttl
        if name != self._current:
            # The answer stopped at a CNAME: ask for its target (RFC 1034 5.3.3 step 4).
            self.counters["cname_requeries"] += 1
            self._current = name
            self._start_question(now)
            return True
        self._fail(NoRecords(f"{_text(name)}: no {dns.rdatatype.to_text(self.rdtype)} records"))
        return True

    @staticmethod
    def _negative_ttl(message: dns.message.Message) -> int:
        for rrset in message.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return int(min(rrset.ttl, rrset[0].minimum, MAX_NEGATIVE_TTL))
        return DEFAULT_NEGATIVE_TTL


def _round_wait(timeout: float, round_index: int) -> float:
    """How long each attempt of round ``round_index`` waits when ``attempts=None``."""
    grown: float = timeout * 2.0 ** min(round_index, MAX_ROUNDS)
    return max(timeout, min(grown, MAX_ATTEMPT_WAIT))


def _rounds_within(lifetime: float, timeout: float, servers: int) -> int:
    """How many rounds over ``servers`` start before ``lifetime`` is used up."""
    elapsed = 0.0
    rounds = 0
    while elapsed < lifetime and rounds < MAX_ROUNDS:
        elapsed += servers * max(_round_wait(timeout, rounds), 0.001)
        rounds += 1
    return max(rounds, 1)


def _server_text(server: Server) -> str:
    """A server as the user configured it: the address, with the port only if not 53."""
    host, port = server
    if port == 53:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))
