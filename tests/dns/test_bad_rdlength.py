"""An A or AAAA record whose RDLENGTH is not 4 or 16: BadRecordLength, not "does not parse".

Driven sans-IO: each reply is built byte by byte from the query the DnsQuery sent (a
record's RDLENGTH is exactly what dnspython will not let one write wrongly), fed to
``receive`` from the server, and the outcome read from ``next_action``.  A reply that is
merely cut short stays a plain MalformedReply; through netd both are EBADMSG.
"""

from __future__ import annotations

import errno
import random
import struct

import dns.flags
import dns.message
import pytest

from tests.netd.fakes import FakeStack
from vipernet.dns import (
    AAAA,
    A,
    Answer,
    BadRecordLength,
    DnsQuery,
    MalformedReply,
    SendQuery,
    Truncated,
)
from vipernet.netd import protocol as p
from vipernet.netd.dns_op import DnsHandler
from vipernet.netd.protocol import Code, Message
from vipernet.netd.service import NetService

from .helpers import reply

SERVER = ("10.0.2.3", 53)
NOW = 100.0
IN = 1
QR_RD_RA = 0x8180
TC = 0x0200


def start(rdtype: int = A, **kwargs: object) -> tuple[DnsQuery, SendQuery]:
    """A query allowed one try, so the first unusable reply is its outcome."""
    options: dict[str, object] = {"servers": [SERVER], "now": NOW, "rng": random.Random(5),
                                  "rdtype": rdtype, "attempts": 1}
    options.update(kwargs)
    query = DnsQuery("example.test", **options)  # type: ignore[arg-type]
    send = query.next_action(NOW)
    assert isinstance(send, SendQuery)
    return query, send


def record(rtype: int, rdata: bytes, *, rdlength: int | None = None, rclass: int = IN) -> bytes:
    """One answer record owned by the question's name (pointer 0xC00C), with the
    RDLENGTH given (default: the true length of ``rdata``)."""
    length = len(rdata) if rdlength is None else rdlength
    return b"\xc0\x0c" + struct.pack(">HHIH", rtype, rclass, 300, length) + rdata


def crafted(query: bytes, *records: bytes, flags: int = QR_RD_RA) -> bytes:
    """A NOERROR response to ``query`` holding ``records`` in its answer section."""
    counts = struct.unpack_from(">4H", query, 4)
    assert counts == (1, 0, 0, 0), counts  # the question is all there is after the header
    return (query[:2] + struct.pack(">H", flags)
            + struct.pack(">4H", 1, len(records), 0, 0) + query[12:] + b"".join(records))


A_5 = record(A, bytes([10, 0, 2, 2, 9]))  # one byte too many
AAAA_4 = record(AAAA, bytes([10, 0, 2, 2]))  # an IPv4 address in an AAAA record


def test_the_crafted_reply_is_good_when_the_lengths_are_right() -> None:
    """The builder's own check: with correct RDLENGTHs the same bytes are an answer."""
    query, send = start(A)
    good = crafted(send.data, record(A, bytes([10, 0, 2, 2])),
                   record(AAAA, bytes(15) + b"\x01"))
    assert query.receive(good, SERVER, NOW)
    action = query.next_action(NOW)
    assert isinstance(action, Answer) and action.addresses == ("10.0.2.2",)
    assert query.counters["bad_rdlength"] == 0 and query.counters["malformed"] == 0


def test_an_a_record_of_rdlength_5_fails_the_query_with_bad_record_length() -> None:
    query, send = start(A)
    assert not query.receive(crafted(send.data, A_5, AAAA_4), SERVER, NOW)
    with pytest.raises(BadRecordLength) as caught:
        query.next_action(NOW)
    error = caught.value
    assert (error.rdtype, error.rdlength, error.expected) == (A, 5, 4)
    assert str(error) == ("example.test: malformed reply from 10.0.2.3:53: A record with "
                          "RDLENGTH 5, not 4")
    assert isinstance(error, MalformedReply)
    assert query.counters["bad_rdlength"] == 1
    assert query.counters["malformed"] == 1
    assert query.done and query.next_deadline() is None


def test_an_aaaa_record_of_rdlength_4_fails_the_query_with_bad_record_length() -> None:
    query, send = start(AAAA)
    assert not query.receive(crafted(send.data, AAAA_4, A_5), SERVER, NOW)
    with pytest.raises(BadRecordLength) as caught:
        query.next_action(NOW)
    error = caught.value
    assert (error.rdtype, error.rdlength, error.expected) == (AAAA, 4, 16)
    assert "AAAA record with RDLENGTH 4, not 16" in str(error)
    assert query.counters["bad_rdlength"] == 1


def test_the_first_bad_record_in_the_reply_is_the_one_named() -> None:
    """Whatever the question: the reply is broken where its first bad record is."""
    query, send = start(AAAA)
    good_aaaa = record(AAAA, bytes(15) + b"\x01")
    assert not query.receive(crafted(send.data, good_aaaa, A_5, AAAA_4), SERVER, NOW)
    with pytest.raises(BadRecordLength) as caught:
        query.next_action(NOW)
    assert (caught.value.rdtype, caught.value.rdlength) == (A, 5)


@pytest.mark.parametrize(("rtype", "rdlength"), [(A, 0), (A, 3), (A, 16), (AAAA, 0),
                                                 (AAAA, 15), (AAAA, 17)])
def test_every_wrong_address_length_is_named(rtype: int, rdlength: int) -> None:
    query, send = start(rtype)
    assert not query.receive(crafted(send.data, record(rtype, bytes(rdlength))), SERVER, NOW)
    with pytest.raises(BadRecordLength) as caught:
        query.next_action(NOW)
    expected = 4 if rtype == A else 16
    assert (caught.value.rdtype, caught.value.rdlength, caught.value.expected) == (
        rtype, rdlength, expected)


def test_a_bad_length_is_not_excused_by_the_tc_flag() -> None:
    query, send = start(A, allow_tcp=True)
    assert not query.receive(crafted(send.data, A_5, flags=QR_RD_RA | TC), SERVER, NOW)
    with pytest.raises(BadRecordLength):
        query.next_action(NOW)
    assert query.counters["truncated"] == 0 and query.counters["queries_tcp"] == 0


def test_with_tries_left_a_bad_length_moves_on_at_once_and_a_good_reply_wins() -> None:
    query, send = start(A, attempts=2)
    assert not query.receive(crafted(send.data, A_5), SERVER, NOW)
    retry = query.next_action(NOW)  # the server answered that try: no waiting it out
    assert isinstance(retry, SendQuery) and retry.data[:2] != send.data[:2]
    assert query.receive(reply(retry.data, [("example.test.", "A", 60, ["10.0.2.2"])]),
                         SERVER, NOW)
    action = query.next_action(NOW)
    assert isinstance(action, Answer) and action.addresses == ("10.0.2.2",)
    assert query.counters["bad_rdlength"] == 1


def _good_reply(send: SendQuery) -> tuple[bytes, int]:
    """A correct two-record reply, and the offset where its answer section starts."""
    wire = reply(send.data, [("example.test.", "A", 300, ["10.0.2.2", "10.0.2.9"])])
    assert not dns.message.from_wire(wire).flags & dns.flags.TC
    return wire, len(send.data)  # header + question, as in the query


def test_every_cut_inside_the_answer_is_a_plain_malformed_reply() -> None:
    _, send = start(A)
    wire, answers = _good_reply(send)
    assert len(wire) > answers + 2 * (2 + 10 + 4) - 1
    for cut in range(answers + 1, len(wire)):
        query, send = start(A)
        assert send.data[:2] == wire[:2]  # same rng seed: the same query id
        assert not query.receive(wire[:cut], SERVER, NOW)
        with pytest.raises(MalformedReply) as caught:
            query.next_action(NOW)
        assert type(caught.value) is MalformedReply, (cut, caught.value)
        assert query.counters["bad_rdlength"] == 0 and query.counters["malformed"] == 1
        assert "do not parse" in str(caught.value)


def test_a_reply_cut_mid_record_with_tc_on_is_a_truncation_not_a_bad_length() -> None:
    query, send = start(A, allow_tcp=False)
    wire, answers = _good_reply(send)
    cut = bytearray(wire[:answers + 14])  # inside the first record's RDATA
    cut[2] |= TC >> 8
    assert query.receive(bytes(cut), SERVER, NOW)
    with pytest.raises(Truncated):
        query.next_action(NOW)
    assert query.counters["bad_rdlength"] == 0


def test_through_netd_a_bad_length_is_ebadmsg_naming_the_record() -> None:
    stack = FakeStack()
    service = NetService(stack)
    handler = DnsHandler([SERVER[0]], rng=random.Random(2))
    service.extensions[Code.DNS_RESOLVE] = handler
    replies: list[Message] = []
    session = service.open_session(replies.append)
    request = Message(code=Code.DNS_RESOLVE, request_id=7, body=p.ResolveRequest(
        timeout_ms=1000, hostname="example.test").encode())
    service.handle(session, request, NOW)
    assert replies == []  # parked, the query sent
    fake = stack.sockets[0]
    data, server = fake.sent[0]
    assert server == SERVER
    fake.deliver(crafted(data, A_5), SERVER)
    service.on_changed(NOW + 0.01)
    assert len(replies) == 1
    assert replies[0].status == errno.EBADMSG
    assert p.error_text(replies[0]).endswith("A record with RDLENGTH 5, not 4")
    assert service.counters["dns.bad_rdlength"] == 1
