"""Hostile input: the segment parser, the layer's receive path and the reassembly queue
under hypothesis.  Nothing may raise except the typed SegmentError from the parser, and
reassembly must hand out every byte once, in order, whatever the arrival order."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcp.harness import LPORT, Harness, Peer
from vipernet.stack.tcp.recv_buffer import RecvBuffer
from vipernet.stack.tcp.segment import (
    Segment,
    build_segment,
    checksum_ok,
    finish_checksum,
    parse_segment,
)
from vipernet.stack.tcp.state import SegmentError
from vipernet.wire.checksum import internet_checksum, pseudo_header_sum
from vipernet.wire.tcp import TcpFlags, TcpOptions

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=120))
def test_parse_segment_raises_only_segment_error(data: bytes) -> None:
    try:
        seg = parse_segment(data)
    except SegmentError:
        return
    assert isinstance(seg, Segment)
    assert len(seg.payload) <= len(data) - 20


@SETTINGS
@given(st.binary(min_size=20, max_size=60), st.integers(0, 255))
def test_parse_segment_with_random_options_never_crashes(opts: bytes, flags: int) -> None:
    opts = opts[: len(opts) - len(opts) % 4][:40]
    raw = build_segment(src_port=1, dst_port=2, seq=3, ack=4, flags=flags, window=5,
                        options=opts, payload=b"data")
    try:
        seg = parse_segment(raw)
    except SegmentError:
        return
    assert bytes(seg.payload) == b"data"


@SETTINGS
@given(st.binary(max_size=3000), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_our_checksum_matches_the_wire_codec(payload: bytes, src: int, dst: int) -> None:
    seg = build_segment(src_port=7, dst_port=9, seq=1, ack=2, flags=0x18, window=100,
                        payload=payload)
    finish_checksum(src, dst, seg)
    assert checksum_ok(src, dst, seg)
    pseudo = pseudo_header_sum(IPv4Address(src), IPv4Address(dst), 6, len(seg))
    assert internet_checksum(bytes(seg), pseudo) == 0


@SETTINGS
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_layer_receive_of_garbage_never_raises(blobs: list[bytes]) -> None:
    h = Harness()
    h.listen()
    src = IPv4Address("10.0.0.2")
    for blob in blobs:
        h.layer.receive(SimpleNamespace(src=src, dst=IPv4Address("10.0.0.1")), memoryview(blob),
                        None, 0.0)
    # garbage (bad checksums) gets no answer, only counters
    assert not [s for s in h.recv() if not s.flags & TcpFlags.RST]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(list(TcpFlags)), st.integers(-70000, 70000),
                          st.integers(-70000, 70000), st.binary(max_size=40),
                          st.integers(0, 65535)), max_size=25))
def test_established_connection_survives_random_valid_segments(
        events: list[tuple[TcpFlags, int, int, bytes, int]]) -> None:
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460, sack_permitted=True,
                                                  window_scale=2))
    sock.send(b"q" * 5000, h.now)
    for flags, dseq, dack, payload, window in events:
        h.send(peer, flags, seq=peer.seq + dseq, ack=peer.ack + dack, payload=payload,
               window=window, advance=False)
        h.advance(0.05)
    h.recv()
    assert sock.state.name in {"ESTABLISHED", "CLOSE_WAIT", "CLOSED", "SYN_RECEIVED"}
    with_options = TcpOptions(sack_blocks=((peer.ack + 10, peer.ack + 100),))
    h.send(peer, TcpFlags.ACK, options=with_options, advance=False)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31), st.binary(min_size=1, max_size=4000), st.randoms())
def test_reassembly_delivers_every_byte_once_in_order(base: int, data: bytes,
                                                      rnd: random.Random) -> None:
    # cut the stream into random pieces, shuffle, duplicate some, feed as the engine does
    cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(0, 12))))
    pieces = [(a, data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    arrivals = pieces + [p for p in pieces if rnd.random() < 0.3]
    overlaps = [(a, data[a:a + rnd.randint(1, 50)]) for a, _ in pieces if rnd.random() < 0.2]
    arrivals += overlaps
    rnd.shuffle(arrivals)
    rb = RecvBuffer()
    nxt = base
    for off, chunk in arrivals:
        start = base + off
        end = start + len(chunk)
        if end <= nxt:
            continue
        if start <= nxt:
            rb.push(chunk[nxt - start:])
            nxt = rb.pop_ready(end)
        else:
            assert rb.add_out_of_order(start, chunk)
        blocks = rb.sack_blocks()
        assert all(s > nxt and s < e for s, e in blocks)
    assert nxt == base + len(data)
    assert rb.read(len(data) + 10) == data
    assert rb.ooo_bytes == 0 and not rb.has_gaps


def test_listener_ignores_segments_for_other_ports() -> None:
    h = Harness()
    h.listen()
    h.send(Peer(our_port=LPORT + 1), TcpFlags.SYN, ack=0)
    assert h.recv_one().flags == TcpFlags.RST | TcpFlags.ACK
