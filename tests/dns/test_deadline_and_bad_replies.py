"""Issue 16 section 2 (DNS), sans-IO: the caller's timeout is the whole query's deadline;
trailing junk after a good reply is used and counted; unusable replies give a typed error
naming the server, never a timeout."""

from __future__ import annotations

import itertools
import random

import dns.rcode
import pytest

from vipernet.dns import (
    Answer,
    DnsQuery,
    DnsTimeout,
    MalformedReply,
    Refused,
    Resolver,
    SendQuery,
    Truncated,
    WaitUntil,
)
from vipernet.dns.query import MAX_ATTEMPT_WAIT

from .helpers import FakeClock, FakeNetwork, reply

SERVER = ("10.0.2.3", 53)
OTHER = ("10.0.2.4", 53)
NOW = 100.0
A_RECORD = [("example.test.", "A", 300, ["10.0.2.2"])]


def deadline_query(lifetime: float, servers: list[tuple[str, int]] | None = None,
                   **kwargs: object) -> DnsQuery:
    options: dict[str, object] = {"servers": servers or [SERVER], "now": NOW,
                                  "rng": random.Random(5), "timeout": min(1.0, lifetime),
                                  "attempts": None, "lifetime": lifetime}
    options.update(kwargs)
    return DnsQuery("example.test", **options)  # type: ignore[arg-type]


def run_silent(query: DnsQuery) -> tuple[list[tuple[float, SendQuery]], Exception]:
    """Drive ``query`` against servers that never answer; the sends and the final error."""
    now = NOW
    sends: list[tuple[float, SendQuery]] = []
    for _ in range(1000):
        try:
            action = query.next_action(now)
        except Exception as exc:  # the test inspects whatever ends it
            return sends, exc
        if isinstance(action, SendQuery):
            sends.append((now, action))
        else:
            assert isinstance(action, WaitUntil)
            now = action.deadline
    raise AssertionError("the query never ended")


@pytest.mark.parametrize("lifetime", [0.5, 3.0, 20.0, 60.0])
def test_a_silent_server_fails_exactly_at_the_deadline(lifetime: float) -> None:
    sends, error = run_silent(deadline_query(lifetime))
    assert isinstance(error, DnsTimeout)
    assert sends[0][0] == NOW
    assert sends[-1][1].deadline == NOW + lifetime  # the last try waits out the deadline
    # and it is retried within the deadline, with waits that grow but stay bounded
    starts = [t for t, _ in sends]
    waits = [b - a for a, b in itertools.pairwise(starts)]
    assert waits == sorted(waits) and all(w <= MAX_ATTEMPT_WAIT for w in waits)
    assert len(sends) >= (2 if lifetime >= 2 else 1)


def test_twenty_seconds_means_twenty_not_two_tries_of_one() -> None:
    sends, error = run_silent(deadline_query(20.0))
    assert [t - NOW for t, _ in sends] == [0.0, 1.0, 3.0, 7.0, 12.0, 17.0]
    assert isinstance(error, DnsTimeout)


def test_retries_alternate_servers_within_the_deadline() -> None:
    sends, _ = run_silent(deadline_query(6.0, [SERVER, OTHER]))
    assert [a.server for _, a in sends] == [SERVER, OTHER, SERVER, OTHER]
    assert [t - NOW for t, _ in sends] == [0.0, 1.0, 2.0, 4.0]
    assert sends[-1][1].deadline == NOW + 6.0


def test_fixed_attempts_keep_their_old_meaning() -> None:
    query = DnsQuery("example.test", servers=[SERVER], now=NOW, rng=random.Random(5),
                     timeout=1.0, attempts=2, lifetime=20.0)
    sends, error = run_silent(query)
    assert [t - NOW for t, _ in sends] == [0.0, 1.0] and isinstance(error, DnsTimeout)


def test_servers_that_refuse_at_once_end_early_with_their_error_not_a_busy_loop() -> None:
    query = deadline_query(20.0)
    now = NOW
    sends = 0
    with pytest.raises(Refused):
        for _ in range(100):
            action = query.next_action(now)
            assert isinstance(action, SendQuery)
            sends += 1
            query.receive(reply(action.data, rcode=dns.rcode.REFUSED), SERVER, now)
            now += 0.001
    assert sends == query.attempts  # a bounded number of tries, well inside the deadline


def test_a_reply_with_trailing_junk_is_used_and_counted() -> None:
    query = deadline_query(3.0)
    send = query.next_action(NOW)
    assert isinstance(send, SendQuery)
    assert query.receive(reply(send.data, A_RECORD) + b"\x00junk\xff", SERVER, NOW)
    answer = query.next_action(NOW)
    assert isinstance(answer, Answer) and answer.addresses == ("10.0.2.2",)
    assert query.counters["trailing_junk"] == 1 and query.counters["malformed"] == 0


def test_a_reply_cut_short_moves_on_at_once_and_ends_in_malformed_reply() -> None:
    query = deadline_query(3.0)
    now = NOW
    for _ in range(query.attempts):
        send = query.next_action(now)
        assert isinstance(send, SendQuery)
        assert not query.receive(reply(send.data, A_RECORD)[:-3], SERVER, now)
    with pytest.raises(MalformedReply) as caught:
        query.next_action(now)  # no waiting: the server answered every try, badly
    assert str(caught.value) == "example.test: 10.0.2.3 sent 2 malformed replies (cut short)"
    assert query.counters["malformed"] == query.attempts


def test_a_datagram_too_short_to_match_is_kept_as_the_reason_but_waited_past() -> None:
    query = deadline_query(3.0)
    send = query.next_action(NOW)
    assert isinstance(send, SendQuery)
    assert not query.receive(b"\x12\x34\x81", SERVER, NOW)
    # Without an id it could be anyone's: a real answer may still come, so wait on.
    assert isinstance(query.next_action(NOW), WaitUntil)
    _, error = run_silent(query)
    assert isinstance(error, MalformedReply)
    assert "3 bytes, shorter than a DNS header" in str(error)


def test_garbage_from_another_address_is_not_blamed_on_the_server() -> None:
    query = deadline_query(1.0)
    query.next_action(NOW)
    assert not query.receive(b"garbage", OTHER, NOW)
    _, error = run_silent(query)
    assert isinstance(error, DnsTimeout) and query.counters["wrong_server"] == 1


def test_a_truncated_answer_whose_tcp_retry_fails_is_truncated_not_a_timeout() -> None:
    query = deadline_query(3.0, allow_tcp=True)
    now = NOW
    for _ in range(20):
        action = query.next_action(now)
        assert isinstance(action, SendQuery)
        if action.over_tcp:
            query.transport_failed(now)  # the server takes no TCP
        else:
            query.receive(reply(action.data, truncated=True), SERVER, now)
        if query.done:
            break
    with pytest.raises(Truncated, match=r"truncated answer from 10\.0\.2\.3:53 and the retry"):
        query.next_action(now)


def test_resolver_timeout_is_the_deadline_of_the_whole_resolution() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, lambda q, to: [])
    res = Resolver(network.factory, ["10.0.2.3"], clock, random.Random(3), timeout=1.0,
                   attempts=2, lifetime=5.0)
    with pytest.raises(DnsTimeout):
        res.resolve("example.test", timeout=9.0)
    assert clock.now == pytest.approx(1009.0)
    assert len(network.sent) == 4  # at 0, 1, 3 and 7 s
    start = clock.now
    with pytest.raises(DnsTimeout):
        res.resolve("example.test", timeout=0.25)
    assert clock.now - start == pytest.approx(0.25)
