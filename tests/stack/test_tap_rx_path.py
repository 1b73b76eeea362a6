"""The TAP receive path as the stack sees it (no TAP needed: a SOCK_SEQPACKET pair stands in
for the fd, one datagram per frame, exactly as the TAP hands them over): frames arrive as
views past the virtio header, offloads decoded from repeated headers are reused but never
confused, and a bad header is dropped every time it appears, not only the first."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from vipernet.link.frame import GsoType, Offload
from vipernet.link.tap import TapDevice
from vipernet.link.virtio import VNET_HDR_LEN, build_vnet_hdr

ETH = bytes(range(14))


@pytest.fixture
def wire() -> Iterator[tuple[socket.socket, TapDevice]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    tap = TapDevice(ours.fileno(), "fake0", netns=None, vnet_hdr_len=VNET_HDR_LEN, mtu=1500)
    yield theirs, tap
    ours.close()
    theirs.close()


def test_frames_come_out_byte_exact_with_their_own_offloads(
        wire: tuple[socket.socket, TapDevice]) -> None:
    peer, tap = wire
    gso = Offload(needs_csum=True, csum_start=34, csum_offset=16, gso_type=GsoType.TCPV4,
                  gso_size=1448, hdr_len=66)
    valid = Offload(data_valid=True)
    sent = [(gso, ETH + b"a" * 60000), (gso, ETH + b"b" * 70), (None, ETH + b"c" * 50),
            (valid, ETH + b"d" * 40), (gso, ETH + b"e" * 65000)]
    for offload, frame in sent:
        peer.send(build_vnet_hdr(offload) + frame)
    got = tap.receive(0.0)
    assert [(f.offload, bytes(f.data)) for f in got] == sent
    assert tap.counters.rx_frames == len(sent)


def test_a_bad_header_is_dropped_each_time_it_comes(
        wire: tuple[socket.socket, TapDevice]) -> None:
    peer, tap = wire
    bad = bytes([0, 77]) + bytes(VNET_HDR_LEN - 2)  # gso_type 77 does not exist
    for _ in range(3):
        peer.send(bad + ETH + b"x" * 20)
    peer.send(build_vnet_hdr(None) + ETH + b"ok")
    got = tap.receive(0.0)
    assert [bytes(f.data) for f in got] == [ETH + b"ok"]
    assert tap.counters.rx_drops == 3
