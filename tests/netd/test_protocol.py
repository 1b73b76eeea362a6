"""The netd IPC codec: framing, every body round-trips, hostile bytes give typed errors."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.netd import protocol as p
from vipernet.stack.socket_api import SocketKind

BODIES: list[p.Body] = [
    p.Empty(),
    p.CreateRequest(kind=SocketKind.UDP),
    p.SocketRef(sock=7),
    p.AddressBody(address=("10.0.2.15", 5353)),
    p.BindRequest(sock=1, address=("0.0.0.0", 0)),
    p.ConnectRequest(sock=2, timeout_ms=p.FOREVER, address=("10.0.2.2", 80)),
    p.ListenRequest(sock=3, backlog=128),
    p.WaitRequest(sock=4, timeout_ms=1500),
    p.AcceptReply(sock=5, address=("10.0.2.2", 40000)),
    p.SendRequest(sock=6, timeout_ms=0, flags=p.SendFlags.ALL, data=b"x" * 1000),
    p.SendToRequest(sock=6, timeout_ms=9, flags=p.SendFlags(0), address=("1.2.3.4", 9),
                    data=b"hello"),
    p.CountBody(count=123456),
    p.RecvRequest(sock=8, timeout_ms=10, max_bytes=p.MAX_DATA),
    p.RecvFromReply(address=("10.0.2.3", 53), data=b"\x00\x01"),
    p.PollBody(timeout_ms=5, entries=((1, 1), (2, 4))),
    p.ShutdownRequest(sock=9, how=2),
    p.SetSockOptRequest(sock=10, option=p.SockOpt.TCP_NODELAY, value=-1),
    p.ErrnoBody(errno=111),
    p.ResolveRequest(timeout_ms=2000, hostname="example.test"),
    p.ResolveReply(addresses=("10.0.2.2", "192.0.2.1")),
    p.PingRequest(destination="10.0.2.2", seq=1, timeout_ms=1000, payload=bytes(56)),
    p.PingReply(source="10.0.2.2", seq=1, ttl=64, rtt_ns=310_000, size=64),
    p.JsonBody(value={"ip": "10.0.2.15", "mtu": 1500}),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_body_round_trips(body: p.Body) -> None:
    assert type(body).decode(body.encode()) == body


TAILED = (p.SendRequest, p.SendToRequest, p.RecvFromReply, p.PingRequest)


@pytest.mark.parametrize("body", [b for b in BODIES if b.encode() and not isinstance(b, TAILED)],
                         ids=lambda b: type(b).__name__)
def test_every_fixed_body_rejects_trailing_bytes(body: p.Body) -> None:
    with pytest.raises(p.MalformedMessage):
        type(body).decode(body.encode() + b"\x00")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_truncated_body_is_malformed_or_shorter_valid(body: p.Body) -> None:
    wire = body.encode()
    for cut in range(len(wire)):
        try:
            type(body).decode(wire[:cut])
        except p.MalformedMessage:
            continue
        # Only bodies that end in a free-length tail may decode when cut inside that tail.
        assert isinstance(body, TAILED)


def test_header_is_twelve_bytes_big_endian() -> None:
    msg = p.Message(code=p.Code.SOCKET_RECV, request_id=0x01020304, body=b"ab")
    assert msg.encode() == bytes.fromhex("00000002 07 00 0000 01020304") + b"ab"


def test_spec_codes_keep_their_values() -> None:
    assert [int(c) for c in (p.Code.SOCKET_CREATE, p.Code.SOCKET_POLL, p.Code.DNS_RESOLVE,
                             p.Code.PING, p.Code.GET_INFO)] == [0x01, 0x09, 0x14, 0x28, 0x29]


def test_decoder_reassembles_messages_fed_one_byte_at_a_time() -> None:
    msgs = [p.Message(code=c, request_id=i, body=bytes([i]) * i) for i, c in
            enumerate((1, 2, 0x29, 0x99), start=1)]
    stream = b"".join(m.encode() for m in msgs)
    decoder = p.FrameDecoder()
    out: list[p.Message] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert out == msgs
    assert decoder.buffered == 0


def test_decoder_returns_all_messages_fed_at_once_and_keeps_the_partial_tail() -> None:
    msgs = [p.Message(code=1, request_id=i, body=b"z" * 3) for i in range(5)]
    stream = b"".join(m.encode() for m in msgs)
    decoder = p.FrameDecoder()
    assert decoder.feed(stream + stream[:7]) == msgs
    assert decoder.buffered == 7


def test_decoder_rejects_oversized_length_before_buffering_it() -> None:
    with pytest.raises(p.FramingError, match="exceeds"):
        p.FrameDecoder().feed(struct.pack(">IBBHI", p.MAX_BODY + 1, 1, 0, 0, 1))


def test_decoder_rejects_unknown_flags_and_status_on_requests() -> None:
    with pytest.raises(p.FramingError):
        p.FrameDecoder().feed(struct.pack(">IBBHI", 0, 1, 0x80, 0, 1))
    with pytest.raises(p.FramingError):
        p.FrameDecoder().feed(struct.pack(">IBBHI", 0, 1, 0, 5, 1))


def test_error_reply_echoes_code_and_id_and_carries_errno_and_text() -> None:
    req = p.Message(code=0x77, request_id=42)
    reply = p.error_reply(req, 38, "unknown code 0x77")
    decoded = p.FrameDecoder().feed(reply.encode())[0]
    assert (decoded.code, decoded.request_id, decoded.status, decoded.is_reply) == (0x77, 42, 38,
                                                                                    True)
    assert p.error_text(decoded) == "unknown code 0x77"


def test_error_text_is_capped() -> None:
    reply = p.error_reply(p.Message(code=1, request_id=1), 22, "x" * 5000)
    assert len(reply.body) == p.MAX_ERROR_TEXT


def test_recv_asking_for_more_than_the_cap_is_malformed() -> None:
    body = struct.pack(">III", 1, 0, p.MAX_DATA + 1)
    with pytest.raises(p.MalformedMessage, match="max_bytes"):
        p.RecvRequest.decode(body)


def test_create_with_unknown_kind_is_malformed() -> None:
    with pytest.raises(p.MalformedMessage, match="kind"):
        p.CreateRequest.decode(b"\x09")


def test_timeouts_map_none_zero_and_fractions() -> None:
    assert p.timeout_to_ms(None) == p.FOREVER
    assert p.timeout_to_ms(0) == 0
    assert p.timeout_to_ms(0.0001) == 1
    assert p.timeout_to_ms(1.5) == 1500
    assert p.timeout_from_ms(p.FOREVER) is None
    assert p.timeout_from_ms(250) == 0.25


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_into_every_decoder_give_only_malformed(data: bytes) -> None:
    for cls in {type(b) for b in BODIES}:
        with contextlib.suppress(p.MalformedMessage):
            cls.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_stream_into_the_frame_decoder_gives_messages_or_framing_error(
        data: bytes) -> None:
    try:
        for msg in p.FrameDecoder().feed(data):
            assert len(msg.body) <= p.MAX_BODY
    except p.FramingError:
        pass
