"""Real HTTP servers on loopback for interop tests and the benchmark: nginx and http.server.

Each peer runs in a temporary directory it removes on close; ports are ephemeral.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format conn '$connection $connection_requests "$request"';
    access_log {access_log};
    client_body_temp_path {d}/tmp_body;
    proxy_temp_path {d}/tmp_proxy;
    fastcgi_temp_path {d}/tmp_fastcgi;
    uwsgi_temp_path {d}/tmp_uwsgi;
    scgi_temp_path {d}/tmp_scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen {host}:{port}{tls};
        root {d}/www;
        location /redirect {{ return 302 /small; }}
    }}
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Nginx:
    """nginx serving ``www`` (a directory under its temp dir) on 127.0.0.1:<free port>."""

    def __init__(self, binary: str, host: str = "127.0.0.1", *,
                 prefix: Sequence[str] = (), port: int | None = None,
                 ready: Callable[[str, int], bool] = port_open,
                 tls: tuple[Path, Path] | None = None, log_requests: bool = False) -> None:
        """``prefix`` runs nginx under e.g. ``ip netns exec NS``; then give ``port`` and a
        ``ready(host, port)`` probe that looks inside the namespace; ``tls`` is a
        (certificate, key) pair to serve https (TLS 1.3 only); ``log_requests`` keeps an
        access log that :meth:`requests` reads (off by default: benchmarks run without)."""
        self.dir = Path(tempfile.mkdtemp(prefix="vipernet-http-nginx-"))
        os.chmod(self.dir, 0o755)  # workers run as nobody and must read the web root
        self.www = self.dir / "www"
        self.www.mkdir(mode=0o755)
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        try:
            for _ in range(3):  # the free port can be taken between probe and listen
                self.port = port if port is not None else free_port(host)
                conf = self.dir / "nginx.conf"
                tls_conf = "" if tls is None else (
                    f" ssl;\n        ssl_certificate {tls[0]};\n"
                    f"        ssl_certificate_key {tls[1]};\n        ssl_protocols TLSv1.3")
                log = f"{self.dir}/access.log conn" if log_requests else "off"
                conf.write_text(NGINX_CONF.format(d=self.dir, host=host, port=self.port,
                                                  tls=tls_conf, access_log=log))
                self.proc = subprocess.Popen(
                    [*prefix, binary, "-c", str(conf), "-p", str(self.dir), "-e",
                     str(self.dir / "error.log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.proc.poll() is None:
                    if ready(host, self.port):
                        return
                    time.sleep(0.05)
                self._stop()
            log = (self.dir / "error.log").read_text() if (self.dir / "error.log").exists() \
                else ""
            raise RuntimeError(f"nginx did not start: {log[-500:]}")
        except BaseException:
            self.close()
            raise

    def requests(self) -> list[tuple[int, str]]:
        """(nginx's serial number of the TCP connection, request line) for each request
        served so far, oldest first; needs ``log_requests``."""
        path = self.dir / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        served = []
        for line in lines:
            connection, _count, request = line.split(" ", 2)
            served.append((int(connection), request.strip('"')))
        return served

    def add_file(self, name: str, data: bytes) -> Path:
        path = self.www / name
        path.write_bytes(data)
        os.chmod(path, 0o644)
        return path

    def add_random_file(self, name: str, size: int) -> Path:
        path = self.www / name
        with path.open("wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        os.chmod(path, 0o644)
        return path

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # the whole session: under "ip netns exec" nginx is a child of the wrapper
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, Content-Length on every reply

    def log_message(self, format: str, *args: object) -> None:
        pass


class StdlibServer:
    """Python's ``http.server`` (threaded, HTTP/1.1) serving a temp directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vipernet-http-stdlib-"))
        handler = lambda *a: _Handler(*a, directory=str(self.dir))  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> StdlibServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
