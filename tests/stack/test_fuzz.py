"""Hostile frames: random and mutated input never escapes Stack.receive as an exception, and
the stack still answers a ping afterwards."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    MAC_A,
    arp_frame,
    echo_request_frame,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_icmp,
    teach_peer,
    udp_frame,
)
from vipernet.link.frame import Frame, GsoType, Offload
from vipernet.stack import Stack
from vipernet.wire import ArpOp, IcmpEcho, IcmpError, IcmpType, IpProto, build_icmp

_SEEDS = [
    udp_frame(b"payload" * 10).data,
    echo_request_frame(payload=b"x" * 40).data,
    arp_frame(ArpOp.REQUEST).data,
    arp_frame(ArpOp.REPLY, dst=MAC_A).data,
    eth(ip_packet(b"f" * 64, offset=0, mf=True)).data,
    eth(ip_packet(b"g" * 64, offset=64, mf=False)).data,
    eth(ip_packet(build_icmp(IcmpError(
        type=IcmpType.DEST_UNREACHABLE, code=3,
        quoted=ip_packet(b"\0" * 8, src=IP_A, dst=IP_PEER))), proto=IpProto.ICMP)).data,
]

_offloads = st.one_of(st.none(), st.builds(
    Offload, needs_csum=st.booleans(), data_valid=st.booleans(),
    csum_start=st.integers(0, 70000), csum_offset=st.integers(0, 70000),
    gso_type=st.sampled_from(list(GsoType)), gso_size=st.integers(0, 70000),
    hdr_len=st.integers(0, 70000)))


def _still_answers_a_ping(stack: Stack) -> None:
    assert stack.counters["stack.rx.internal_error"] == 0
    stack.poll(100.0)
    stack.transmit()
    teach_peer(stack, 100.0)
    stack.receive(echo_request_frame(ident=77, seq=1, payload=b"alive"), 100.0)
    replies = [parse_icmp(body) for _ip, body in ipv4s(stack.transmit())]
    assert any(isinstance(r, IcmpEcho) and r.ident == 77 and r.payload == b"alive"
               for r in replies)
    assert stack.counters["stack.poll.internal_error"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=1600), broadcast=st.booleans(), ethertype=st.sampled_from(
    [b"\x08\x00", b"\x08\x06", b"\x86\xdd", b"\x00\x00"]), offload=_offloads)
def test_random_frames_never_raise_and_the_stack_still_answers(
        body: bytes, broadcast: bool, ethertype: bytes, offload: Offload | None) -> None:
    stack = make_stack()
    teach_peer(stack)
    dst = b"\xff" * 6 if broadcast else MAC_A
    stack.receive(Frame(dst + b"\x02\0\0\0\0\xee" + ethertype + body, offload), 1.0)
    stack.transmit()
    _still_answers_a_ping(stack)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_frames_never_raise_and_the_stack_still_answers(data: st.DataObject
                                                                      ) -> None:
    stack = make_stack()
    teach_peer(stack)
    sock = stack.udp_socket()
    sock.bind(("", 53))
    for _ in range(data.draw(st.integers(1, 4))):
        frame = bytearray(data.draw(st.sampled_from(_SEEDS)))
        for _ in range(data.draw(st.integers(0, 6))):
            pos = data.draw(st.integers(14, len(frame) - 1))
            frame[pos] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(frame)))
        if data.draw(st.booleans()):
            frame = frame[:max(cut, 14)]
        stack.receive(Frame(bytes(frame), data.draw(_offloads)), 1.0)
    stack.transmit()
    while sock.readable:
        sock.recv(65536)
    _still_answers_a_ping(stack)


def test_a_flood_of_first_fragments_stays_within_the_memory_cap() -> None:
    stack = make_stack()
    for ident in range(500):
        stack.receive(eth(ip_packet(b"h" * 1472, ident=ident, offset=0, mf=True)), 1.0)
    assert stack.ipv4.reassembler.held_bytes <= stack.config.reassembly_max_bytes
    assert len(stack.ipv4.reassembler) <= stack.config.reassembly_max_datagrams
    _still_answers_a_ping(stack)
