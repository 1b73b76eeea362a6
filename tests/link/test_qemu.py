"""QEMU stream/dgram devices over socket pairs and loopback sockets."""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.link.packets import partial_tcp, tcp_frame
from vipernet.link.errors import DeviceClosed, LinkError, LinkProtocolError, NoSuchInterface
from vipernet.link.frame import Frame
from vipernet.link.offload import ETH_HEADER_LEN
from vipernet.link.qemu import (
    MAX_STREAM_FRAME,
    DgramDevice,
    StreamDecoder,
    StreamDevice,
    encode_stream_frame,
)


def framed(*frames: bytes) -> bytes:
    return b"".join(struct.pack("!I", len(f)) + f for f in frames)


def frames_of(n: int, size: int = 100) -> list[bytes]:
    return [bytes([i % 256]) * 12 + b"\x08\x00" + os.urandom(size - 14) for i in range(n)]


def receive_until(device: StreamDevice | DgramDevice, count: int,
                  timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(bytes(f.data) for f in device.receive(time.monotonic()))
        if len(got) < count:
            time.sleep(0.001)
    return got


@pytest.fixture
def pair() -> Iterator[tuple[StreamDevice, socket.socket]]:
    ours, theirs = socket.socketpair()
    device = StreamDevice(ours)
    yield device, theirs
    device.close()
    theirs.close()


def test_frames_written_all_at_once_are_cut_apart(pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    frames = frames_of(20)
    peer.sendall(framed(*frames))
    assert receive_until(device, 20) == frames
    assert device.counters.rx_frames == 20


def test_frames_arriving_one_byte_at_a_time_are_reassembled(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    frames = frames_of(3, 64)
    got: list[bytes] = []
    for byte in framed(*frames):
        peer.send(bytes([byte]))
        got.extend(bytes(f.data) for f in device.receive(0.0))
    assert got == frames


def test_a_trailing_partial_frame_waits_for_the_rest(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    a, b = frames_of(2)
    stream = framed(a, b)
    peer.sendall(stream[:-10])
    assert receive_until(device, 1) == [a]
    assert device.receive(0.0) == []
    peer.sendall(stream[-10:])
    assert receive_until(device, 1) == [b]


def test_sent_frames_reach_the_peer_length_prefixed(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    frames = frames_of(5)
    for f in frames:
        device.send(Frame(f), 0.0)
    expected = framed(*frames)
    got = b""
    peer.settimeout(5)
    while len(got) < len(expected):
        got += peer.recv(65536)
    assert got == expected


def test_partial_checksums_are_completed_before_they_leave(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    device.send(partial_tcp(b"abc"), 0.0)
    peer.settimeout(5)
    data = peer.recv(65536)
    assert data[4:] == tcp_frame(b"abc")


def test_a_hostile_length_is_a_protocol_error_not_a_hang(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    good = frames_of(1)[0]
    peer.sendall(framed(good) + struct.pack("!I", 0xFFFFFFF0) + b"x" * 100)
    assert receive_until(device, 1) == [good]
    with pytest.raises(LinkProtocolError, match="frame length"):
        for _ in range(100):
            device.receive(0.0)
            time.sleep(0.001)
    with pytest.raises(DeviceClosed):
        device.receive(0.0)
    with pytest.raises(DeviceClosed):
        device.send(Frame(good), 0.0)
    peer.settimeout(5)
    assert peer.recv(10) == b""  # the device told the peer by shutting the socket


def test_runts_are_dropped_without_losing_sync(pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    good = frames_of(1)[0]
    peer.sendall(framed(b"", b"tiny", good))
    assert receive_until(device, 1) == [good]
    assert device.counters.rx_drops == 2


def test_peer_close_delivers_pending_frames_then_raises_device_closed(
        pair: tuple[StreamDevice, socket.socket]) -> None:
    device, peer = pair
    good = frames_of(1)[0]
    peer.sendall(framed(good) + b"\x00\x00")
    peer.close()
    time.sleep(0.01)
    assert [bytes(f.data) for f in device.receive(0.0)] == [good]
    with pytest.raises(DeviceClosed, match="partial frame"):
        device.receive(0.0)


def test_largest_frames_fit_with_a_jumbo_mtu() -> None:
    ours, theirs = socket.socketpair()
    with StreamDevice(ours, mtu=65520) as device, StreamDevice(theirs, mtu=65520) as other:
        big = bytes(12) + b"\x08\x00" + os.urandom(65520)
        device.send(Frame(big), 0.0)
        deadline = time.monotonic() + 5
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            device.flush(0.0)
            got = [bytes(f.data) for f in other.receive(0.0)]
        assert got == [big]
        assert len(big) <= MAX_STREAM_FRAME


def test_a_slow_peer_gets_buffered_output_later_and_never_blocks_us() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with StreamDevice(ours) as device, theirs:
        frames = frames_of(400, 1500)
        start = time.monotonic()
        for f in frames:
            device.send(Frame(f), 1.0)
        assert time.monotonic() - start < 10.0  # blocked, it would hang: nobody reads yet
        assert device.wants_write and device.next_deadline() is not None
        received = b""
        theirs.setblocking(False)
        expected = framed(*frames)
        deadline = time.monotonic() + 10
        while len(received) < len(expected) and time.monotonic() < deadline:
            device.receive(time.monotonic())
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:
                time.sleep(0.001)
        assert received == expected
        assert not device.wants_write and device.next_deadline() is None


def test_connect_and_listen_over_a_unix_path(tmp_path: Path) -> None:
    path = str(tmp_path / "qemu.sock")
    result: dict[str, StreamDevice] = {}
    thread = threading.Thread(target=lambda: result.update(s=StreamDevice.listen(path, timeout=5)))
    thread.start()
    deadline = time.monotonic() + 5
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    client = StreamDevice.connect(path)
    thread.join(5)
    server = result["s"]
    with client, server:
        frame = frames_of(1)[0]
        client.send(Frame(frame), 0.0)
        assert receive_until(server, 1) == [frame]
    assert not os.path.exists(path)


def test_a_peer_connecting_the_moment_the_path_appears_is_never_refused(tmp_path: Path) -> None:
    for i in range(30):
        path = str(tmp_path / f"race{i}.sock")
        result: dict[str, StreamDevice] = {}
        thread = threading.Thread(
            target=lambda p=path, r=result: r.update(s=StreamDevice.listen(p, timeout=5)))
        thread.start()
        deadline = time.monotonic() + 5
        while not os.path.exists(path) and time.monotonic() < deadline:
            pass  # spin: connect at the first instant the name exists
        client = StreamDevice.connect(path)  # LinkError if refused
        thread.join(5)
        client.close()
        result["s"].close()
    assert not [name for name in os.listdir(tmp_path)], "listen left files behind"


def test_listen_refuses_a_path_that_exists_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "taken.sock"
    path.write_text("someone else's")
    with pytest.raises(LinkError, match="cannot listen"):
        StreamDevice.listen(str(path), timeout=1)
    assert path.read_text() == "someone else's"
    assert os.listdir(tmp_path) == ["taken.sock"]


def test_connecting_to_nobody_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NoSuchInterface):
        StreamDevice.connect(str(tmp_path / "absent.sock"))


def test_dgram_carries_one_frame_per_datagram_over_unix_paths(tmp_path: Path) -> None:
    a_path, b_path = str(tmp_path / "a"), str(tmp_path / "b")
    with DgramDevice.open(a_path, b_path) as a, DgramDevice.open(b_path, a_path) as b:
        frames = frames_of(10)
        for f in frames:
            a.send(Frame(f), 0.0)
        assert receive_until(b, 10) == frames
    assert not os.path.exists(a_path)


def test_dgram_over_udp_ignores_strangers() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    a_port = probe.getsockname()[1]
    probe.close()
    b = DgramDevice(socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                    remote=("127.0.0.1", a_port))
    b._sock.bind(("127.0.0.1", 0))
    b_port = b._sock.getsockname()[1]
    with DgramDevice.open(("127.0.0.1", a_port), ("127.0.0.1", b_port)) as a, b:
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(frames_of(1)[0], ("127.0.0.1", b_port))
        stranger.close()
        frame = frames_of(1)[0]
        a.send(Frame(frame), 0.0)
        assert receive_until(b, 1) == [frame]
        assert b.counters.rx_drops == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=14, max_size=300), max_size=8), st.data())
def test_decoder_returns_the_frames_however_the_stream_is_cut(
        frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_stream_frame(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = StreamDecoder()
    got: list[bytes] = []
    for start, end in itertools.pairwise([0, *cuts, len(stream)]):
        got.extend(decoder.feed(stream[start:end]))
    assert got == frames and decoder.pending == 0 and decoder.error is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_decoder_on_garbage_yields_frames_or_a_protocol_error_only(chunks: list[bytes]) -> None:
    decoder = StreamDecoder()
    for chunk in chunks:
        try:
            for frame in decoder.feed(chunk):
                assert ETH_HEADER_LEN <= len(frame) <= MAX_STREAM_FRAME
        except LinkProtocolError:
            assert decoder.error is not None
        assert decoder.pending <= MAX_STREAM_FRAME + 4 + 200


def test_decoder_stops_for_good_after_a_bad_length() -> None:
    decoder = StreamDecoder(max_frame=100)
    good = bytes(20)
    assert decoder.feed(encode_stream_frame(good) + struct.pack("!I", 101)) == [good]
    assert decoder.error is not None and "101 > 100" in decoder.error
    with pytest.raises(LinkProtocolError):
        decoder.feed(encode_stream_frame(good))
