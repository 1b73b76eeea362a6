"""httpx running over vipernet sockets and vipernet TLS through the httpcore backend."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest

from tests.http.conftest import os_connect
from tests.http.scripted import Peer, RawRequest, ScriptedServer, response, serve_forever
from vipernet.http.httpx_transport import VipernetTransport


def test_httpx_gets_and_posts_over_the_vipernet_backend() -> None:
    data = os.urandom(500_000)
    calls: list[tuple[str, int]] = []

    def connect(host: str, port: int, timeout: float | None) -> Any:
        calls.append((host, port))
        return os_connect(host, port, timeout)

    def reply(req: RawRequest) -> bytes:
        return response(data if req.method == "GET" else hashlib.sha256(req.body).hexdigest()
                        .encode())
    with ScriptedServer(serve_forever(reply)) as server, \
            httpx.Client(transport=VipernetTransport(connect=connect)) as client:
        got = client.get(server.url("/x"))
        posted = client.post(server.url("/y"), content=b"payload")
    assert got.status_code == 200
    assert got.content == data
    assert posted.text == hashlib.sha256(b"payload").hexdigest()
    assert calls == [("127.0.0.1", server.port)]  # one connection, kept alive
    assert server.connections == 1


def test_httpx_sees_connect_errors_as_its_own() -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with httpx.Client(transport=VipernetTransport(connect=os_connect)) as client, \
            pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_httpx_read_timeout_maps_to_httpx_read_timeout() -> None:
    import threading
    release = threading.Event()

    def handler(peer: Peer) -> None:
        peer.read_request()
        release.wait(10)
    with ScriptedServer(handler) as server, \
            httpx.Client(transport=VipernetTransport(connect=os_connect),
                         timeout=httpx.Timeout(5, read=0.3)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(server.url())
        release.set()
