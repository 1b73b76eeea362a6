"""An HTTP server on host loopback for guests behind a gateway: a file down, uploads hashed.

``GET /file`` serves ``size`` deterministic pseudo-random bytes; ``PUT`` or ``POST`` to
any path answers ``"<bytes> <sha256>"`` of what it received (chunked or sized), so a test
compares hashes end to end without keeping 100 MB around.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 20


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def content(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


class HostHttpServer:
    """See the module docstring; ``port`` is where it listens on 127.0.0.1."""

    def __init__(self, size: int) -> None:
        self.body = content(size)
        self.sha256 = hashlib.sha256(self.body).hexdigest()
        body = self.body

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                view = memoryview(body)
                for start in range(0, len(view), CHUNK):
                    self.wfile.write(view[start:start + CHUNK])

            def do_PUT(self) -> None:
                digest, count = hashlib.sha256(), 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data = self.rfile.read(size)
                        digest.update(data)
                        count += len(data)
                        self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length", "0"))
                    while left:
                        data = self.rfile.read(min(left, CHUNK))
                        if not data:
                            break
                        digest.update(data)
                        count += len(data)
                        left -= len(data)
                answer = f"{count} {digest.hexdigest()}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
