"""Host-side peers for a guest: on host loopback, which the guest reaches as 10.0.2.2:PORT.

* :class:`PayloadHttpServer` — ``GET /data/<size>[?seed=N]`` answers ``size`` bytes of
  deterministic pseudo-random data (:func:`payload_chunks`, whose hash the test gets from
  :func:`payload_sha256` without any transfer); ``POST /upload`` hashes the body and answers
  ``<bytes> <sha256>``.  Both are recorded (``downloads``, ``uploads``) as what actually
  crossed the host's socket.
* :class:`HashingSink` — a raw TCP listener that hashes each connection's bytes until EOF and
  answers ``<bytes> <sha256>`` (the guest's ``nc`` half-closes, then prints the answer).
* :class:`ConnectCounter` — accepts and at once closes connections, counting them: the peer
  of the guest's connections-per-second loop.
* :class:`LoopbackDns` — dnsmasq on a loopback address with a few fixed names, and the
  resolv.conf naming it (for :class:`~tests.vm.guest.Guest`'s ``host_resolv_conf``, which
  libslirp relays the guest's DNS to).

Every server starts in its constructor, runs in daemon threads (or its own process), and is
stopped by ``close()`` / leaving its ``with``.
"""

from __future__ import annotations

import functools
import hashlib
import random
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.testbed import require_binary, stop_process, wait_for
from tests.vm.guest_scripts import GATEWAY

PAYLOAD_CHUNK = 1 << 20
READ_CHUNK = 1 << 16


def payload_chunks(size: int, seed: int = 0) -> Iterator[bytes]:
    """``size`` pseudo-random bytes, the same for the same ``seed`` (in 1 MiB chunks)."""
    generator = random.Random(seed)
    left = size
    while left > 0:
        chunk = generator.randbytes(min(PAYLOAD_CHUNK, left))
        left -= len(chunk)
        yield chunk


@functools.lru_cache(maxsize=32)
def payload_sha256(size: int, seed: int = 0) -> str:
    digest = hashlib.sha256()
    for chunk in payload_chunks(size, seed):
        digest.update(chunk)
    return digest.hexdigest()


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A TCP (or ``kind``) port nothing uses right now (for QEMU's hostfwd and the
    gateway's ``--forward``, which want a number)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Transfer:
    bytes: int
    sha256: str


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Transfer] = []

    def add(self, item: Transfer) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[Transfer]:
        with self._lock:
            return list(self._items)


def _hash_stream(read: Any, limit: int | None = None) -> Transfer:
    """Hashes what ``read(n)`` returns until EOF (or ``limit`` bytes)."""
    digest = hashlib.sha256()
    total = 0
    while limit is None or total < limit:
        want = READ_CHUNK if limit is None else min(READ_CHUNK, limit - total)
        data = read(want)
        if not data:
            break
        digest.update(data)
        total += len(data)
    return Transfer(total, digest.hexdigest())


class _Server:
    """A socketserver run by a daemon thread on 127.0.0.1 (an ephemeral port by default)."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=type(self).__name__)
        self._thread.start()

    @property
    def port(self) -> int:
        address = self._server.server_address
        assert isinstance(address, tuple)
        port: int = address[1]
        return port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _ThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class PayloadHttpServer(_Server):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.downloads = _Recorder()
        self.uploads = _Recorder()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # a request log on the test's stderr would only be noise

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "data" or not parts[1].isdigit():
                    self.send_error(404)
                    return
                size = int(parts[1])
                seed = int(parse_qs(url.query).get("seed", ["0"])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                digest = hashlib.sha256()
                sent = 0
                try:
                    for chunk in payload_chunks(size, seed):
                        self.wfile.write(chunk)
                        digest.update(chunk)
                        sent += len(chunk)
                finally:
                    owner.downloads.add(Transfer(sent, digest.hexdigest()))

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/upload":
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length", "0"))
                received = _hash_stream(self.rfile.read, length)
                owner.uploads.add(received)
                body = f"{received.bytes} {received.sha256}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(_ThreadingHTTPServer((host, port), Handler))

    def url(self, size: int, seed: int = 0, host: str = GATEWAY) -> str:
        """Where the guest downloads ``size`` bytes of payload ``seed``."""
        return f"http://{host}:{self.port}/data/{size}?seed={seed}"

    def upload_url(self, host: str = GATEWAY) -> str:
        return f"http://{host}:{self.port}/upload"


class HashingSink(_Server):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.received = _Recorder()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                connection: socket.socket = self.request
                received = _hash_stream(connection.recv)
                owner.received.add(received)
                connection.sendall(f"{received.bytes} {received.sha256}\n".encode())

        super().__init__(_ThreadingTCPServer((host, port), Handler))


class ConnectCounter(_Server):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._count = 0
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner._count += 1
                # Returning closes the connection: the guest's nc sees EOF and exits.

        super().__init__(_ThreadingTCPServer((host, port), Handler))

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


class LoopbackDns:
    """dnsmasq answering ``names`` (name -> IPv4) on ``address``:53, refusing the rest
    (nothing is forwarded anywhere); :attr:`resolv_conf` is a resolv.conf naming it."""

    def __init__(self, workdir: Path, names: dict[str, str],
                 address: str = "127.83.0.53") -> None:
        dnsmasq = require_binary("dnsmasq")
        self.address = address
        self.resolv_conf = workdir / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {address}\n")
        records = [f"--host-record={name},{ip}" for name, ip in names.items()]
        # An empty file of our own rather than /dev/null, whose content a stray writer
        # could change (a dnsmasq told to use it as a pid file deletes it on exit).
        empty_conf = workdir / "dnsmasq.conf"
        empty_conf.write_text("")
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [dnsmasq, "--keep-in-foreground", f"--conf-file={empty_conf}", "--no-resolv",
             "--no-hosts", f"--listen-address={address}", "--bind-interfaces", "--port=53",
             "--user=root", f"--pid-file={workdir / 'dnsmasq.pid'}", "--local=/#/", *records],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_for(self._listening, timeout=10, what=f"dnsmasq on {address}:53")
        except BaseException:
            self.close()
            raise

    def _listening(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            stderr = self._process.stderr.read().decode() if self._process.stderr else ""
            raise AssertionError(f"dnsmasq exited: {stderr.strip()}")
        out = subprocess.run(["ss", "-Hlun", f"src {self.address}:53"], capture_output=True,
                             text=True, check=False).stdout
        return bool(out.strip())

    def close(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None

    def __enter__(self) -> LoopbackDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
