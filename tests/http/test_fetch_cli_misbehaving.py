"""Issue 16 section 2 (HTTP), end to end: the real ``vipernet fetch`` (a child process, OS
sockets) against a raw TCP server on loopback that breaks chunked framing or sends 1xx
interim responses.  Checked: the exact stderr text, curl's exit code, and what -i / -v
print."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.http.scripted import Peer, ScriptedServer, response, serve_forever
from tests.netd_rig import cli_env

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
INTERIM = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")


@dataclass
class Result:
    returncode: int
    stdout: bytes  # raw: heads end in CRLF, which text mode would translate
    stderr: str


def fetch(*argv: str) -> Result:
    done = subprocess.run([sys.executable, "-m", "vipernet.cli.main", "fetch", "--no-progress",
                           *argv], env=cli_env(VIPERNET_TRANSPORT="os"), capture_output=True,
                          timeout=60)
    return Result(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def sends_once(raw: bytes) -> ScriptedServer:
    def handler(peer: Peer) -> None:
        if peer.read_request() is not None:
            peer.send(raw)  # then the connection closes
    return ScriptedServer(handler)


@pytest.mark.parametrize(("tail", "shown"), [
    (b"zz\r\n", '"zz"'),
    (b"4\x1b[2J\r\n", '"4\\x1b[2J"'),  # an escape sequence never reaches the terminal
])
def test_a_bad_chunk_header_is_shown_readably_and_exits_56(tail: bytes, shown: str) -> None:
    with sends_once(CHUNKED + b"5\r\nhello\r\n" + tail) as server:
        result = fetch(server.url("/c"))
    assert result.returncode == 56  # curl: (56) Illegal or missing hexadecimal sequence
    assert result.stdout == b"hello"
    assert result.stderr.splitlines() == [
        f"vipernet fetch: {server.url('/c')}: illegal chunk header {shown}; "
        "partial download: 5 bytes received",
    ]
    assert "bytearray" not in result.stderr and "\x1b" not in result.stderr


def test_a_bad_chunk_header_leaves_only_the_part_file(tmp_path: Path) -> None:
    out = str(tmp_path / "out.bin")
    with sends_once(CHUNKED + b"zz\r\n") as server:
        result = fetch(server.url(), "-o", out)
    assert result.returncode == 56
    assert f"partial download: 0 bytes received; partial data left in {out}.part" in (
        result.stderr)
    assert not (tmp_path / "out.bin").exists() and (tmp_path / "out.bin.part").exists()


def test_include_prints_each_interim_head_before_the_final_one() -> None:
    raw = INTERIM + response(b"body", headers=[("X-Final", "yes")])
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        result = fetch("-i", server.url())
    assert result.returncode == 0
    assert result.stdout == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Final: yes\r\n\r\nbody")


def test_head_and_verbose_show_the_interim_heads_too() -> None:
    raw = INTERIM + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with ScriptedServer(serve_forever(lambda req: raw)) as server:
        head = fetch("-I", server.url())
        verbose = fetch("-v", server.url())
    assert head.returncode == 0
    assert head.stdout.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n")
    assert head.stdout.endswith(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    lines = verbose.stderr.splitlines()
    start = lines.index("< HTTP/1.1 100 Continue")
    assert lines[start:start + 7] == [
        "< HTTP/1.1 100 Continue", "<",
        "< HTTP/1.1 103 Early Hints", "< Link: </style.css>; rel=preload", "<",
        "< HTTP/1.1 200 OK", "< Content-Length: 0"]


def test_without_include_interim_heads_stay_out_of_the_body() -> None:
    with ScriptedServer(serve_forever(lambda req: INTERIM + response(b"just this"))) as server:
        result = fetch(server.url())
    assert (result.returncode, result.stdout) == (0, b"just this")
