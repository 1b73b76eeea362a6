"""``vipernet fetch`` in-process over OS sockets against scripted servers: output and exit codes."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tests.http.scripted import Peer, RawRequest, ScriptedServer, response, serve_forever
from vipernet.cli.main import main


@pytest.fixture(autouse=True)
def os_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPERNET_TRANSPORT", "os")


def fetch(*argv: str) -> int:
    return main(["fetch", "--no-progress", *argv])


def test_download_to_a_file_is_byte_exact_and_leaves_no_part_file(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    out = tmp_path / "out.bin"
    with ScriptedServer(serve_forever(lambda req: response(data))) as server:
        assert fetch(server.url("/f"), "-o", str(out)) == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not (tmp_path / "out.bin.part").exists()


def test_body_goes_to_stdout_without_o(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with ScriptedServer(serve_forever(lambda req: response(b"to stdout"))) as server:
        assert fetch(server.url()) == 0
    assert capsysbinary.readouterr().out == b"to stdout"


def test_truncated_download_exits_18_and_does_not_create_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"p" * 60000)
    out = tmp_path / "out.bin"
    with ScriptedServer(handler) as server:
        assert fetch(server.url(), "-o", str(out)) == 18
    assert not out.exists()
    assert (tmp_path / "out.bin.part").stat().st_size == 60000
    err = capsys.readouterr().err
    assert "partial download: 60000 of 100000 bytes received" in err
    assert "out.bin.part" in err


def test_http_error_with_fail_exits_22_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with ScriptedServer(serve_forever(lambda req: response(b"nf", "404 Not Found"))) as server:
        assert fetch("--fail", server.url(), "-o", str(out)) == 22
        assert fetch(server.url(), "-o", str(out)) == 0  # without --fail: saved, status 0
    assert out.read_bytes() == b"nf"


def test_connection_refused_exits_7() -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert fetch(f"http://127.0.0.1:{port}/") == 7


def test_silent_server_exits_28_on_read_timeout() -> None:
    release = threading.Event()

    def handler(peer: Peer) -> None:
        peer.read_request()
        release.wait(10)
    with ScriptedServer(handler) as server:
        assert fetch("--read-timeout", "0.3", server.url()) == 28
        release.set()


def test_max_time_bounds_a_trickling_download_exit_28(tmp_path: Path) -> None:
    import time
    stop = threading.Event()

    def handler(peer: Peer) -> None:
        if peer.read_request() is None:
            return
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.wait(0.05):
            peer.send(b".")
    with ScriptedServer(handler) as server:
        started = time.monotonic()
        assert fetch("-m", "0.5", server.url(), "-o", str(tmp_path / "x")) == 28
        assert time.monotonic() - started < 15
        stop.set()
    assert not (tmp_path / "x").exists()


def test_redirect_loop_with_location_exits_47() -> None:
    loop = response(b"", "302 Found", [("Location", "/again")])
    with ScriptedServer(serve_forever(lambda req: loop)) as server:
        assert fetch("-L", "--max-redirs", "3", server.url()) == 47
        assert fetch(server.url()) == 0  # not followed without -L
    assert len(server.requests) == 5


def test_include_writes_the_head_before_the_body(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    raw = response(b"body", headers=[("X-Thing", "1")])
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        assert fetch("-i", server.url()) == 0
    out = capsysbinary.readouterr().out
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Thing: 1\r\n" in out
    assert out.endswith(b"\r\n\r\nbody")


def test_method_headers_and_data_are_sent(tmp_path: Path) -> None:
    upload = tmp_path / "up.txt"
    upload.write_bytes(b"file payload")
    with ScriptedServer(serve_forever(lambda req: response(b"ok"))) as server:
        assert fetch("-X", "PUT", "-H", "X-Test: yes", "-d", "a=1", "-d", "b=2",
                     server.url("/p")) == 0
        assert fetch("-d", f"@{upload}", server.url("/q")) == 0
        assert fetch("-T", str(upload), server.url("/r")) == 0
    first, second, third = server.requests
    assert (first.method, first.headers["x-test"], first.body) == ("PUT", "yes", b"a=1&b=2")
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (second.method, second.body) == ("POST", b"file payload")
    assert (third.method, third.body) == ("PUT", b"file payload")


def test_verbose_shows_keep_alive_reuse_across_urls(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedServer(serve_forever(lambda req: response(b"k"))) as server:
        assert fetch("-v", server.url("/1"), server.url("/2"), server.url("/3")) == 0
    err = capsys.readouterr().err
    assert "> GET /1 HTTP/1.1" in err
    assert "< HTTP/1.1 200 OK" in err
    assert "connections opened 1, reused 2" in err
    assert server.connections == 1


def test_resolve_maps_a_name_to_loopback(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    def reply(req: RawRequest) -> bytes:
        return response(req.headers["host"].encode())
    with ScriptedServer(serve_forever(reply)) as server:
        assert fetch("--resolve", f"example.test:{server.port}:127.0.0.1",
                     f"http://example.test:{server.port}/") == 0
    assert capsysbinary.readouterr().out == f"example.test:{server.port}".encode()


@pytest.mark.parametrize(("raw", "code"), [
    (b"", 52),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 8),
    (b"HTTP/1.1 200 OK\r\nX: " + b"h" * 200_000 + b"\r\n\r\n", 8),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n" + b"b" * 9999, 63),
])
def test_bad_replies_map_to_curl_exit_codes(raw: bytes, code: int) -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None and raw:
            peer.send(raw)
    with ScriptedServer(handler) as server:
        assert fetch("--max-filesize", "5000", server.url()) == code


@pytest.mark.parametrize("url", ["ftp://example.test/", "http://", "http://bad host/"])
def test_bad_url_exits_3(url: str) -> None:
    assert fetch(url) == 3


def test_connection_closed_mid_head_exits_56() -> None:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-")  # then the connection closes
    with ScriptedServer(handler) as server:
        assert fetch(server.url()) == 56


def test_output_that_cannot_be_written_exits_23(tmp_path: Path) -> None:
    with ScriptedServer(serve_forever(lambda req: response(b"body"))) as server:
        assert fetch(server.url(), "-o", str(tmp_path / "no-such-dir" / "out")) == 23
    assert not (tmp_path / "no-such-dir").exists()


@pytest.mark.parametrize("option", ["-d", "-T"])
def test_upload_that_cannot_be_read_exits_26_and_sends_nothing(tmp_path: Path,
                                                                option: str) -> None:
    missing = tmp_path / "missing"
    argument = f"@{missing}" if option == "-d" else str(missing)
    with ScriptedServer(serve_forever(lambda req: response(b"body"))) as server:
        assert fetch(option, argument, server.url()) == 26
    assert server.requests == []


@pytest.mark.parametrize("argv", [["-H", "no colon here"], ["--resolve", "not-three-parts"]])
def test_malformed_header_or_resolve_is_a_usage_error_exit_2(argv: list[str]) -> None:
    with ScriptedServer(serve_forever(lambda req: response(b"body"))) as server:
        assert fetch(*argv, server.url()) == 2
    assert server.requests == []
