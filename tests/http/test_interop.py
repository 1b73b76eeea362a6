"""Interop on loopback over OS sockets: Python's http.server, nginx, openssl s_server (https).

nginx and openssl are real peers: those tests are marked ``testbed`` (fail under CI if the
binary is missing, skip elsewhere).  Big downloads are checked by sha256, end to end.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.certs import make_ca_and_server
from tests.http.conftest import os_connect
from tests.http.peers import Nginx, StdlibServer, free_port, port_open
from tests.testbed import require_binary, stop_process
from vipernet.http import Client

BIG = 50 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    path.chmod(0o644)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, VIPERNET_TRANSPORT="os",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "vipernet.cli.main", "fetch", *argv],
                          env=env, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def stdlib_server() -> Iterator[tuple[StdlibServer, str]]:
    with StdlibServer() as server:
        digest = write_random(server.dir / "big.bin", BIG)
        (server.dir / "small.txt").write_bytes(b"small file\n")
        yield server, digest


def test_library_streams_50_mb_from_http_server_sha256_equal(
        stdlib_server: tuple[StdlibServer, str], tmp_path: Path) -> None:
    server, digest = stdlib_server
    out = tmp_path / "big.bin"
    tracemalloc.start()
    try:
        with Client(connect=os_connect) as client, \
                client.stream("GET", server.url("/big.bin")) as r, out.open("wb") as f:
            assert r.expected_length == BIG
            assert r.write_to(f) == BIG
            assert r.complete
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_file(out) == digest
    # Streamed, not held: the peak is a few read buffers, not the 50 MB body.
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes"


def test_cli_fetches_50_mb_from_http_server_sha256_equal(
        stdlib_server: tuple[StdlibServer, str], tmp_path: Path) -> None:
    server, digest = stdlib_server
    out = tmp_path / "big.bin"
    proc = cli(server.url("/big.bin"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""  # quiet when not on a terminal
    assert sha256_file(out) == digest


def test_http_server_keep_alive_is_reused(stdlib_server: tuple[StdlibServer, str]) -> None:
    server, _ = stdlib_server
    with Client(connect=os_connect) as client:
        bodies = {client.get(server.url("/small.txt")).content for _ in range(5)}
    assert bodies == {b"small file\n"}
    assert (client.stats.connections_opened, client.stats.connections_reused) == (1, 4)


@pytest.fixture(scope="module")
def nginx() -> Iterator[tuple[Nginx, str]]:
    binary = require_binary("nginx")
    with Nginx(binary) as server:
        digest = write_random(server.www / "big.bin", BIG)
        server.add_file("small", b"hello from nginx\n")
        yield server, digest


@pytest.mark.testbed
def test_cli_fetches_50_mb_from_nginx_sha256_equal(nginx: tuple[Nginx, str],
                                                   tmp_path: Path) -> None:
    server, digest = nginx
    out = tmp_path / "big.bin"
    proc = cli(server.url("/big.bin"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(out) == digest


@pytest.mark.testbed
def test_library_fetches_50_mb_from_nginx_then_reuses_the_connection(
        nginx: tuple[Nginx, str]) -> None:
    server, digest = nginx
    with Client(connect=os_connect) as client:
        h = hashlib.sha256()
        with client.stream("GET", server.url("/big.bin")) as r:
            for chunk in r.iter_bytes():
                h.update(chunk)
        assert h.hexdigest() == digest
        for _ in range(9):
            assert client.get(server.url("/small")).content == b"hello from nginx\n"
    assert (client.stats.connections_opened, client.stats.connections_reused) == (1, 9)


@pytest.mark.testbed
def test_cli_follows_an_nginx_redirect_and_shows_reuse(nginx: tuple[Nginx, str]) -> None:
    server, _ = nginx
    proc = cli("-L", "-v", server.url("/redirect"), server.url("/small"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello from nginx\n" * 2
    assert b"< HTTP/1.1 302" in proc.stderr
    assert b"connections opened 1, reused 2" in proc.stderr


@pytest.fixture(scope="module")
def s_server() -> Iterator[dict[str, Any]]:
    openssl = require_binary("openssl")
    with tempfile.TemporaryDirectory(prefix="vipernet-http-tls-") as d:
        directory = Path(d)
        ca, cert, key = make_ca_and_server(directory, "example.test")
        www = directory / "www"
        www.mkdir()
        digest = write_random(www / "file.bin", 2_000_000)
        (www / "index.html").write_bytes(b"<h1>over TLS 1.3</h1>\n")
        proc = None
        port = 0
        for _ in range(3):
            port = free_port()
            proc = subprocess.Popen(
                [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                 "-key", str(key), "-tls1_3", "-WWW", "-quiet", "-naccept", "1000"],
                cwd=www, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if port_open("127.0.0.1", port):
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                break
        assert proc is not None and proc.poll() is None, "openssl s_server did not start"
        try:
            yield {"port": port, "ca": ca, "digest": digest,
                   "url": f"https://example.test:{port}",
                   "resolve": f"example.test:{port}:127.0.0.1"}
        finally:
            stop_process(proc)  # type: ignore[arg-type]


@pytest.mark.testbed
def test_cli_fetches_over_https_with_a_test_ca(s_server: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    proc = cli("--cacert", str(s_server["ca"]), "--resolve", s_server["resolve"],
               s_server["url"] + "/file.bin", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(out) == s_server["digest"]


@pytest.mark.testbed
def test_library_fetches_over_https(s_server: dict[str, Any]) -> None:
    with Client(connect=os_connect, cafile=str(s_server["ca"]),
                resolve={("example.test", s_server["port"]): "127.0.0.1"}) as client:
        r = client.get(s_server["url"] + "/index.html")
    assert (r.status, r.content) == (200, b"<h1>over TLS 1.3</h1>\n")


@pytest.mark.testbed
def test_https_with_an_untrusted_certificate_fails_verification(
        s_server: dict[str, Any], tmp_path: Path) -> None:
    other_ca, _, _ = make_ca_and_server(tmp_path, "example.test")
    proc = cli("--cacert", str(other_ca), "--resolve", s_server["resolve"],
               s_server["url"] + "/index.html")
    assert proc.returncode == 60, proc.stderr
    assert proc.stdout == b""


@pytest.mark.testbed
def test_https_insecure_skips_verification(s_server: dict[str, Any]) -> None:
    proc = cli("-k", "--resolve", s_server["resolve"], s_server["url"] + "/index.html")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"<h1>over TLS 1.3</h1>\n"


@pytest.mark.testbed
def test_https_to_a_plain_http_port_is_a_tls_failure(nginx: tuple[Nginx, str]) -> None:
    server, _ = nginx
    proc = cli("-k", f"https://127.0.0.1:{server.port}/small")
    assert proc.returncode == 35, proc.stderr


@pytest.mark.testbed
def test_httpx_over_vipernet_tls_fetches_from_s_server(s_server: dict[str, Any]) -> None:
    import httpx

    from vipernet.http.httpx_transport import VipernetTransport

    def connect(host: str, port: int, timeout: float | None) -> Any:
        return os_connect("127.0.0.1" if host == "example.test" else host, port, timeout)
    transport = VipernetTransport(connect=connect, cafile=str(s_server["ca"]))
    with httpx.Client(transport=transport) as client:
        r = client.get(s_server["url"] + "/file.bin")
    assert hashlib.sha256(r.content).hexdigest() == s_server["digest"]


@pytest.mark.testbed
def test_https_keep_alive_with_nginx_reuses_one_tls_connection(tmp_path: Path) -> None:
    binary = require_binary("nginx")
    ca, cert, key = make_ca_and_server(tmp_path, "example.test")
    with Nginx(binary, tls=(cert, key)) as server:
        digest = write_random(server.www / "f.bin", 3_000_000)
        server.add_file("small", b"tls keep-alive\n")
        url = f"https://example.test:{server.port}"
        with Client(connect=os_connect, cafile=str(ca),
                    resolve={("example.test", server.port): "127.0.0.1"}) as client:
            with client.stream("GET", url + "/f.bin") as r:
                h = hashlib.sha256()
                for chunk in r.iter_bytes():
                    h.update(chunk)
            assert h.hexdigest() == digest
            for _ in range(5):
                assert client.get(url + "/small").content == b"tls keep-alive\n"
            time.sleep(1.2)  # past PROBE_AFTER: the idle TLS connection is probed, kept
            assert client.get(url + "/small").status == 200
    assert client.stats.connections_opened == 1
    assert client.stats.connections_reused == 6


def test_cli_shows_a_progress_bar_only_when_stderr_is_a_terminal(
        stdlib_server: tuple[StdlibServer, str], tmp_path: Path) -> None:
    import pty
    server, digest = stdlib_server
    out = tmp_path / "big.bin"
    master, slave = pty.openpty()
    env = dict(os.environ, VIPERNET_TRANSPORT="os", COLUMNS="100",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "vipernet.cli.main", "fetch",
                             server.url("/big.bin"), "-o", str(out)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert sha256_file(out) == digest
    assert b"big.bin" in shown  # the label
    assert b"MB/s" in shown or b"GB/s" in shown  # the rate column
    assert re.search(rb"\d:\d\d:\d\d", shown)  # the time-remaining (ETA) column
    assert b"52.4/52.4 MB" in shown  # finished: all bytes counted
