"""A raw-socket HTTP server on loopback, scripted per test, and an in-memory socket.

The server hands each accepted connection to the test's ``handler(peer)`` in its own thread,
so a test says exactly which bytes go back (malformed, truncated, slow, ...).  Everything is
closed by :meth:`ScriptedServer.close` (the tests use it as a context manager).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterable


@dataclasses.dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; the last value wins
    body: bytes
    head: bytes


class Peer:
    """The server side of one accepted connection."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index  # 0 for the first connection the server accepted
        self._buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buf += data
        return bool(data)

    def _read_line(self) -> bytes | None:
        while b"\r\n" not in self._buf:
            if not self._fill():
                return None
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not self._fill():
                return None
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_request(self) -> RawRequest | None:
        """The next request (body de-chunked), or None if the client closed."""
        try:
            while b"\r\n\r\n" not in self._buf:
                if not self._fill():
                    return None
        except OSError:
            return None
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._read_line()
                if size_line is None:
                    return None
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._read_line() not in (b"", None):
                        pass
                    break
                chunk = self._read_exact(size + 2)
                if chunk is None:
                    return None
                body += chunk[:-2]
        elif "content-length" in headers:
            data = self._read_exact(int(headers["content-length"]))
            if data is None:
                return None
            body = data
        return RawRequest(method, target, headers, body, head)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def response(body: bytes = b"ok", status: str = "200 OK",
             headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A well-formed HTTP/1.1 response with Content-Length."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serve_forever(reply: Callable[[RawRequest], bytes]) -> Callable[[Peer], None]:
    """A handler answering every request on a connection with ``reply(request)``."""

    def handler(peer: Peer) -> None:
        while (req := peer.read_request()) is not None:
            peer.send(reply(req))

    return handler


class ScriptedServer:
    """Listens on 127.0.0.1:<ephemeral>; one thread per accepted connection."""

    def __init__(self, handler: Callable[[Peer], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.closed_connections = 0  # handlers that returned (their socket is closed)
        self.requests: list[RawRequest] = []
        self.errors: list[BaseException] = []
        self._peers: list[Peer] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            peer = _RecordingPeer(sock, self.connections, self)
            self.connections += 1
            self._peers.append(peer)
            thread = threading.Thread(target=self._run, args=(peer,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, peer: Peer) -> None:
        try:
            self.handler(peer)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            peer.close()
            self.closed_connections += 1

    def wait_closed(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` server-side connections are closed, plus a moment for the FIN
        to reach the client (loopback delivers it at once; this is for a loaded machine)."""
        deadline = time.monotonic() + timeout
        while self.closed_connections < count:
            if time.monotonic() > deadline:
                raise AssertionError("server connections did not close")
            time.sleep(0.01)
        time.sleep(0.05)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accept_thread.join(timeout=5)  # no new peers or threads after this
        for peer in self._peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
            peer.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RecordingPeer(Peer):
    def __init__(self, sock: socket.socket, index: int, server: ScriptedServer) -> None:
        super().__init__(sock, index)
        self._server = server

    def read_request(self) -> RawRequest | None:
        req = super().read_request()
        if req is not None:
            self._server.requests.append(req)
        return req


class MemorySocket:
    """A fake stream socket: ``recv`` returns the scripted pieces, then EOF."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = list(pieces)
        self.sent = bytearray()
        self.closed = False
        self.timeout: float | None = None

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, bufsize: int) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > bufsize:
            self.pieces.insert(0, piece[bufsize:])
            piece = piece[:bufsize]
        return piece

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def close(self) -> None:
        self.closed = True
