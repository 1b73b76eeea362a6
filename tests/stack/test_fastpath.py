"""The echo fast path answers exactly like the general path, with valid checksums."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    arps,
    echo_request_frame,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_icmp,
    teach_peer,
)
from vipernet.link.frame import Frame, Offload
from vipernet.stack import Stack
from vipernet.stack.fastpath import answer_echo_fast
from vipernet.wire import IcmpEcho, IcmpType, IpProto, build_icmp


def _reply_of(stack: Stack, frame: Frame) -> tuple[object, IcmpEcho]:
    stack.receive(frame, 1.0)
    [(ip, body)] = ipv4s(stack.transmit())
    reply = parse_icmp(body)  # verifies the (incrementally updated) checksum
    assert isinstance(reply, IcmpEcho)
    return ip, reply


@settings(max_examples=300, deadline=None)
@given(ident=st.integers(0, 0xFFFF), seq=st.integers(0, 0xFFFF),
       payload=st.binary(max_size=1400))
def test_fast_path_reply_has_a_valid_checksum_and_echoes_everything(
        ident: int, seq: int, payload: bytes) -> None:
    stack = make_stack()
    teach_peer(stack)
    frame = echo_request_frame(ident=ident, seq=seq, payload=payload)
    assert answer_echo_fast(stack, memoryview(frame.data)[14:], None, IP_A.packed, 1.0)
    [(ip, body)] = ipv4s(stack.transmit())
    reply = parse_icmp(body)
    assert isinstance(reply, IcmpEcho)
    assert (reply.type, reply.ident, reply.seq, reply.payload) == (
        IcmpType.ECHO_REPLY, ident, seq, payload)
    assert (ip.src, ip.dst, ip.ttl, ip.proto) == (IP_A, IP_PEER, 64, IpProto.ICMP)


def test_fast_path_declines_when_the_neighbour_is_unknown_and_the_general_path_asks_arp() -> None:
    stack = make_stack()
    stack.transmit()
    frame = echo_request_frame()
    assert not answer_echo_fast(stack, memoryview(frame.data)[14:], None, IP_A.packed, 1.0)
    stack.receive(frame, 1.0)
    [request] = arps(stack.transmit())
    assert request.target_ip == IP_PEER


def test_fast_path_declines_partial_checksums_bad_checksums_and_fragments() -> None:
    stack = make_stack()
    teach_peer(stack)
    good = echo_request_frame().data
    partial = Offload(needs_csum=True, csum_start=34, csum_offset=2)
    assert not answer_echo_fast(stack, memoryview(good)[14:], partial, IP_A.packed, 1.0)
    bad = bytearray(good)
    bad[-1] ^= 1
    assert not answer_echo_fast(stack, memoryview(bytes(bad))[14:], None, IP_A.packed, 1.0)
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=1, seq=1, payload=b"x" * 64))
    first = eth(ip_packet(icmp[:40], proto=IpProto.ICMP, mf=True)).data
    assert not answer_echo_fast(stack, memoryview(first)[14:], None, IP_A.packed, 1.0)
    assert stack.transmit() == []


def test_fast_and_general_paths_give_the_same_reply_apart_from_identification() -> None:
    fast = make_stack()
    teach_peer(fast)
    slow = make_stack()
    teach_peer(slow)
    frame = echo_request_frame(ident=3, seq=4, payload=b"same")
    ip_fast, reply_fast = _reply_of(fast, frame)
    # A data_valid offload is trusted by both paths; a needs_csum one forces the general path.
    slow.receive(Frame(frame.data, Offload(needs_csum=True)), 1.0)
    [(ip_slow, body)] = ipv4s(slow.transmit())
    assert parse_icmp(body) == reply_fast
    assert (ip_fast.src, ip_fast.dst, ip_fast.ttl) == (  # type: ignore[attr-defined]
        ip_slow.src, ip_slow.dst, ip_slow.ttl)
