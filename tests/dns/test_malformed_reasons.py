"""Issue 15 item 3 (DNS), sans-IO: each way a reply can be malformed is named in words,
counted in ``malformed.KIND``, and the query's error counts the bad replies per server."""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable

import pytest

from tests.netd.fakes import FakeStack
from vipernet.dns import DnsQuery, MalformedReply, SendQuery
from vipernet.dns.malformed import MALFORMED_KINDS, diagnose
from vipernet.netd import protocol as p
from vipernet.netd.dns_op import DnsHandler
from vipernet.netd.protocol import Code, Message
from vipernet.netd.service import NetService

from .helpers import reply

SERVER = ("10.0.2.3", 53)
OTHER = ("10.0.2.4", 5353)
NOW = 100.0
A_RECORD = [("example.test.", "A", 300, ["10.0.2.2"])]


def _owner(query: bytes) -> int:
    """Where the answer's owner name (the pointer 0xC00C) starts in a reply to ``query``."""
    return len(query)


def pointer_loop(query: bytes, wire: bytes) -> bytes:
    at = _owner(query)
    return wire[:at] + struct.pack(">H", 0xC000 | at) + wire[at + 2:]


def pointer_chain_loop(query: bytes, wire: bytes) -> bytes:
    """Two pointers pointing at each other: the owner, and a name in an extra record."""
    at = _owner(query)
    extra = len(wire)
    return (wire[:10] + struct.pack(">H", 1) + wire[12:at] + struct.pack(">H", 0xC000 | extra)
            + wire[at + 2:] + struct.pack(">H", 0xC000 | at) + struct.pack(">HHIH", 1, 1, 1, 4)
            + bytes(4))


def pointer_past_end(query: bytes, wire: bytes) -> bytes:
    at = _owner(query)
    return wire[:at] + struct.pack(">H", 0xC000 | 0x3FF0) + wire[at + 2:]


def pointer_forward(query: bytes, wire: bytes) -> bytes:
    """The owner points at a proper name placed after the record."""
    at = _owner(query)
    after = len(wire)
    return (wire[:at] + struct.pack(">H", 0xC000 | after) + wire[at + 2:] + b"\x01x\x00")


def rdlength(query: bytes, wire: bytes) -> bytes:
    return (wire[:10] + struct.pack(">H", 1) + wire[12:] + b"\xc0\x0c"
            + struct.pack(">HHIH", 16, 1, 60, 200) + b"\x05hello")


def counts(query: bytes, wire: bytes) -> bytes:
    return wire[:6] + struct.pack(">H", 3) + wire[8:]


def label_type(query: bytes, wire: bytes) -> bytes:
    at = _owner(query)
    return wire[:at] + b"\x81a\x00" + wire[at + 2:]


def label_past_end(query: bytes, wire: bytes) -> bytes:
    return wire + b"\x3fabc"  # one more record announced, its owner label runs off the end


def label_too_long(query: bytes, wire: bytes) -> bytes:
    at = _owner(query)
    long_name = (b"\x3f" + b"a" * 63) * 4 + b"\x00"  # 257 bytes
    return wire[:at] + long_name + wire[at + 2:]


def cut_in_fixed_fields(query: bytes, wire: bytes) -> bytes:
    return wire[:_owner(query) + 5]


def cut_in_address(query: bytes, wire: bytes) -> bytes:
    return wire[:-3]


def short_header(query: bytes, wire: bytes) -> bytes:
    return wire[:5]


# name -> (breaker, counter KIND, reason)
CASES: dict[str, tuple[Callable[[bytes, bytes], bytes], str, str]] = {
    "pointer_loop": (pointer_loop, "pointer_loop", "compression pointer loop"),
    "pointer_chain_loop": (pointer_chain_loop, "pointer_loop", "compression pointer loop"),
    "pointer_past_end": (pointer_past_end, "pointer_past_end",
                         "compression pointer to offset 16368, past the end"),
    "pointer_forward": (pointer_forward, "pointer_forward",
                        "compression pointer points forward"),
    "rdlength": (rdlength, "rdlength", "RDLENGTH 200 past the end"),
    "counts": (counts, "counts", "record counts larger than the message"),
    "label_type": (label_type, "label", "bad label (type 0x80)"),
    "label_past_end": (lambda q, w: counts(q, label_past_end(q, w)), "label",
                       "bad label (length 63 past the end)"),
    "label_too_long": (label_too_long, "label", "bad label (name longer than 255 bytes)"),
    "cut_in_fixed_fields": (cut_in_fixed_fields, "truncated", "cut short"),
    "cut_in_address": (cut_in_address, "truncated", "cut short"),
}


def start(attempts: int | None = 1, servers: list[tuple[str, int]] | None = None,
          lifetime: float = 5.0) -> DnsQuery:
    return DnsQuery("example.test", servers=servers or [SERVER], now=NOW,
                    rng=random.Random(5), attempts=attempts, lifetime=lifetime)


def send_of(query: DnsQuery) -> SendQuery:
    action = query.next_action(NOW)
    assert isinstance(action, SendQuery)
    return action


@pytest.mark.parametrize("case", list(CASES))
def test_one_malformed_reply_is_described_and_counted_by_reason(case: str) -> None:
    breaker, kind, reason = CASES[case]
    query = start()
    send = send_of(query)
    bad = breaker(send.data, reply(send.data, A_RECORD))
    assert diagnose(bad).kind == kind  # the walk alone agrees
    assert not query.receive(bad, SERVER, NOW)
    with pytest.raises(MalformedReply) as caught:
        query.next_action(NOW)
    assert str(caught.value) == (f"example.test: malformed reply from 10.0.2.3:53: {len(bad)} "
                                 f"bytes that do not parse as a DNS message ({reason})")
    assert query.counters[f"malformed.{kind}"] == 1 and query.counters["malformed"] == 1
    assert query.counters["attempt_timeouts"] == 0


@pytest.mark.parametrize("case", list(CASES))
def test_several_malformed_replies_are_counted_per_server_without_waiting(case: str) -> None:
    breaker, kind, reason = CASES[case]
    query = start(attempts=None, lifetime=5.0)
    assert query.attempts == 3
    for _ in range(3):
        send = send_of(query)  # at NOW: each bad reply moved the query on at once
        assert not query.receive(breaker(send.data, reply(send.data, A_RECORD)), SERVER, NOW)
    with pytest.raises(MalformedReply) as caught:
        query.next_action(NOW)
    assert str(caught.value) == f"example.test: 10.0.2.3 sent 3 malformed replies ({reason})"
    assert query.counters[f"malformed.{kind}"] == 3


def test_two_servers_each_with_their_count_and_reasons() -> None:
    query = start(attempts=2, servers=[SERVER, OTHER])
    for breaker, source in [(pointer_loop, SERVER), (counts, OTHER), (rdlength, SERVER),
                            (counts, OTHER)]:
        send = send_of(query)
        assert send.server == source
        assert not query.receive(breaker(send.data, reply(send.data, A_RECORD)), source, NOW)
    with pytest.raises(MalformedReply) as caught:
        query.next_action(NOW)
    assert str(caught.value) == (
        "example.test: 10.0.2.3 sent 2 malformed replies (compression pointer loop; "
        "RDLENGTH 200 past the end), 10.0.2.4:5353 sent 2 malformed replies (record counts "
        "larger than the message)")
    assert query.counters["malformed.pointer_loop"] == 1
    assert query.counters["malformed.rdlength"] == 1
    assert query.counters["malformed.counts"] == 2


def test_a_good_reply_after_malformed_ones_still_wins() -> None:
    query = start(attempts=2)
    send = send_of(query)
    assert not query.receive(pointer_loop(send.data, reply(send.data, A_RECORD)), SERVER, NOW)
    send = send_of(query)
    assert query.receive(reply(send.data, A_RECORD), SERVER, NOW)
    assert query.next_action(NOW).addresses == ("10.0.2.2",)  # type: ignore[union-attr]
    assert query.counters["malformed.pointer_loop"] == 1


def test_short_datagrams_are_counted_and_summed_too() -> None:
    """Too short to carry an id, they could be anyone's: each try is waited out, and the
    error still says what the server sent."""
    query = start(attempts=2)
    now = NOW
    with pytest.raises(MalformedReply) as caught:
        for _ in range(10):
            action = query.next_action(now)
            if isinstance(action, SendQuery):
                assert not query.receive(short_header(action.data, action.data), SERVER, now)
            else:
                now = action.deadline  # type: ignore[union-attr]
    assert str(caught.value) == (
        "example.test: 10.0.2.3 sent 2 malformed replies (shorter than a DNS header)")
    assert query.counters["malformed.short_header"] == 2
    assert query.counters["attempt_timeouts"] == 2


def test_trailing_junk_is_not_malformed() -> None:
    query = start()
    send = send_of(query)
    assert query.receive(reply(send.data, A_RECORD) + b"\x00junk", SERVER, NOW)
    assert query.counters["trailing_junk"] == 1
    assert not any(k.startswith("malformed") for k in query.counters)


def test_every_kind_has_words() -> None:
    kinds = {kind for _, kind, _ in CASES.values()} | {"short_header", "address_length",
                                                       "other"}
    assert kinds == set(MALFORMED_KINDS)
    assert diagnose(bytes(12)).kind == "other"  # nothing wrong in the structure


def test_through_netd_the_reason_is_counted_as_dns_malformed_kind() -> None:
    stack = FakeStack()
    service = NetService(stack)
    service.extensions[Code.DNS_RESOLVE] = DnsHandler([SERVER[0]], rng=random.Random(2))
    replies: list[Message] = []
    session = service.open_session(replies.append)
    service.handle(session, Message(code=Code.DNS_RESOLVE, request_id=7, body=p.ResolveRequest(
        timeout_ms=1000, hostname="example.test").encode()), NOW)
    fake = stack.sockets[0]
    data, _ = fake.sent[0]
    fake.deliver(pointer_loop(data, reply(data, A_RECORD)), SERVER)
    service.on_changed(NOW + 0.01)
    assert len(replies) == 1 and replies[0].status == errno.EBADMSG
    assert p.error_text(replies[0]).endswith("(compression pointer loop)")
    assert service.counters["dns.malformed.pointer_loop"] == 1
    assert service.counters["dns.malformed"] == 1
