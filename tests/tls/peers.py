"""Real TLS servers on host loopback for interop tests: openssl s_server and gnutls-serv.

Each server is started on an ephemeral port, in its own process group, and stopped
(SIGTERM, then SIGKILL) when the context exits; its temp directory goes with it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from tests.testbed import require_binary, stop_process
from tests.tls.pki import Issued, write_server_files


class Peer:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="vipernet-tls-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc is not None and self.proc.stdin is not None
        return self.proc.stdin


class OpenSSLServer(Peer):
    """``openssl s_server -tls1_3`` (or other flags) with the given leaf and chain."""

    def __init__(self, leaf: Issued, chain: tuple[Issued, ...] = (), *,
                 args: Sequence[str] = ("-www",), tls13: bool = True) -> None:
        super().__init__()
        openssl = require_binary("openssl")
        cert, key = write_server_files(self.workdir, "server", leaf)
        chain_args: list[str] = []
        if chain:
            chain_file = self.workdir / "chain.pem"
            chain_file.write_bytes(b"".join(c.pem() for c in chain))
            chain_args = ["-cert_chain", str(chain_file)]
        argv = [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key",
                str(key), *chain_args, *(["-tls1_3"] if tls13 else []), *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        # A reader thread drains s_server's stdout so a full pipe can never stall it.
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with self._lock:
                match = re.search(rb"ACCEPT .*:(\d+)", self._output)
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"openssl s_server did not report its port: {bytes(self._output)!r}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self._output += chunk

    def close(self) -> None:
        # The reader ends at s_server's EOF; only then is its pipe closed (closing it under
        # a read in progress was an EBADF in the reader thread, seen under load).
        if self.proc is not None:
            stop_process(self.proc)
            self._reader.join(timeout=10)
        super().close()

    def read_output_until(self, needle: bytes, timeout: float = 10.0) -> bytes:
        """Everything s_server printed (in interactive mode: what the client sent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if needle in self._output:
                    break
            time.sleep(0.01)
        with self._lock:
            return bytes(self._output)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GnuTLSServer(Peer):
    """``gnutls-serv --http`` restricted to TLS 1.3."""

    def __init__(self, leaf: Issued, chain: tuple[Issued, ...] = (), *,
                 priority: str = "NORMAL:-VERS-ALL:+VERS-TLS1.3") -> None:
        super().__init__()
        binary = require_binary("gnutls-serv")
        cert, key = write_server_files(self.workdir, "server", leaf, chain)
        for _attempt in range(5):
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [binary, "--http", "--port", str(self.port), "--x509certfile", str(cert),
                 "--x509keyfile", str(key), f"--priority={priority}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            stop_process(self.proc)
        raise RuntimeError("gnutls-serv did not start")
