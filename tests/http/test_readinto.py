"""``Response.readinto`` and ``write_to`` (issue 15, item 2): the zero-copy body path.

For a Content-Length body the bytes after the head go from the socket straight into the
caller's buffer (``recv_into``), past h11.  Checked against nginx on loopback (50 MB,
sha256, keep-alive, TLS) and scripted servers that cut the body short, send bytes past
the Content-Length, close or stall; ``vipernet fetch -o`` in-process over the same path.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.certs import make_ca_and_server
from tests.http.conftest import os_connect
from tests.http.peers import Nginx
from tests.http.scripted import MemorySocket, Peer, ScriptedServer, response, serve_forever
from tests.http.test_interop import sha256_file, write_random
from tests.testbed import require_binary
from vipernet.cli.main import main
from vipernet.http import (
    Client,
    HTTPError,
    IncompleteBody,
    ResponseTooLarge,
    Timeout,
    Timeouts,
)
from vipernet.http.connection import HTTPConnection

BIG = 50 * 1024 * 1024
MiB = 1024 * 1024


class SpySocket:
    """An OS socket that counts the body bytes each read method delivered."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.recv_bytes = 0
        self.recv_into_bytes = 0
        self.recv_into_calls = 0

    def recv(self, bufsize: int) -> bytes:
        data = self._sock.recv(bufsize)
        self.recv_bytes += len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        n = self._sock.recv_into(buffer, nbytes)
        self.recv_into_bytes += n
        self.recv_into_calls += 1
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def spying() -> tuple[list[SpySocket], Callable[[str, int, float | None], SpySocket]]:
    opened: list[SpySocket] = []

    def connect(host: str, port: int, timeout: float | None) -> SpySocket:
        spy = SpySocket(os_connect(host, port, timeout))
        opened.append(spy)
        return spy
    return opened, connect


def readinto_all(r: Any, size: int = MiB) -> tuple[str, int]:
    digest = hashlib.sha256()
    view = memoryview(bytearray(size))
    total = 0
    while n := r.readinto(view):
        assert 0 < n <= size
        digest.update(view[:n])
        total += n
    return digest.hexdigest(), total


@pytest.fixture(scope="module")
def nginx() -> Iterator[tuple[Nginx, str]]:
    binary = require_binary("nginx")
    with Nginx(binary, log_requests=True) as server:
        digest = write_random(server.www / "big.bin", BIG)
        server.add_file("small", b"hello from nginx\n")
        yield server, digest


# -- nginx: 50 MB, the fast path, keep-alive -------------------------------------------------

@pytest.mark.testbed
@pytest.mark.parametrize("size", [MiB, 65_537])
def test_readinto_50_mb_from_nginx_is_sha256_equal_and_bypasses_h11(
        nginx: tuple[Nginx, str], size: int) -> None:
    server, digest = nginx
    opened, connect = spying()
    with Client(connect=connect) as client, client.stream("GET", server.url("/big.bin")) as r:
        assert r.expected_length == BIG
        assert readinto_all(r, size) == (digest, BIG)
        assert r.complete and r.bytes_read == BIG
        assert r.readinto(bytearray(10)) == 0  # at the end: nothing more, no error
    spy = opened[0]
    # all but what h11 had buffered with the head came through recv_into, in large reads
    assert spy.recv_into_bytes >= BIG - 256 * 1024
    assert spy.recv_into_bytes / spy.recv_into_calls > 16 * 1024


@pytest.mark.testbed
def test_after_a_readinto_consumed_response_the_pool_reuses_the_connection(
        nginx: tuple[Nginx, str]) -> None:
    server, digest = nginx
    before = len(server.requests())
    with Client(connect=os_connect) as client:
        for _ in range(2):
            with client.stream("GET", server.url("/big.bin")) as r:
                assert readinto_all(r) == (digest, BIG)
            assert client.get(server.url("/small")).content == b"hello from nginx\n"
        # and read() (also past h11 for the bulk) still keeps the connection
        assert hashlib.sha256(client.get(server.url("/big.bin")).content).hexdigest() == digest
        assert client.get(server.url("/small")).status == 200
    assert (client.stats.connections_opened, client.stats.connections_reused) == (1, 5)
    served = server.requests()[before:]
    assert len(served) == 6 and len({conn for conn, _ in served}) == 1  # one TCP connection


@pytest.mark.testbed
def test_fetch_o_file_50_mb_from_nginx_is_sha256_equal_through_recv_into(
        nginx: tuple[Nginx, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vipernet.netclient.transport as transport

    server, digest = nginx
    opened, connect = spying()
    monkeypatch.setattr(transport, "connect", connect)
    out = tmp_path / "big.bin"
    assert main(["fetch", "--no-progress", server.url("/big.bin"), "-o", str(out)]) == 0
    assert sha256_file(out) == digest
    assert not (tmp_path / "big.bin.part").exists()
    assert opened[0].recv_into_bytes >= BIG - 256 * 1024


@pytest.mark.testbed
def test_write_to_a_file_descriptor_and_a_partial_writer(nginx: tuple[Nginx, str],
                                                         tmp_path: Path) -> None:
    server, digest = nginx
    out = tmp_path / "fd.bin"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with Client(connect=os_connect) as client:
            with client.stream("GET", server.url("/big.bin")) as r:
                assert r.write_to(fd) == BIG
            assert sha256_file(out) == digest

            class Trickle:  # takes at most 100 kB per call, like a raw file or a pipe
                def __init__(self) -> None:
                    self.digest = hashlib.sha256()

                def write(self, data: memoryview) -> int:
                    taken = data[:100_000]
                    self.digest.update(taken)
                    return len(taken)
            trickle = Trickle()
            seen: list[int] = []
            with client.stream("GET", server.url("/big.bin")) as r:
                assert r.write_to(trickle, progress=seen.append) == BIG
            assert trickle.digest.hexdigest() == digest and sum(seen) == BIG
        assert client.stats.connections_opened == 1
    finally:
        os.close(fd)


@pytest.mark.testbed
def test_readinto_over_vipernet_tls_from_nginx_keeps_the_connection(tmp_path: Path) -> None:
    binary = require_binary("nginx")
    ca, cert, key = make_ca_and_server(tmp_path, "example.test")
    with Nginx(binary, tls=(cert, key)) as server:
        digest = write_random(server.www / "f.bin", 5_000_000)
        server.add_file("small", b"tls\n")
        url = f"https://example.test:{server.port}"
        with Client(connect=os_connect, cafile=str(ca),
                    resolve={("example.test", server.port): "127.0.0.1"}) as client:
            for size in (MiB, 1000):
                with client.stream("GET", url + "/f.bin") as r:
                    assert readinto_all(r, size) == (digest, 5_000_000)
                assert client.get(url + "/small").content == b"tls\n"
    assert (client.stats.connections_opened, client.stats.connections_reused) == (1, 3)


# -- scripted servers: short, long, chunked, closing, stalling ---------------------------------

HEAD_100K = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"


def _short_body(split: bool) -> Callable[[Peer], None]:
    """100000 bytes announced, 60000 sent, then the connection closes.  ``split``: the head
    alone first, so the body comes on the fast path; else head and body in one write."""
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        if split:
            peer.send(HEAD_100K)
            time.sleep(0.05)
            for _ in range(6):
                peer.send(b"p" * 10000)
        else:
            peer.send(HEAD_100K + b"p" * 60000)
    return handler


def _consume(r: Any, how: str) -> int:
    if how == "read":
        return len(r.read())
    if how == "iter_bytes":
        return sum(len(c) for c in r.iter_bytes())
    if how == "write_to":
        with open(os.devnull, "wb") as sink:
            return int(r.write_to(sink))
    return readinto_all(r, 4096)[1]


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("how", ["readinto", "read", "iter_bytes", "write_to"])
def test_a_short_content_length_body_raises_the_same_error_every_way(how: str,
                                                                     split: bool) -> None:
    with ScriptedServer(_short_body(split)) as server, Client(connect=os_connect) as client, \
            client.stream("GET", server.url()) as r:
        with pytest.raises(IncompleteBody) as info:
            _consume(r, how)
        assert (info.value.received, info.value.expected) == (60000, 100000)
        assert str(info.value) == "connection closed after 60000 bytes of 100000"
        assert r.bytes_read == 60000 and not r.complete
    assert client._pool.idle_count() == 0  # the broken connection was not pooled


def test_readinto_delivers_every_byte_before_the_error() -> None:
    got = bytearray()
    with ScriptedServer(_short_body(True)) as server, Client(connect=os_connect) as client, \
            client.stream("GET", server.url()) as r:
        view = memoryview(bytearray(7000))
        with pytest.raises(IncompleteBody):
            while n := r.readinto(view):
                got += view[:n]
    assert got == b"p" * 60000


def test_bytes_past_the_content_length_are_not_body() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            time.sleep(0.05)
            peer.send(b"0123456789EXTRA BYTES")
            time.sleep(0.2)
    with ScriptedServer(handler) as server, Client(connect=os_connect) as client, \
            client.stream("GET", server.url()) as r:
        buf = bytearray(1000)
        assert r.readinto(buf) == 10
        assert bytes(buf[:10]) == b"0123456789"
        assert r.complete and r.readinto(buf) == 0


@pytest.mark.parametrize("size", [1, 1000, MiB])
def test_a_chunked_body_via_readinto_is_exact_and_keeps_the_connection(size: int) -> None:
    body = os.urandom(3000 if size == 1 else 300_000)  # byte by byte: keep it short
    pieces = [body[i:i + 70_001] for i in range(0, len(body), 70_001)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nT: 1\r\n\r\n"

    def handler(peer: Peer) -> None:
        while (req := peer.read_request()) is not None:
            if req.target == "/chunked":
                peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(chunked), 50_000):
                    peer.send(chunked[i:i + 50_000])
            else:
                peer.send(response(b"next"))
    with ScriptedServer(handler) as server, Client(connect=os_connect) as client:
        with client.stream("GET", server.url("/chunked")) as r:
            assert r.expected_length is None
            assert readinto_all(r, size) == (hashlib.sha256(body).hexdigest(), len(body))
            assert r.complete
        assert client.get(server.url("/small")).content == b"next"
    assert server.connections == 1
    assert (client.stats.connections_opened, client.stats.connections_reused) == (1, 1)


def test_connection_close_on_the_fast_path_is_not_reused_and_nothing_breaks() -> None:
    body = os.urandom(200_000)

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:  # one response per connection, then close
            peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                      % len(body))
            time.sleep(0.05)
            peer.send(body)
    with ScriptedServer(handler) as server, Client(connect=os_connect) as client:
        for _ in range(3):
            with client.stream("GET", server.url()) as r:
                assert readinto_all(r, 8192)[0] == hashlib.sha256(body).hexdigest()
                assert r.complete
    assert (client.stats.connections_opened, client.stats.connections_reused) == (3, 0)
    assert client._pool.idle_count() == 0


def test_http_1_0_on_the_fast_path_is_not_reused() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.0 200 OK\r\nContent-Length: 5000\r\n\r\n")
            time.sleep(0.05)
            peer.send(b"x" * 5000)
            time.sleep(0.2)
    with ScriptedServer(handler) as server, Client(connect=os_connect) as client:
        with client.stream("GET", server.url()) as r:
            assert readinto_all(r)[1] == 5000
        assert client._pool.idle_count() == 0


def test_head_204_and_304_end_at_once_and_keep_the_connection() -> None:
    def reply(req: Any) -> bytes:
        if req.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n"
        if req.target == "/204":
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    with ScriptedServer(serve_forever(reply)) as server, Client(connect=os_connect) as client:
        for method, path in (("HEAD", "/"), ("GET", "/204"), ("GET", "/304")):
            with client.stream(method, server.url(path)) as r:
                assert r.readinto(bytearray(100)) == 0 and r.complete
    assert server.connections == 1


def test_max_body_size_is_enforced_on_readinto() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n")
            time.sleep(0.05)
            peer.send(b"z" * 300000)
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, max_body_size=100_000) as client, \
            client.stream("GET", server.url()) as r, pytest.raises(ResponseTooLarge):
        readinto_all(r, 30_000)


def test_a_stalled_body_on_the_fast_path_times_out() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(HEAD_100K)
            time.sleep(0.05)
            peer.send(b"s" * 1000)
            time.sleep(3)
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, timeouts=Timeouts(read=0.3)) as client, \
            client.stream("GET", server.url()) as r:
        with pytest.raises(Timeout) as info:
            readinto_all(r)
        assert info.value.phase == "read"


def test_readinto_then_iter_bytes_gives_the_rest_but_read_refuses() -> None:
    body = os.urandom(150_000)

    def handler(peer: Peer) -> None:
        while peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            time.sleep(0.02)
            peer.send(body)
    with ScriptedServer(handler) as server, Client(connect=os_connect) as client:
        with client.stream("GET", server.url()) as r:
            first = bytearray(5)
            assert r.readinto(first) == 5
            rest = b"".join(bytes(c) for c in r.iter_bytes())
            assert bytes(first) + rest == body
        with client.stream("GET", server.url()) as r:
            assert r.readinto(bytearray(5)) == 5
            with pytest.raises(HTTPError, match="streamed already"):
                r.read()


def test_readinto_after_read_serves_the_kept_body_and_accepts_any_buffer() -> None:
    import array

    with ScriptedServer(serve_forever(lambda req: response(b"abcdefghij"))) as server, \
            Client(connect=os_connect) as client:
        r = client.get(server.url())
        buf = bytearray(4)
        assert [r.readinto(buf) for _ in range(4)] == [4, 4, 2, 0]
        assert r.content == b"abcdefghij"  # still kept
        r2 = client.get(server.url())
        words = array.array("i", [0, 0, 0, 0])  # cast to bytes: 16 of them
        assert r2.readinto(words) == 10 and words.tobytes()[:10] == b"abcdefghij"
        with pytest.raises(TypeError):
            r2.readinto(b"read-only")


# -- in memory: sockets without recv_into, any split ---------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 4096])
@pytest.mark.parametrize("split", [1, 7, 10_000])
def test_readinto_over_a_socket_without_recv_into(size: int, split: int) -> None:
    body = bytes(range(256)) * 20
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    sock = MemorySocket([raw[i:i + split] for i in range(0, len(raw), split)])
    assert not hasattr(sock, "recv_into")
    conn = HTTPConnection(sock, origin=("http", "h", 80))
    conn.begin(read_timeout=1.0, deadline=None, total=None)
    conn.send_request("GET", "/", (("Host", "h"),), None)
    conn.receive_head()
    got = bytearray()
    view = memoryview(bytearray(size))
    while n := conn.readinto_body(view):
        got += view[:n]
    assert bytes(got) == body and conn.body_done and conn.reusable


# -- vipernet fetch: the .part rule on the fast path ---------------------------------------------

def test_fetch_truncated_on_the_fast_path_keeps_the_part_file_and_exits_18(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPERNET_TRANSPORT", "os")
    out = tmp_path / "out.bin"
    with ScriptedServer(_short_body(True)) as server:
        assert main(["fetch", "--no-progress", server.url(), "-o", str(out)]) == 18
    assert not out.exists()
    assert (tmp_path / "out.bin.part").read_bytes() == b"p" * 60000
    err = capsys.readouterr().err
    assert "connection closed after 60000 bytes of 100000" in err
    assert (f"partial download: 60000 of 100000 bytes received; partial data left in "
            f"{out}.part") in err
