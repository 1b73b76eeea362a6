"""The rig's parts that need no guest: the host peers, the RESULT parser, the cpio writer."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.testbed import require_binary
from tests.vm.cpio import CpioWriter
from tests.vm.guest_scripts import parse_results, result
from tests.vm.hostserver import (
    ConnectCounter,
    HashingSink,
    PayloadHttpServer,
    payload_chunks,
    payload_sha256,
)


def test_payload_is_deterministic_per_seed_and_exact_in_size() -> None:
    size = 3 * 1024 * 1024 + 17
    first = b"".join(payload_chunks(size, seed=5))
    assert len(first) == size and first == b"".join(payload_chunks(size, seed=5))
    assert first != b"".join(payload_chunks(size, seed=6))
    assert payload_sha256(size, 5) == hashlib.sha256(first).hexdigest()


def test_http_server_serves_the_payload_and_hashes_uploads() -> None:
    size = 1024 * 1024 + 3
    with PayloadHttpServer() as http:
        with urllib.request.urlopen(http.url(size, seed=2, host="127.0.0.1"), timeout=10) as r:
            body = r.read()
        assert hashlib.sha256(body).hexdigest() == payload_sha256(size, 2)
        upload = b"\0binary\0" * 1000
        request = urllib.request.Request(http.upload_url(host="127.0.0.1"), data=upload)
        with urllib.request.urlopen(request, timeout=10) as r:
            reply = r.read().decode().split()
        assert reply == [str(len(upload)), hashlib.sha256(upload).hexdigest()]
        [download] = http.downloads.snapshot()
        assert (download.bytes, download.sha256) == (size, payload_sha256(size, 2))
        [received] = http.uploads.snapshot()
        assert received.bytes == len(upload)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{http.port}/nothing", timeout=10)


def test_sink_answers_the_hash_after_eof_and_counter_counts() -> None:
    data = bytes(range(256)) * 4000
    with HashingSink() as sink, ConnectCounter() as counter:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as connection:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            reply = connection.makefile("rb").read().decode().split()
        assert reply == [str(len(data)), hashlib.sha256(data).hexdigest()]
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", counter.port), timeout=10) as c:
                assert c.recv(1) == b""  # closed at once
        assert counter.count == 3


def test_results_are_parsed_from_noisy_output() -> None:
    output = ("udhcpc: started\nRESULT ping host=10.0.2.2 sent=5 received=4 rtt_avg_ms=0.5\n"
              "RESULTS not=this\nRESULT connect count=3\n")
    assert [r.step for r in parse_results(output)] == ["ping", "connect"]
    ping = result(output, "ping")
    assert ping["received"] == "4" and ping.number("rtt_avg_ms") == 0.5
    with pytest.raises(AssertionError, match="expected one RESULT download"):
        result(output, "download")


def test_cpio_archive_unpacks_with_busybox_cpio() -> None:
    busybox = require_binary("busybox")
    archive = CpioWriter()
    archive.directory("etc")
    archive.file("etc/odd-size", b"x" * 5, 0o600)
    archive.file("etc/empty", b"")
    archive.symlink("etc/link", "odd-size")
    data = archive.finish()
    assert len(data) % 4 == 0
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run([busybox, "cpio", "-i", "-d"], input=data, cwd=workdir, check=True,
                       capture_output=True)
        root = Path(workdir)
        assert (root / "etc" / "odd-size").read_bytes() == b"x" * 5
        assert (root / "etc" / "odd-size").stat().st_mode & 0o777 == 0o600
        assert (root / "etc" / "empty").read_bytes() == b""
        assert (root / "etc" / "link").readlink() == Path("odd-size")
    with pytest.raises(ValueError):
        archive.file("late", b"")
