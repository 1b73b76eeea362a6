"""Redirect following: limits, method and body rules, credentials across hosts."""

from __future__ import annotations

import pytest

from tests.http.conftest import os_connect
from tests.http.scripted import RawRequest, ScriptedServer, response, serve_forever
from vipernet.http import Client, RequestBodyNotReplayable, TooManyRedirects


def redirect(status: str, location: str) -> bytes:
    return response(b"moved", status=status, headers=[("Location", location)])


def test_redirect_loop_stops_at_the_limit() -> None:
    with ScriptedServer(serve_forever(lambda req: redirect("302 Found", "/loop"))) as server, \
            Client(connect=os_connect, max_redirects=5) as client, \
            pytest.raises(TooManyRedirects) as info:
        client.get(server.url("/loop"))
    assert info.value.limit == 5
    assert len(server.requests) == 6
    assert server.connections == 1  # small redirect bodies are drained, the connection kept


def test_redirects_are_followed_and_history_recorded(client: Client) -> None:
    def reply(req: RawRequest) -> bytes:
        if req.target == "/a":
            return redirect("301 Moved Permanently", "/b")
        if req.target == "/b":
            return redirect("308 Permanent Redirect", "c?x=1")
        return response(req.target.encode())
    with ScriptedServer(serve_forever(reply)) as server:
        r = client.get(server.url("/a"))
    assert r.content == b"/c?x=1"
    assert [h.status for h in r.history] == [301, 308]
    assert str(r.url) == server.url("/c?x=1")
    assert client.stats.redirects == 2


def test_redirects_are_not_followed_when_disabled(client: Client) -> None:
    with ScriptedServer(serve_forever(lambda req: redirect("302 Found", "/x"))) as server:
        r = client.get(server.url(), follow_redirects=False)
    assert (r.status, r.headers.get("location")) == (302, "/x")


@pytest.mark.parametrize(("status", "method", "expect_method", "expect_body"), [
    ("303 See Other", "POST", "GET", b""),
    ("303 See Other", "PUT", "GET", b""),
    ("302 Found", "POST", "GET", b""),
    ("301 Moved Permanently", "POST", "GET", b""),
    ("302 Found", "PUT", "PUT", b"payload"),
    ("307 Temporary Redirect", "POST", "POST", b"payload"),
    ("308 Permanent Redirect", "PUT", "PUT", b"payload"),
])
def test_redirect_method_and_body_rules(client: Client, status: str, method: str,
                                        expect_method: str, expect_body: bytes) -> None:
    def reply(req: RawRequest) -> bytes:
        return redirect(status, "/done") if req.target == "/start" else response(b"ok")
    with ScriptedServer(serve_forever(reply)) as server:
        client.request(method, server.url("/start"), body=b"payload",
                       headers={"Content-Type": "text/plain"})
    final = server.requests[-1]
    assert (final.method, final.body) == (expect_method, expect_body)
    if expect_method == "GET":
        assert "content-type" not in final.headers
        assert "content-length" not in final.headers


def test_307_with_a_one_shot_body_cannot_be_followed(client: Client) -> None:
    with ScriptedServer(serve_forever(lambda req: redirect("307 Temporary Redirect", "/x"))) \
            as server, pytest.raises(RequestBodyNotReplayable):
        client.post(server.url(), body=iter([b"gone"]))


def test_307_replays_a_seekable_file_body(client: Client, tmp_path: object) -> None:
    import pathlib
    path = pathlib.Path(str(tmp_path)) / "up.bin"
    path.write_bytes(b"file body" * 1000)

    def reply(req: RawRequest) -> bytes:
        return redirect("307 Temporary Redirect", "/2") if req.target == "/1" \
            else response(b"stored")
    with ScriptedServer(serve_forever(reply)) as server, path.open("rb") as f:
        client.put(server.url("/1"), body=f)
    assert [r.body for r in server.requests] == [b"file body" * 1000] * 2


def test_cross_host_redirect_drops_credentials_same_host_keeps_them() -> None:
    with ScriptedServer(serve_forever(lambda req: response(b"final"))) as other:
        def reply(req: RawRequest) -> bytes:
            if req.target == "/same":
                return redirect("302 Found", "/cross")
            if req.target == "/cross":
                return redirect("302 Found", other.url("/end", host="localhost"))
            return response(b"?")
        with ScriptedServer(serve_forever(reply)) as first, Client(
                connect=os_connect,
                resolve={("localhost", other.port): "127.0.0.1"}) as client:
            client.get(first.url("/same"), headers={"Authorization": "Bearer secret",
                                                    "Cookie": "a=b", "X-Keep": "1"})
    same, cross = first.requests
    assert same.headers["authorization"] == "Bearer secret"
    assert cross.headers["authorization"] == "Bearer secret"
    end = other.requests[0]
    assert "authorization" not in end.headers
    assert "cookie" not in end.headers
    assert end.headers["x-keep"] == "1"
    assert end.headers["host"] == f"localhost:{other.port}"


def test_redirect_to_an_unsupported_scheme_is_an_invalid_url(client: Client) -> None:
    from vipernet.http import InvalidURL
    with ScriptedServer(serve_forever(lambda req: redirect("302 Found", "ftp://x/"))) as s, \
            pytest.raises(InvalidURL):
        client.get(s.url())
