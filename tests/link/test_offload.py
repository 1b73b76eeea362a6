"""complete_checksum / segment_gso / resolve_offloads against vipernet.wire's parsers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.link.packets import ETH_LEN, GATEWAY_IP, STACK_IP, gso_tcp, partial_tcp, tcp_frame
from vipernet.link.errors import LinkUsageError
from vipernet.link.frame import DeviceCapabilities, Frame, GsoType, Offload
from vipernet.link.offload import (
    OffloadError,
    check_frame_size,
    complete_checksum,
    resolve_offloads,
    segment_gso,
)
from vipernet.wire.ipv4 import parse_ipv4
from vipernet.wire.tcp import TcpFlags, parse_tcp
from vipernet.wire.udp import build_udp, parse_udp


def parse_frame_tcp(data: bytes) -> tuple[object, object, bytes]:
    ip, l4 = parse_ipv4(memoryview(data)[ETH_LEN:])
    tcp, payload = parse_tcp(l4, src=ip.src, dst=ip.dst)  # verifies the checksum
    return ip, tcp, bytes(payload)


def test_complete_checksum_matches_a_fully_computed_tcp_checksum() -> None:
    payload = b"hello, checksum offload" * 7
    completed = complete_checksum(partial_tcp(payload))
    assert completed == tcp_frame(payload)
    parse_frame_tcp(completed)


def test_complete_checksum_of_an_odd_length_payload_verifies() -> None:
    completed = complete_checksum(partial_tcp(b"x" * 1461))
    assert parse_frame_tcp(completed)[2] == b"x" * 1461


def test_complete_checksum_turns_a_zero_udp_checksum_into_ffff() -> None:
    # Find a payload whose UDP checksum computes to 0: then the wire must carry 0xFFFF.
    for n in range(70000):
        payload = n.to_bytes(4, "big")
        udp = build_udp(1, 2, payload, src=STACK_IP, dst=GATEWAY_IP)
        if udp[6:8] == b"\xff\xff":
            break
    else:
        pytest.skip("no payload with a zero UDP checksum found")
    # A device would see the pseudo-header sum in the field; recreate that partial state.
    from vipernet.wire.checksum import pseudo_header_sum
    from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4

    partial = bytearray(udp)
    partial[6:8] = pseudo_header_sum(STACK_IP, GATEWAY_IP, 17, len(udp)).to_bytes(2, "big")
    ip = build_ipv4(IPv4Header(src=STACK_IP, dst=GATEWAY_IP, proto=IpProto.UDP), bytes(partial))
    frame = Frame(bytes(ETH_LEN) + ip, Offload(needs_csum=True, csum_start=34, csum_offset=6))
    completed = complete_checksum(frame)
    assert completed[34 + 6:34 + 8] == b"\xff\xff"
    parse_udp(memoryview(completed)[34:], src=STACK_IP, dst=GATEWAY_IP)


def test_complete_checksum_leaves_a_frame_without_offload_alone() -> None:
    data = tcp_frame(b"abc")
    assert complete_checksum(Frame(bytearray(data))) == data


@pytest.mark.parametrize(("start", "offset"), [(0, 16), (34, 70000), (2000, 0), (34, -1)])
def test_complete_checksum_rejects_offsets_outside_the_frame(start: int, offset: int) -> None:
    frame = Frame(tcp_frame(b"abc"), Offload(needs_csum=True, csum_start=start,
                                              csum_offset=offset))
    with pytest.raises(OffloadError):
        complete_checksum(frame)


def test_segment_gso_cuts_mss_sized_segments_with_valid_headers() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    frame = gso_tcp(payload, 1448, seq=0xFFFFF000, ident=0xFFFE,
                    flags=TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN | TcpFlags.CWR)
    segments = segment_gso(frame)
    assert len(segments) == 8  # 7 * 1448 = 10136, then 104
    joined = b""
    for index, segment in enumerate(segments):
        assert segment.offload is None
        assert len(segment.data) <= 1514
        ip, tcp, data = parse_frame_tcp(bytes(segment.data))
        assert ip.ident == (0xFFFE + index) & 0xFFFF  # type: ignore[attr-defined]
        assert tcp.seq == (0xFFFFF000 + len(joined)) & 0xFFFFFFFF  # type: ignore[attr-defined]
        last = index == len(segments) - 1
        flags = tcp.flags  # type: ignore[attr-defined]
        assert bool(flags & TcpFlags.FIN) == last
        assert bool(flags & TcpFlags.PSH) == last
        assert bool(flags & TcpFlags.CWR) == (index == 0)
        assert flags & TcpFlags.ACK
        joined += data
    assert joined == payload


def test_segment_gso_of_a_small_frame_gives_one_completed_frame() -> None:
    segments = segment_gso(gso_tcp(b"tiny", 1448))
    assert [bytes(s.data) for s in segments] == [tcp_frame(b"tiny")]


def test_segment_gso_refuses_non_tcp_and_bad_mss() -> None:
    with pytest.raises(OffloadError):
        segment_gso(Frame(bytes(60)), 1448)
    with pytest.raises(OffloadError):
        segment_gso(Frame(tcp_frame(b"x")), 0)
    with pytest.raises(OffloadError):
        segment_gso(Frame(tcp_frame(b"x"), Offload(gso_type=GsoType.UDP, gso_size=100)))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(0, 300))
def test_segment_gso_on_garbage_raises_only_offload_error(data: bytes, mss: int) -> None:
    with contextlib.suppress(OffloadError):
        segment_gso(Frame(data), mss)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(0, 300), st.integers(0, 300))
def test_complete_checksum_on_garbage_raises_only_offload_error(
        data: bytes, start: int, offset: int) -> None:
    with contextlib.suppress(OffloadError):
        complete_checksum(Frame(data, Offload(needs_csum=True, csum_start=start,
                                              csum_offset=offset)))


def test_resolve_offloads_does_what_the_device_cannot() -> None:
    payload = b"z" * 5000
    gso = gso_tcp(payload, 1000)
    assert resolve_offloads(gso, csum=True, tso=True) == [gso]
    cut = resolve_offloads(gso, csum=True, tso=False)
    assert len(cut) == 5 and all(f.offload is None for f in cut)
    partial = partial_tcp(b"abc")
    done = resolve_offloads(partial, csum=False, tso=False)
    assert done[0].offload is None and done[0].data == tcp_frame(b"abc")
    assert resolve_offloads(partial, csum=True, tso=False) == [partial]


def test_check_frame_size_refuses_oversized_and_runt_frames() -> None:
    caps = DeviceCapabilities()
    check_frame_size("d", Frame(bytes(1514)), caps)
    with pytest.raises(LinkUsageError, match="max_frame=1514"):
        check_frame_size("d", Frame(bytes(1515)), caps)
    with pytest.raises(LinkUsageError):
        check_frame_size("d", Frame(bytes(13)), caps)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20000), st.integers(200, 9000), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFF))
def test_segment_gso_preserves_the_byte_stream_for_any_size_and_mss(
        size: int, mss: int, seq: int, ident: int) -> None:
    payload = (bytes(range(251)) * (size // 251 + 1))[:size]
    segments = segment_gso(gso_tcp(payload, mss, seq=seq, ident=ident))
    assert len(segments) == max(1, -(-size // mss))
    joined = b""
    for index, segment in enumerate(segments):
        ip, tcp, data = parse_frame_tcp(bytes(segment.data))  # both checksums verified
        assert ip.ident == (ident + index) & 0xFFFF  # type: ignore[attr-defined]
        assert tcp.seq == (seq + len(joined)) & 0xFFFFFFFF  # type: ignore[attr-defined]
        assert len(data) <= mss
        joined += data
    assert joined == payload
