"""Keep-alive reuse and how the pool recovers from errors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from tests.http.conftest import os_connect
from tests.http.scripted import Peer, ScriptedServer, response, serve_forever
from vipernet.http import (
    Client,
    ConnectError,
    ConnectionClosed,
    IncompleteBody,
    ResolveError,
)


def test_sequential_requests_reuse_one_connection_and_are_counted(client: Client) -> None:
    with ScriptedServer(serve_forever(lambda req: response(req.target.encode()))) as server:
        bodies = [client.get(server.url(f"/{i}")).content for i in range(5)]
    assert bodies == [f"/{i}".encode() for i in range(5)]
    assert server.connections == 1
    assert client.stats.connections_opened == 1
    assert client.stats.connections_reused == 4
    assert client.stats.requests == 5


def test_error_statuses_keep_the_connection_reusable(client: Client) -> None:
    statuses = iter(["404 Not Found", "500 Internal Server Error", "200 OK"])
    with ScriptedServer(serve_forever(
            lambda req: response(b"e", status=next(statuses)))) as server:
        got = [client.get(server.url()).status for _ in range(3)]
    assert got == [404, 500, 200]
    assert server.connections == 1


def test_head_response_is_bodiless_despite_content_length_and_reuses(client: Client) -> None:
    def reply(req: object) -> bytes:
        if getattr(req, "method", "") == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n"
        return response(b"after head")
    with ScriptedServer(serve_forever(reply)) as server:
        h = client.head(server.url())
        g = client.get(server.url())
    assert (h.status, h.content, h.headers.get("content-length")) == (200, b"", "12345")
    assert g.content == b"after head"
    assert server.connections == 1


def test_204_and_304_have_no_body(client: Client) -> None:
    replies = iter([b"HTTP/1.1 204 No Content\r\n\r\n",
                    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
                    response(b"next")])
    with ScriptedServer(serve_forever(lambda req: next(replies))) as server:
        got = [client.get(server.url()) for _ in range(3)]
    assert [(r.status, r.content) for r in got] == [(204, b""), (304, b""), (200, b"next")]
    assert server.connections == 1


def test_pool_opens_a_new_connection_after_a_truncated_response(client: Client) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        if peer.index == 0:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            return
        peer.send(response(b"fine"))
        while peer.read_request() is not None:
            peer.send(response(b"fine"))
    with ScriptedServer(handler) as server:
        with pytest.raises(IncompleteBody):
            client.get(server.url())
        assert client.get(server.url()).content == b"fine"
        assert client.get(server.url()).content == b"fine"
    assert client.stats.connections_opened == 2
    assert client.stats.connections_reused == 1


def test_recently_idle_connection_closed_by_the_server_is_retried(client: Client) -> None:
    def handler(peer: Peer) -> None:  # answers one request per connection, then hangs up
        if peer.read_request() is not None:
            peer.send(response(b"once"))
    with ScriptedServer(handler) as server:
        assert client.get(server.url()).content == b"once"
        server.wait_closed()
        assert client.get(server.url()).content == b"once"
    assert client.stats.connections_opened == 2
    assert client.stats.retries == 1


def test_one_shot_body_makes_the_pool_probe_and_skip_a_closed_connection(
        client: Client) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(response(b"once"))
    with ScriptedServer(handler) as server:
        client.get(server.url())
        server.wait_closed()
        assert client.post(server.url(), body=iter([b"one ", b"shot"])).content == b"once"
    assert server.requests[-1].body == b"one shot"
    assert (client.stats.connections_opened, client.stats.connections_reused) == (2, 0)
    assert client.stats.retries == 0


def test_long_idle_connection_is_probed_before_reuse(client: Client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from vipernet.http import pool
    monkeypatch.setattr(pool, "PROBE_AFTER", 0.05)

    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(response(b"once"))
    with ScriptedServer(handler) as server:
        client.get(server.url())
        server.wait_closed()
        time.sleep(0.1)  # idle longer than PROBE_AFTER
        assert client.get(server.url()).content == b"once"
    assert (client.stats.connections_opened, client.stats.connections_reused) == (2, 0)
    assert client.stats.retries == 0


class _NoFileno:
    """Hides fileno so the pool cannot peek at idleness: exercises the retry path."""

    def __init__(self, sock: object) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)  # type: ignore[attr-defined]

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n)  # type: ignore[attr-defined,no-any-return]

    def settimeout(self, t: float | None) -> None:
        self._sock.settimeout(t)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._sock.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def stale_connection(body: bytes) -> Iterator[tuple[ScriptedServer, Client]]:
    """A client whose one pooled connection the server has closed behind its back.

    The server answers one request per connection with ``body``; the client cannot see
    the close (no fileno to peek at), so its next request meets the stale connection.
    """
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(response(body))
    with ScriptedServer(handler) as server, \
            Client(connect=lambda h, p, t: _NoFileno(os_connect(h, p, t))) as client:
        client.get(server.url())
        server.wait_closed()
        yield server, client


def test_request_on_a_stale_connection_is_retried_once_on_a_new_one() -> None:
    with stale_connection(b"again") as (server, client):
        r = client.post(server.url(), body=b"replayable")
    assert r.content == b"again"
    assert client.stats.retries == 1
    assert server.requests[-1].body == b"replayable"


def test_one_shot_body_on_a_stale_connection_is_not_resent() -> None:
    with stale_connection(b"x") as (server, client), pytest.raises(ConnectionClosed):
        client.post(server.url(), body=iter([b"one", b"shot"]))
    assert client.stats.retries == 0


def test_connection_refused_is_a_connect_error(client: Client) -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    with pytest.raises(ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_resolver_failure_is_a_resolve_error() -> None:
    import socket

    def connect(host: str, port: int, timeout: float | None) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with Client(connect=connect) as client, pytest.raises(ResolveError):
        client.get("http://no-such-host.test/")


def test_resolve_override_connects_to_the_given_address_but_keeps_the_host(
        client: Client) -> None:
    with ScriptedServer(serve_forever(lambda req: response(req.headers["host"].encode()))) \
            as server, Client(connect=os_connect,
                              resolve={("example.test", server.port): "127.0.0.1"}) as c:
        r = c.get(server.url(host="example.test"))
    assert r.content == f"example.test:{server.port}".encode()
