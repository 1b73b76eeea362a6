"""The blocking Resolver over fake sockets and a fake clock: ports, retries, the cache."""

from __future__ import annotations

import random

import dns.rcode
import pytest

from vipernet.dns import DnsCache, DnsTimeout, NameNotFound, Resolver
from vipernet.dns.cache import Answer

from .helpers import FakeClock, FakeNetwork, question_of, reply

SERVER = ("10.0.2.3", 53)


def resolver(network: FakeNetwork, **kwargs: object) -> Resolver:
    return Resolver(
        network.factory,
        ["10.0.2.3"],
        network.clock,
        random.Random(3),
        **kwargs,  # type: ignore[arg-type]
    )


def answering(ttl: int = 300, address: str = "10.0.2.2") -> object:
    def server(query: bytes, to: tuple[str, int]) -> list[tuple[bytes, object]]:
        name, _ = question_of(query)
        return [(reply(query, [(name + ".", "A", ttl, [address])]), to)]

    return server


def test_resolve_binds_port_zero_sends_to_the_server_and_closes() -> None:
    network = FakeNetwork(FakeClock(), answering())  # type: ignore[arg-type]
    assert resolver(network).resolve("example.test") == ["10.0.2.2"]
    (sock,) = network.sockets
    assert sock.bound == ("0.0.0.0", 0) and sock.closed
    assert network.sent[0][1] == SERVER


def test_forged_replies_are_ignored_and_the_real_one_accepted() -> None:
    def server(query: bytes, to: tuple[str, int]) -> list[tuple[bytes, object]]:
        ident = int.from_bytes(query[:2], "big")
        return [
            (reply(query, [("example.test.", "A", 60, ["6.6.6.6"])]), ("10.0.2.3", 5353)),
            (reply(query, [("example.test.", "A", 60, ["6.6.6.7"])], ident=ident ^ 1), to),
            (reply(query, [("example.test.", "A", 60, ["10.0.2.2"])]), to),
        ]

    network = FakeNetwork(FakeClock(), server)
    res = resolver(network)
    assert res.resolve("example.test") == ["10.0.2.2"]
    assert res.counters["wrong_server"] == 1 and res.counters["wrong_id"] == 1


def test_each_retry_uses_a_new_socket_and_a_new_id() -> None:
    calls: list[bytes] = []

    def server(query: bytes, to: tuple[str, int]) -> list[tuple[bytes, object]]:
        calls.append(query)
        if len(calls) < 3:
            return []  # lost
        return [(reply(query, [("example.test.", "A", 60, ["10.0.2.2"])]), to)]

    clock = FakeClock()
    network = FakeNetwork(clock, server)
    res = resolver(network, attempts=3, timeout=1.0)
    assert res.resolve("example.test") == ["10.0.2.2"]
    assert len(network.sockets) == 3 and all(s.closed for s in network.sockets)
    assert len({q[:2] for q in calls}) == 3
    assert clock.now == pytest.approx(1002.0)


def test_silence_raises_dns_timeout_after_all_attempts() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, lambda q, to: [])
    with pytest.raises(DnsTimeout):
        resolver(network, attempts=2, timeout=0.5).resolve("example.test")
    assert len(network.sent) == 2 and clock.now == pytest.approx(1001.0)


def test_answers_are_cached_until_their_ttl_expires() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, answering(ttl=30))  # type: ignore[arg-type]
    res = resolver(network)
    res.resolve("example.test")
    clock.now += 29
    res.resolve("EXAMPLE.test.")
    assert len(network.sent) == 1 and res.counters["cache_hits"] == 1
    clock.now += 1
    res.resolve("example.test")
    assert len(network.sent) == 2


def test_ttl_zero_answers_are_not_cached() -> None:
    network = FakeNetwork(FakeClock(), answering(ttl=0))  # type: ignore[arg-type]
    res = resolver(network)
    res.resolve("example.test")
    res.resolve("example.test")
    assert len(network.sent) == 2


def test_nxdomain_is_cached_for_the_negative_ttl() -> None:
    def server(query: bytes, to: tuple[str, int]) -> list[tuple[bytes, object]]:
        soa = [("test.", "SOA", 60, ["ns.test. a.test. 1 2 3 4 10"])]
        return [(reply(query, rcode=dns.rcode.NXDOMAIN, authority=soa), to)]

    clock = FakeClock()
    network = FakeNetwork(clock, server)
    res = resolver(network)
    for _ in range(2):
        with pytest.raises(NameNotFound):
            res.resolve("nothing.test")
    assert len(network.sent) == 1
    clock.now += 10
    with pytest.raises(NameNotFound):
        res.resolve("nothing.test")
    assert len(network.sent) == 2


def test_address_literals_resolve_to_themselves_without_a_query() -> None:
    network = FakeNetwork(FakeClock(), lambda q, to: [])
    assert resolver(network).resolve("10.0.2.2") == ["10.0.2.2"]
    assert network.sent == []


def test_send_errors_move_on_to_the_next_attempt() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, answering())  # type: ignore[arg-type]
    failing = {"left": 1}
    original = network.factory

    def factory() -> object:
        sock = original()
        if failing["left"]:
            failing["left"] -= 1

            def refuse(data: bytes, address: tuple[str, int], /) -> int:
                raise OSError(101, "Network is unreachable")

            sock.sendto = refuse  # type: ignore[method-assign]
        return sock

    res = Resolver(factory, ["10.0.2.3"], clock, random.Random(1))  # type: ignore[arg-type]
    assert res.resolve("example.test") == ["10.0.2.2"]
    assert res.counters["transport_failures"] == 1


def test_cache_evicts_the_entry_that_expires_first_when_full() -> None:
    cache = DnsCache(max_entries=2)
    for name, ttl in (("a.test", 10), ("b.test", 5), ("c.test", 20)):
        answer = Answer(name=name, canonical_name=name, rdtype=1, addresses=("1.1.1.1",), ttl=ttl)
        cache.put_answer(answer, 0.0)
    assert len(cache) == 2
    assert cache.get("b.test", 1, 0.0) is None
    assert cache.get("a.test", 1, 0.0) is not None and cache.get("c.test", 1, 0.0) is not None
