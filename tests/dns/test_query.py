"""The sans-IO DnsQuery: matching replies, rcodes, CNAMEs, truncation, retries, time."""

from __future__ import annotations

import random

import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.dns import (
    AAAA,
    Answer,
    CnameLoop,
    DnsError,
    DnsQuery,
    DnsTimeout,
    InvalidName,
    MalformedReply,
    NameNotFound,
    NoRecords,
    Refused,
    SendQuery,
    ServerFailure,
    Truncated,
    WaitUntil,
)

from .helpers import question_of, reply

SERVER = ("10.0.2.3", 53)
OTHER = ("10.0.2.4", 53)
NOW = 100.0


def start(name: str = "example.test", **kwargs: object) -> tuple[DnsQuery, SendQuery]:
    options: dict[str, object] = {"servers": [SERVER], "now": NOW, "rng": random.Random(7)}
    options.update(kwargs)
    query = DnsQuery(name, **options)  # type: ignore[arg-type]
    action = query.next_action(NOW)
    assert isinstance(action, SendQuery)
    return query, action


def answer_of(query: DnsQuery, now: float = NOW) -> Answer:
    action = query.next_action(now)
    assert isinstance(action, Answer), action
    return action


A_RECORD = [("example.test.", "A", 300, ["10.0.2.2"])]


def test_first_action_is_a_udp_question_for_the_name() -> None:
    _, send = start()
    assert send.server == SERVER and not send.over_tcp and send.deadline == NOW + 1.0
    assert question_of(send.data) == ("example.test", 1)


def test_query_id_comes_from_the_injected_rng() -> None:
    first = start(rng=random.Random(1))[1].data[:2]
    assert start(rng=random.Random(1))[1].data[:2] == first
    ids = {start(rng=random.Random(seed))[1].data[:2] for seed in range(20)}
    assert len(ids) > 15


def test_matching_answer_gives_sorted_addresses_and_ttl() -> None:
    query, send = start()
    records = [("example.test.", "A", 120, ["10.0.2.9", "10.0.2.10", "9.9.9.9"])]
    assert query.receive(reply(send.data, records), SERVER, NOW)
    answer = answer_of(query)
    assert answer.addresses == ("9.9.9.9", "10.0.2.9", "10.0.2.10")
    assert (answer.name, answer.canonical_name, answer.ttl) == ("example.test", "example.test", 120)
    assert query.next_deadline() is None


def test_waits_until_the_attempt_deadline_while_nothing_arrives() -> None:
    query, send = start()
    assert query.next_action(NOW + 0.5) == WaitUntil(deadline=send.deadline)


@pytest.mark.parametrize(
    ("source", "counter"),
    [(OTHER, "wrong_server"), (("10.0.2.3", 5353), "wrong_server"), ("garbage", "wrong_server")],
)
def test_reply_from_elsewhere_is_ignored_and_counted(source: object, counter: str) -> None:
    query, send = start()
    assert not query.receive(reply(send.data, A_RECORD), source, NOW)
    assert query.counters[counter] == 1
    assert isinstance(query.next_action(NOW), WaitUntil)
    assert query.receive(reply(send.data, A_RECORD), SERVER, NOW)
    assert answer_of(query).addresses == ("10.0.2.2",)


def test_reply_with_another_id_is_ignored_and_counted() -> None:
    query, send = start()
    wrong = (int.from_bytes(send.data[:2], "big") + 1) & 0xFFFF
    assert not query.receive(reply(send.data, A_RECORD, ident=wrong), SERVER, NOW)
    assert query.counters["wrong_id"] == 1 and not query.done


def test_reply_to_another_question_is_ignored_and_counted() -> None:
    query, send = start()
    forged = reply(send.data, [("evil.test.", "A", 300, ["6.6.6.6"])], qname="evil.test")
    assert not query.receive(forged, SERVER, NOW)
    assert query.counters["wrong_question"] == 1 and not query.done


def test_question_matches_case_insensitively() -> None:
    query, send = start("Example.TEST")
    assert query.receive(reply(send.data, [("EXAMPLE.test.", "A", 5, ["1.2.3.4"])]), SERVER, NOW)
    assert answer_of(query).name == "example.test"


def test_a_query_echoed_back_is_not_a_response() -> None:
    query, send = start()
    assert not query.receive(reply(send.data, A_RECORD, is_response=False), SERVER, NOW)
    assert query.counters["not_response"] == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_ignored_never_raised(data: bytes) -> None:
    query, _ = start()
    assert not query.receive(data, SERVER, NOW)
    assert not query.done


def test_nxdomain_raises_name_not_found_with_the_soa_negative_ttl() -> None:
    query, send = start("nothing.test")
    soa = [("test.", "SOA", 900, ["ns.test. admin.test. 1 3600 600 86400 120"])]
    query.receive(reply(send.data, rcode=dns.rcode.NXDOMAIN, authority=soa), SERVER, NOW)
    with pytest.raises(NameNotFound, match=r"nothing\.test"):
        query.next_action(NOW)
    assert query.negative_ttl == 120


def test_nodata_raises_no_records() -> None:
    query, send = start()
    query.receive(reply(send.data), SERVER, NOW)
    with pytest.raises(NoRecords):
        query.next_action(NOW)


def test_servfail_moves_to_the_next_server_which_answers() -> None:
    query, send = start(servers=[SERVER, OTHER])
    query.receive(reply(send.data, rcode=dns.rcode.SERVFAIL), SERVER, NOW)
    retry = query.next_action(NOW)
    assert isinstance(retry, SendQuery) and retry.server == OTHER
    assert retry.data[:2] != send.data[:2] or retry.data != send.data  # a fresh id
    query.receive(reply(retry.data, A_RECORD), OTHER, NOW)
    assert answer_of(query).addresses == ("10.0.2.2",)


@pytest.mark.parametrize(
    ("rcode", "error"), [(dns.rcode.SERVFAIL, ServerFailure), (dns.rcode.REFUSED, Refused)]
)
def test_failure_from_every_try_raises_the_last_failure(rcode: int, error: type[Exception]) -> None:
    query, send = start(servers=[SERVER, OTHER], attempts=2)
    action: object = send
    tries = 0
    while isinstance(action, SendQuery):
        tries += 1
        query.receive(reply(action.data, rcode=rcode), action.server, NOW)
        try:
            action = query.next_action(NOW)
        except error:
            break
    else:
        pytest.fail(f"expected {error.__name__}")
    assert tries == 4


def test_timeouts_rotate_servers_then_raise_dns_timeout() -> None:
    query, send = start(servers=[SERVER, OTHER], attempts=2, timeout=1.0, lifetime=30.0)
    servers = [send.server]
    now = NOW
    with pytest.raises(DnsTimeout):
        while True:
            action = query.next_action(now)
            if isinstance(action, SendQuery):
                servers.append(action.server)
            else:
                now = action.deadline  # type: ignore[union-attr]
    assert servers == [SERVER, OTHER, SERVER, OTHER]  # attempts=2 rounds over 2 servers
    assert query.counters["attempt_timeouts"] == 4
    assert now == NOW + 4.0


def test_lifetime_bounds_the_whole_resolution() -> None:
    query, _ = start(timeout=10.0, lifetime=2.5)
    assert query.next_action(NOW) == WaitUntil(deadline=NOW + 2.5)
    with pytest.raises(DnsTimeout):
        query.next_action(NOW + 2.5)


def test_cname_chain_inside_one_answer_is_followed() -> None:
    query, send = start("alias.test")
    records = [
        ("alias.test.", "CNAME", 60, ["mid.test."]),
        ("mid.test.", "CNAME", 30, ["real.test."]),
        ("real.test.", "A", 300, ["10.0.0.1"]),
    ]
    query.receive(reply(send.data, records), SERVER, NOW)
    answer = answer_of(query)
    assert answer.canonical_name == "real.test" and answer.ttl == 30
    assert answer.addresses == ("10.0.0.1",)


def test_cname_without_its_target_asks_for_the_target() -> None:
    query, send = start("alias.test")
    query.receive(reply(send.data, [("alias.test.", "CNAME", 60, ["real.test."])]), SERVER, NOW)
    again = query.next_action(NOW)
    assert isinstance(again, SendQuery) and question_of(again.data) == ("real.test", 1)
    query.receive(reply(again.data, [("real.test.", "A", 600, ["10.0.0.2"])]), SERVER, NOW)
    answer = answer_of(query)
    assert (answer.name, answer.canonical_name, answer.ttl) == ("alias.test", "real.test", 60)


def test_cname_loop_is_detected() -> None:
    query, send = start("a.test")
    loop = [("a.test.", "CNAME", 60, ["b.test."]), ("b.test.", "CNAME", 60, ["a.test."])]
    query.receive(reply(send.data, loop), SERVER, NOW)
    with pytest.raises(CnameLoop):
        query.next_action(NOW)


def test_cname_loop_across_queries_is_detected() -> None:
    query, send = start("a.test")
    query.receive(reply(send.data, [("a.test.", "CNAME", 60, ["b.test."])]), SERVER, NOW)
    again = query.next_action(NOW)
    assert isinstance(again, SendQuery)
    query.receive(reply(again.data, [("b.test.", "CNAME", 60, ["a.test."])]), SERVER, NOW)
    with pytest.raises(CnameLoop):
        query.next_action(NOW)


def test_cname_chain_longer_than_the_limit_is_refused() -> None:
    query, send = start("c0.test", max_cnames=8)
    chain = [(f"c{i}.test.", "CNAME", 60, [f"c{i + 1}.test."]) for i in range(9)]
    query.receive(reply(send.data, [*chain, ("c9.test.", "A", 60, ["1.1.1.1"])]), SERVER, NOW)
    with pytest.raises(CnameLoop, match="8"):
        query.next_action(NOW)


def test_truncated_answer_is_asked_again_over_tcp_when_allowed() -> None:
    query, send = start(allow_tcp=True)
    query.receive(reply(send.data, truncated=True), SERVER, NOW)
    tcp = query.next_action(NOW)
    assert isinstance(tcp, SendQuery) and tcp.over_tcp and tcp.server == SERVER
    many = [("example.test.", "A", 60, [f"10.1.0.{i}" for i in range(1, 61)])]
    # Over TCP the source is the stream itself; a UDP datagram does not answer it.
    assert not query.receive(reply(tcp.data, many), SERVER, NOW)
    assert query.receive(reply(tcp.data, many), None, NOW, over_tcp=True)
    assert len(answer_of(query).addresses) == 60


def test_truncated_answer_without_tcp_uses_what_it_holds_or_fails() -> None:
    query, send = start()
    query.receive(reply(send.data, A_RECORD, truncated=True), SERVER, NOW)
    assert answer_of(query).addresses == ("10.0.2.2",)
    query, send = start()
    query.receive(reply(send.data, truncated=True), SERVER, NOW)
    with pytest.raises(Truncated):
        query.next_action(NOW)


def test_transport_failure_moves_to_the_next_try() -> None:
    query, _ = start(servers=[SERVER, OTHER])
    query.transport_failed(NOW)
    retry = query.next_action(NOW)
    assert isinstance(retry, SendQuery) and retry.server == OTHER


def test_aaaa_lookups_return_ipv6_addresses() -> None:
    query, send = start(rdtype=AAAA)
    assert question_of(send.data) == ("example.test", 28)
    query.receive(reply(send.data, [("example.test.", "AAAA", 60, ["fd00::2"])]), SERVER, NOW)
    assert answer_of(query).addresses == ("fd00::2",)


@pytest.mark.parametrize("name", ["", ".", "a..b", "x" * 64 + ".test", "a." * 130])
def test_invalid_names_are_refused_before_any_query(name: str) -> None:
    with pytest.raises(InvalidName):
        start(name)


def test_late_replies_after_the_answer_are_counted() -> None:
    query, send = start()
    query.receive(reply(send.data, A_RECORD), SERVER, NOW)
    assert not query.receive(reply(send.data, A_RECORD), SERVER, NOW)
    assert query.counters["late"] == 1


RICH_REPLY_RECORDS = [
    ("example.test.", "CNAME", 60, ["mid.test."]),
    ("mid.test.", "A", 60, ["10.0.0.1", "10.0.0.2"]),
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=200), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=0, max_value=200),
)
def test_corrupted_replies_end_in_an_answer_a_dns_error_or_are_ignored(
    edits: list[tuple[int, int]], cut: int
) -> None:
    query, send = start(allow_tcp=True)
    raw = bytearray(reply(send.data, RICH_REPLY_RECORDS))
    for position, value in edits:
        raw[2 + position % (len(raw) - 2)] = value  # keep the id so parsing goes deep
    data = bytes(raw[: len(raw) - cut % 40])
    accepted = query.receive(data, SERVER, NOW)
    try:
        action = query.next_action(NOW)
    except DnsError as exc:
        # Not accepted, yet final: only "this server's reply was unusable", never a timeout.
        assert accepted or isinstance(exc, MalformedReply)
        return
    if not accepted:
        # Ignored (keep waiting), or the server's own id on bytes we cannot use: ask again.
        assert isinstance(action, WaitUntil | SendQuery)
        if isinstance(action, SendQuery):
            assert query.counters["malformed"] == 1


def test_next_deadline_is_now_while_a_send_is_pending_then_the_attempt_deadline() -> None:
    query = DnsQuery("example.test", servers=[SERVER], now=NOW, rng=random.Random(1))
    assert query.next_deadline() == 0.0
    send = query.next_action(NOW)
    assert isinstance(send, SendQuery)
    assert query.next_deadline() == send.deadline
