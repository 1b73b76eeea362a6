"""Receive-side reassembly: orders, overlaps (RFC 5722), duplicates, timeouts, memory caps."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_icmp,
    teach_peer,
)
from vipernet.stack import Counters, Stack, StackConfig, UdpSocket
from vipernet.stack.reassembly import Reassembler
from vipernet.wire import IcmpError, IcmpType, IpProto, IPv4Header, build_udp

PAYLOAD = bytes(random.Random(5).randbytes(4000))


def _datagram(data: bytes = PAYLOAD, dport: int = 53) -> bytes:
    return build_udp(5000, dport, data, src=IP_PEER, dst=IP_A)


def _fragments(udp: bytes, size: int = 1480, ident: int = 7) -> list[bytes]:
    out = []
    for off in range(0, len(udp), size):
        out.append(ip_packet(udp[off:off + size], offset=off, mf=off + size < len(udp),
                             ident=ident))
    return out


def _stack_with_socket() -> tuple[Stack, UdpSocket]:
    stack = make_stack()
    teach_peer(stack)
    sock = stack.udp_socket()
    sock.bind(("", 53))
    return stack, sock


def test_fragments_in_order_are_reassembled_and_delivered() -> None:
    stack, sock = _stack_with_socket()
    for frag in _fragments(_datagram()):
        stack.receive(eth(frag), 0.0)
    assert sock.recv(65536) == PAYLOAD
    assert stack.counters["ipv4.reasm.complete"] == 1
    assert stack.ipv4.reassembler.held_bytes == 0


def test_fragments_in_reverse_order_are_reassembled_and_delivered() -> None:
    stack, sock = _stack_with_socket()
    for frag in reversed(_fragments(_datagram())):
        stack.receive(eth(frag), 0.0)
    assert sock.recv(65536) == PAYLOAD


def test_duplicate_fragments_are_tolerated() -> None:
    stack, sock = _stack_with_socket()
    frags = _fragments(_datagram())
    for frag in [frags[0], frags[0], frags[1], frags[1], frags[2]]:
        stack.receive(eth(frag), 0.0)
    assert sock.recv(65536) == PAYLOAD
    assert stack.counters["ipv4.reasm.duplicate"] == 2


def test_conflicting_overlap_drops_the_whole_datagram_and_poisons_its_key() -> None:
    stack, sock = _stack_with_socket()
    udp = _datagram()
    frags = _fragments(udp)
    evil = bytearray(udp[1480 - 8:1480 + 1480 - 8])
    evil[0] ^= 0xFF  # overlaps the first fragment's tail with different bytes
    stack.receive(eth(frags[0]), 0.0)
    stack.receive(eth(ip_packet(bytes(evil), offset=1472, mf=True)), 0.0)
    for frag in frags[1:]:
        stack.receive(eth(frag), 0.0)
    assert not sock.readable
    assert stack.counters["ipv4.reasm.conflicting_overlap"] == 1
    assert stack.counters["ipv4.reasm.poisoned_drop"] == 2
    assert stack.ipv4.reassembler.held_bytes == 0


def test_an_overlap_with_identical_bytes_drops_the_whole_datagram_like_linux() -> None:
    stack, sock = _stack_with_socket()
    udp = _datagram()
    frags = _fragments(udp)
    stack.receive(eth(frags[0]), 0.0)
    stack.receive(eth(ip_packet(udp[1472:1472 + 16], offset=1472, mf=True)), 0.0)
    for frag in frags[1:]:
        stack.receive(eth(frag), 0.0)
    with pytest.raises(BlockingIOError):
        sock.recv(65536)
    assert stack.counters["ipv4.reasm.overlap_drop"] == 1
    assert stack.ipv4.reassembler.held_bytes == 0


def test_an_exact_duplicate_fragment_is_dropped_and_the_datagram_kept() -> None:
    stack, sock = _stack_with_socket()
    frags = _fragments(_datagram())
    stack.receive(eth(frags[0]), 0.0)
    stack.receive(eth(frags[0]), 0.0)
    for frag in frags[1:]:
        stack.receive(eth(frag), 0.0)
    assert sock.recv(65536) == PAYLOAD
    assert stack.counters["ipv4.reasm.duplicate"] == 1


def test_incomplete_datagram_times_out_and_earns_time_exceeded() -> None:
    stack, _sock = _stack_with_socket()
    frags = _fragments(_datagram())
    stack.receive(eth(frags[0]), 0.0)
    stack.receive(eth(frags[2]), 0.0)
    assert stack.next_deadline() == 30.0
    stack.poll(29.9)
    assert stack.transmit() == []
    stack.poll(30.0)
    [(ip, body)] = ipv4s(stack.transmit())
    message = parse_icmp(body)
    assert isinstance(message, IcmpError)
    assert (message.type, message.code, ip.dst) == (IcmpType.TIME_EXCEEDED, 1, IP_PEER)
    assert stack.counters["ipv4.reasm.timeout"] == 1
    assert stack.ipv4.reassembler.held_bytes == 0 and stack.next_deadline() is None


def test_fragment_reaching_past_65535_bytes_is_dropped() -> None:
    stack, _sock = _stack_with_socket()
    stack.receive(eth(ip_packet(b"x" * 1000, offset=65000, mf=False)), 0.0)
    assert stack.counters["ipv4.reasm.too_big"] == 1
    assert len(stack.ipv4.reassembler) == 0


def test_non_final_fragment_of_ragged_length_is_dropped() -> None:
    stack, _sock = _stack_with_socket()
    stack.receive(eth(ip_packet(b"x" * 13, offset=0, mf=True)), 0.0)
    assert stack.counters["ipv4.reasm.bad_length"] == 1


def _header(ident: int, offset: int, mf: bool) -> IPv4Header:
    return IPv4Header(src=IP_PEER, dst=IP_A, proto=IpProto.UDP, ident=ident,
                      fragment_offset=offset, more_fragments=mf)


def test_memory_cap_evicts_the_oldest_datagrams() -> None:
    counters = Counters()
    reasm = Reassembler(StackConfig(reassembly_max_bytes=10_000), counters)
    for ident in range(10):
        assert reasm.add(_header(ident, 0, True), b"y" * 2000, 0.0) is None
    assert reasm.held_bytes <= 10_000
    assert counters["ipv4.reasm.evicted"] == 5
    # The newest survived and completes.
    whole = reasm.add(_header(9, 2000, False), b"z" * 8, 0.0)
    assert whole is not None and whole[1] == b"y" * 2000 + b"z" * 8


def test_datagram_count_cap_evicts_the_oldest() -> None:
    counters = Counters()
    reasm = Reassembler(StackConfig(reassembly_max_datagrams=4), counters)
    for ident in range(6):
        reasm.add(_header(ident, 0, True), b"y" * 8, 0.0)
    assert len(reasm) == 4 and counters["ipv4.reasm.evicted"] == 2


def test_too_many_fragments_for_one_datagram_poisons_it() -> None:
    counters = Counters()
    reasm = Reassembler(StackConfig(reassembly_max_fragments=8), counters)
    for i in range(10):
        reasm.add(_header(1, i * 8, True), b"q" * 8, 0.0)
    assert counters["ipv4.reasm.too_many_fragments"] == 1
    assert reasm.held_bytes == 0


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_order_split_and_duplication_of_fragments_reassembles_the_exact_datagram(
        data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=1, max_size=6000))
    # Cut points on 8-byte boundaries, then pieces in any order, some repeated exactly.
    # (A piece re-cut differently overlaps: that drops the datagram, tested below.)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, (len(payload) - 1) // 8)),
                                         max_size=12))))
    bounds = [0, *(c * 8 for c in cuts if c * 8 < len(payload)), len(payload)]
    pieces = [(a, b) for a, b in itertools.pairwise(bounds) if a < b]
    extra = data.draw(st.lists(st.sampled_from(pieces), max_size=4))
    order = data.draw(st.permutations(pieces + extra))
    reasm = Reassembler(StackConfig(), Counters())
    results = []
    for start, end in order:
        header = _header(99, start, end < len(payload))
        whole = reasm.add(header, payload[start:end], 0.0)
        if whole is not None:
            results.append(whole[1])
    assert results and all(r == payload for r in results)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_partial_overlap_anywhere_means_the_datagram_is_never_delivered(
        data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=24, max_size=4000))
    blocks = len(payload) // 8
    cut = data.draw(st.integers(1, blocks - 1)) * 8  # two fragments: [0, cut) [cut, end)
    # A third piece straddling the cut (identical bytes) overlaps both, duplicates neither.
    lo = data.draw(st.integers(0, cut // 8 - 1)) * 8
    hi = data.draw(st.integers(cut + 1, len(payload)))
    if hi < len(payload):
        hi = max(cut + 8, hi // 8 * 8)
    straddler = (lo, min(hi, len(payload)))
    assume(straddler != (0, len(payload)))  # that is the whole datagram, not a fragment
    order = data.draw(st.permutations([(0, cut), (cut, len(payload)), straddler]))
    counters = Counters()
    reasm = Reassembler(StackConfig(), counters)
    delivered = []
    for start, end in order:
        whole = reasm.add(_header(7, start, end < len(payload)), payload[start:end], 0.0)
        if whole is not None:
            delivered.append(whole[1])
    if order[-1] == straddler:  # the two halves completed it first: one clean delivery
        assert delivered == [payload]
    else:
        assert delivered == []
        assert counters["ipv4.reasm.overlap_drop"] == 1
