"""Response framing edge cases against a scripted server on loopback."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tests.http.scripted import Peer, ScriptedServer, response, serve_forever
from vipernet.http import (
    Client,
    ConnectionClosed,
    HeadersTooLarge,
    IncompleteBody,
    ProtocolError,
    ResponseTooLarge,
    Timeout,
    Timeouts,
)


def test_chunked_body_with_extensions_and_trailers_is_decoded_and_trailers_ignored(
        client: Client) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
           b"5;name=value;other\r\nhello\r\n"
           b"1;ext=\"quoted\"\r\n \r\n"
           b"5\r\nworld\r\n"
           b"0;last\r\nX-Sum: 1234\r\nContent-Length: 999\r\n\r\n")
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        first = client.get(server.url())
        second = client.get(server.url())
    assert first.content == b"hello world"
    assert second.content == b"hello world"
    # the trailer did not leak into the head fields
    assert first.headers.get("x-sum") is None
    assert first.headers.get("content-length") is None
    assert server.connections == 1
    assert client.stats.connections_reused == 1


def test_interim_1xx_responses_are_skipped(client: Client) -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
           + response(b"final", headers=[("X-Final", "yes")]))
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        r = client.post(server.url(), body=b"upload")
    assert r.status == 200
    assert r.headers.get("x-final") == "yes"
    assert r.content == b"final"
    assert server.requests[0].body == b"upload"
    assert "expect" not in server.requests[0].headers


def test_an_endless_stream_of_1xx_responses_is_a_protocol_error(client: Client) -> None:
    raw = b"HTTP/1.1 102 Processing\r\n\r\n" * 100
    with ScriptedServer(serve_forever(lambda req: raw)) as server, \
            pytest.raises(ProtocolError, match="1xx"):
        client.get(server.url())


def test_conflicting_content_lengths_are_rejected(client: Client) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"
    with ScriptedServer(serve_forever(lambda req: raw)) as server, \
            pytest.raises(ProtocolError, match="Content-Length"):
        client.get(server.url())


def test_transfer_encoding_together_with_content_length_is_rejected(client: Client) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")
    with ScriptedServer(serve_forever(lambda req: raw)) as server, \
            pytest.raises(ProtocolError, match="Transfer-Encoding and Content-Length"):
        client.get(server.url())


def test_identical_repeated_content_length_is_accepted(client: Client) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        assert client.get(server.url()).content == b"abc"


def truncating(head: bytes, body: bytes) -> ScriptedServer:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(head + body)
    return ScriptedServer(handler)


def test_truncated_content_length_body_raises_incomplete_body_with_counts(
        client: Client) -> None:
    with truncating(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x" * 400) as server, \
            pytest.raises(IncompleteBody) as info:
        client.get(server.url())
    assert info.value.received == 400
    assert info.value.expected == 1000


def test_truncated_chunked_body_raises_incomplete_body(client: Client) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with truncating(head, b"a\r\n0123456789\r\n10\r\nshort") as server, \
            pytest.raises(IncompleteBody) as info:
        client.get(server.url())
    assert info.value.expected is None
    assert info.value.received >= 10


def test_streaming_a_truncated_body_yields_the_partial_data_then_raises(client: Client) -> None:
    got = bytearray()
    with truncating(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", b"y" * 20) as server:
        with client.stream("GET", server.url()) as r, pytest.raises(IncompleteBody):
            for chunk in r.iter_bytes():
                got += chunk
        assert not r.complete
    assert got == b"y" * 20


def test_connection_closed_before_any_response_is_connection_closed(client: Client) -> None:
    def handler(peer: Peer) -> None:
        peer.read_request()
    with ScriptedServer(handler) as server, pytest.raises(ConnectionClosed, match="without"):
        client.get(server.url())


def test_connection_closed_mid_head_is_connection_closed(client: Client) -> None:
    with truncating(b"HTTP/1.1 200 OK\r\nContent-Len", b"") as server, \
            pytest.raises(ConnectionClosed, match="mid-way"):
        client.get(server.url())


def test_close_delimited_body_is_read_to_eof_and_connection_not_reused(client: Client) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 300_000)
    with ScriptedServer(handler) as server:
        a = client.get(server.url())
        b = client.get(server.url())
    assert a.content == b.content == b"z" * 300_000
    assert server.connections == 2
    assert client.stats.connections_reused == 0


def test_http_1_0_response_without_length_is_close_delimited(client: Client) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.0 200 OK\r\n\r\nold school")
    with ScriptedServer(handler) as server:
        r = client.get(server.url())
    assert (r.http_version, r.content) == ("1.0", b"old school")


def test_oversize_header_in_one_piece_is_rejected(client: Client) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n"
    with ScriptedServer(serve_forever(lambda req: raw)) as server, \
            pytest.raises(HeadersTooLarge):
        client.get(server.url())


def test_endless_header_stream_is_bounded_not_buffered_forever() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\n")
            for _ in range(10_000):  # 10 MB of headers unless the client gives up
                peer.send(b"X-Filler: " + b"b" * 1000 + b"\r\n")
    from tests.http.conftest import os_connect
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, max_header_bytes=8192) as client, \
            pytest.raises(HeadersTooLarge) as info:
        client.get(server.url())
    assert info.value.limit == 8192


def test_max_body_size_is_enforced_while_streaming(client: Client) -> None:
    raw = response(b"q" * 5000)
    with ScriptedServer(serve_forever(lambda req: raw)) as server, \
            pytest.raises(ResponseTooLarge):
        client.get(server.url(), max_body_size=4096)


def test_garbage_status_line_is_a_protocol_error(client: Client) -> None:
    with ScriptedServer(serve_forever(lambda req: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server, \
            pytest.raises(ProtocolError, match="malformed"):
        client.get(server.url())


def test_server_that_never_answers_triggers_the_read_timeout() -> None:
    release = threading.Event()

    def handler(peer: Peer) -> None:
        peer.read_request()
        release.wait(10)
    from tests.http.conftest import os_connect
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, timeouts=Timeouts(read=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            client.get(server.url())
        elapsed = time.monotonic() - started
        release.set()
    assert info.value.phase == "read"
    assert 0.25 < elapsed < 10


def test_slowloris_server_trickling_bytes_hits_the_total_timeout() -> None:
    stop = []

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):  # one byte every 50 ms: each read is quick, the total is not
            if stop:
                return
            peer.send(b"s")
            time.sleep(0.05)
    from tests.http.conftest import os_connect
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, timeouts=Timeouts(read=5.0, total=0.8)) as client:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            client.get(server.url())
        stop.append(True)
    assert info.value.phase == "total"
    assert 0.7 < time.monotonic() - started < 15


def test_slowloris_headers_hit_the_total_timeout_too() -> None:
    stop = []

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            if stop:
                return
            peer.send(b"X: y\r\n")
            time.sleep(0.05)
    from tests.http.conftest import os_connect
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, timeouts=Timeouts(read=5.0, total=0.6)) as client, \
            pytest.raises(Timeout, match="total"):
        client.get(server.url())
    stop.append(True)


def test_connect_to_a_full_backlog_hits_the_connect_timeout() -> None:
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; later SYNs are dropped, not refused
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        from tests.http.conftest import os_connect
        with Client(connect=os_connect, timeouts=Timeouts(connect=0.3)) as client:
            started = time.monotonic()
            with pytest.raises(Timeout) as info:
                client.get(f"http://127.0.0.1:{port}/")
        assert info.value.phase == "connect"
        assert time.monotonic() - started < 10
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_tls_server_that_never_answers_the_hello_hits_the_connect_timeout() -> None:
    release = threading.Event()

    def handler(peer: Peer) -> None:
        peer.sock.recv(4096)  # the ClientHello, never answered
        release.wait(10)
    from tests.http.conftest import os_connect
    with ScriptedServer(handler) as server, \
            Client(connect=os_connect, timeouts=Timeouts(connect=0.3, read=5)) as client:
        with pytest.raises(Timeout) as info:
            client.get(f"https://127.0.0.1:{server.port}/")
        release.set()
    assert info.value.phase == "connect"
