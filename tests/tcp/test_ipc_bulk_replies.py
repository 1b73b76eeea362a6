"""The client channel's in-place reply decoding (the bulk RECV path through netd): replies
of every size up to the maximum body, arriving in arbitrary pieces, come out byte-exact and
matched to their requests, including across the buffer's compaction."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from vipernet.netclient.channel import READ_BUFFER, UnixChannel
from vipernet.netd import protocol as p


def _fake_netd(listener: socket.socket, sizes: list[int], seed: int) -> None:
    """Answer each request with a reply whose body is ``sizes[i]`` bytes derived from the
    request id, written in random pieces so headers and bodies straddle reads."""
    conn, _ = listener.accept()
    rng = random.Random(seed)
    decoder = p.FrameDecoder()
    with conn:
        answered = 0
        while answered < len(sizes):
            data = conn.recv(65536)
            if not data:
                return
            for request in decoder.feed(data):
                size = sizes[answered]
                body = bytes([request.request_id & 0xFF]) * size
                wire = p.reply_to(request, body).encode()
                at = 0
                while at < len(wire):
                    step = rng.choice((1, 7, 12, 13, 4096, 65536, 300_000, len(wire)))
                    conn.sendall(wire[at:at + step])
                    at += step
                answered += 1


def test_big_and_small_replies_in_arbitrary_pieces_arrive_whole_and_in_order(
        tmp_path: Path) -> None:
    path = str(tmp_path / "netd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    rng = random.Random(7)
    sizes = [rng.choice((0, 1, 11, 4096, p.MAX_DATA, p.MAX_DATA + 12, p.MAX_BODY))
             for _ in range(60)]
    assert sum(sizes) > 2 * READ_BUFFER  # the buffer is compacted several times
    server = threading.Thread(target=_fake_netd, args=(listener, sizes, 3), daemon=True)
    server.start()
    channel = UnixChannel(path)
    got: list[p.Message] = []

    def caller() -> None:  # four callers at once: replies queue up behind each other
        for _ in range(len(sizes) // 4):
            got.append(channel.call(int(p.Code.SOCKET_RECV), b"", 30.0))

    try:
        callers = [threading.Thread(target=caller) for _ in range(4)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(60)
    finally:
        channel.close()
        listener.close()
    server.join(10)
    assert not server.is_alive()
    assert sorted(len(r.body) for r in got) == sorted(sizes)
    for reply in got:
        assert isinstance(reply.body, bytes)
        assert reply.body == bytes([reply.request_id & 0xFF]) * len(reply.body)


def test_a_reply_cut_off_near_the_buffer_end_moves_to_the_front_and_completes(
        tmp_path: Path) -> None:
    path = str(tmp_path / "netd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    channel = UnixChannel(path)
    try:
        wire = b"".join(p.reply_to(p.Message(code=int(p.Code.SOCKET_RECV), request_id=i),
                                   bytes([i]) * size).encode()
                        for i, size in ((1, p.MAX_BODY), (2, 100), (3, p.MAX_BODY)))
        cut = len(wire) - p.MAX_BODY // 2  # reply 3 has only half arrived
        channel._buffer[:cut] = wire[:cut]
        channel._end = cut
        first = channel._decode()
        assert [(m.request_id, len(m.body)) for m in first] == [(1, p.MAX_BODY), (2, 100)]
        assert channel._start == 0  # the unfinished reply was moved to the front
        held = channel._end
        channel._buffer[held:held + len(wire) - cut] = wire[cut:]
        channel._end = held + len(wire) - cut
        (last,) = channel._decode()
        assert last.request_id == 3 and last.body == b"\x03" * p.MAX_BODY
        assert channel._start == channel._end == 0
    finally:
        channel.close()
        listener.close()
