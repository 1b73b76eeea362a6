"""What goes on the wire: default headers, methods and request bodies."""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterator

import pytest

from tests.http.scripted import Peer, RawRequest, ScriptedServer, response, serve_forever
from vipernet.http import URL, Client, InvalidRequest, InvalidURL


def echo(req: RawRequest) -> bytes:
    return response(hashlib.sha256(req.body).hexdigest().encode())


def test_default_headers_are_sent(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        client.get(server.url("/path?q=1"))
    req = server.requests[0]
    assert (req.method, req.target) == ("GET", "/path?q=1")
    assert req.headers["host"] == f"127.0.0.1:{server.port}"
    assert req.headers["user-agent"].startswith("vipernet/")
    assert req.headers["accept-encoding"] == "identity"
    assert "content-length" not in req.headers


def test_caller_headers_override_defaults(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        client.get(server.url(), headers={"User-Agent": "me/1", "X-A": "b"})
    assert server.requests[0].headers["user-agent"] == "me/1"
    assert server.requests[0].headers["x-a"] == "b"


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
def test_every_method_goes_out_as_asked(client: Client, method: str) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        r = client.request(method, server.url())
    assert server.requests[0].method == method
    assert r.status == 200


def test_post_without_body_sends_content_length_zero(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        client.post(server.url())
    assert server.requests[0].headers["content-length"] == "0"


def test_bytes_body_is_sent_with_content_length(client: Client) -> None:
    body = os.urandom(200_000)
    with ScriptedServer(serve_forever(echo)) as server:
        r = client.put(server.url(), body=body)
    assert server.requests[0].headers["content-length"] == "200000"
    assert r.content.decode() == hashlib.sha256(body).hexdigest()


def test_file_body_is_sent_with_its_size(client: Client, tmp_path: pathlib.Path) -> None:
    data = os.urandom(1_000_003)
    path = tmp_path / "f"
    path.write_bytes(data)
    with ScriptedServer(serve_forever(echo)) as server, path.open("rb") as f:
        r = client.post(server.url(), body=f)
    assert server.requests[0].headers["content-length"] == "1000003"
    assert r.content.decode() == hashlib.sha256(data).hexdigest()


def test_iterator_body_is_sent_chunked(client: Client) -> None:
    parts = [b"a" * 10, b"", b"b" * 70_000, b"c"]
    with ScriptedServer(serve_forever(echo)) as server:
        r = client.post(server.url(), body=iter(parts))
    assert server.requests[0].headers["transfer-encoding"] == "chunked"
    assert r.content.decode() == hashlib.sha256(b"".join(parts)).hexdigest()


def test_pipe_body_of_unknown_length_is_sent_chunked(client: Client) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"from a pipe")
    os.close(write_fd)
    with ScriptedServer(serve_forever(echo)) as server, os.fdopen(read_fd, "rb") as f:
        client.post(server.url(), body=f)
    assert server.requests[0].headers["transfer-encoding"] == "chunked"
    assert server.requests[0].body == b"from a pipe"


def test_url_userinfo_becomes_basic_auth(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        client.get(f"http://al%20ice:pw@127.0.0.1:{server.port}/")
    assert server.requests[0].headers["authorization"] == "Basic YWwgaWNlOnB3"


def test_header_injection_is_refused(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server, pytest.raises(InvalidRequest):
        client.get(server.url(), headers={"X": "a\r\nInjected: yes"})


@pytest.mark.parametrize("bad", ["ftp://host/", "http:///nohost", "http://a b/", "not a url",
                                 "http://host:99999/"])
def test_bad_urls_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidURL):
        URL.parse(bad)


def test_url_parts_and_relative_join() -> None:
    u = URL.parse("HTTPS://Example.COM/a/b?c=d e")
    assert (u.scheme, u.host, u.port, u.target) == ("https", "example.com", 443, "/a/b?c=d%20e")
    assert u.host_header == "example.com"
    assert str(u.join("../x")) == "https://example.com/x"
    assert URL.parse("http://[::1]:8080").host_header == "[::1]:8080"


def test_non_ascii_header_value_is_refused_with_a_typed_error(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server, pytest.raises(InvalidRequest):
        client.get(server.url(), headers={"X-Name": "café"})


def test_non_ascii_path_is_percent_encoded(client: Client) -> None:
    with ScriptedServer(serve_forever(echo)) as server:
        client.get(server.url("/caf\u00e9 au lait"))
    assert server.requests[0].target == "/caf%C3%A9%20au%20lait"


def test_early_response_to_an_upload_the_server_stops_reading_is_returned(
        client: Client) -> None:
    import socket as _socket

    def handler(peer: Peer) -> None:
        while b"\r\n\r\n" not in peer._buf:
            if not peer._fill():
                return
        peer.send(response(b"too big", "413 Payload Too Large", [("Connection", "close")]))
        peer.sock.shutdown(_socket.SHUT_WR)
        peer.sock.close()  # unread upload bytes: the kernel resets the connection

    def upload() -> Iterator[bytes]:
        block = b"u" * (1 << 20)
        for _ in range(200):  # far more than socket buffers hold
            yield block
    with ScriptedServer(handler) as server:
        r = client.post(server.url(), body=upload())
    assert (r.status, r.content) == (413, b"too big")
    assert client.stats.connections_reused == 0
