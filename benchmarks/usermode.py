"""User-mode networking throughput: a vipernet stack downloading from host loopback through
the built-in gateway (vipernet.slirp), next to the kernel's own loopback TCP as reference.

    python benchmarks/usermode.py [MEGABYTES]

Both read the same bytes from the same loopback server; the vipernet figure includes two
Python TCP stacks (guest and gateway), the NAT and the relay, all on one thread.
"""

from __future__ import annotations

import os
import sys

# benchmarks/http.py would shadow the stdlib's http package: drop this directory from the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import contextlib  # noqa: E402
import http.server  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, SRC)

from vipernet.slirp import SlirpDevice  # noqa: E402
from vipernet.stack import Stack, StackConfig  # noqa: E402


def serve(blob: bytes) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(blob)

    threading.Thread(target=loop, daemon=True).start()
    return server, server.getsockname()[1]


def kernel_download(port: int, size: int) -> float:
    start = time.perf_counter()
    got = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while data := sock.recv(1 << 20):
            got += len(data)
    assert got == size
    return time.perf_counter() - start


def vipernet_download(port: int, size: int) -> float:
    now = time.monotonic()
    device = SlirpDevice(now=now, rng=random.Random(1))
    guest = Stack(StackConfig(), capabilities=device.capabilities, now=now, rng=random.Random(2))
    start = time.perf_counter()
    sock = guest.tcp_socket()
    with contextlib.suppress(BlockingIOError):
        sock.connect(("10.0.2.2", port), now)
    got = 0
    done = False
    while not done:
        now = time.monotonic()
        for frame in guest.transmit():
            device.send(frame, now)
        due = [d for d in (device.next_deadline(), guest.next_deadline()) if d is not None]
        wait = max(0.0, min([now + 0.01, *due]) - now)
        select.select([device.fileno()], [], [], wait)
        now = time.monotonic()
        for frame in device.receive(now):
            guest.receive(frame, now)
        gdue = guest.next_deadline()
        if gdue is not None and gdue <= now:
            guest.poll(now)
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                done = True
                break
            got += len(data)
    elapsed = time.perf_counter() - start
    assert got == size, (got, size)
    sock.close(time.monotonic())
    device.close()
    return elapsed


def http_server(blob: bytes) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def netd_fetch(port: int) -> float:
    """`vipernet fetch` through `vipernet netd --link user` (separate processes, IPC)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    cli = [sys.executable, "-m", "vipernet.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "netd.sock")
        netd = subprocess.Popen([*cli, "netd", "--link", "user", "--socket", sock], env=env,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.05)
            start = time.perf_counter()
            env["VIPERNET_SOCKET"] = sock
            subprocess.run([*cli, "fetch", "-s", "-o", os.path.join(tmp, "out"),
                            f"http://10.0.2.2:{port}/"], env=env, check=True)
            return time.perf_counter() - start
        finally:
            netd.terminate()
            netd.wait(timeout=10)


def curl_fetch(port: int) -> float | None:
    if shutil.which("curl") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=True)
    return time.perf_counter() - start


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    size = megabytes * 1024 * 1024
    blob = os.urandom(size)
    server, port = serve(blob)
    web, web_port = http_server(blob)
    try:
        ours = min(vipernet_download(port, size) for _ in range(3))
        kernel = min(kernel_download(port, size) for _ in range(3))
        fetched = min(netd_fetch(web_port) for _ in range(2))
        curl = curl_fetch(web_port)
    finally:
        server.close()
        web.shutdown()
    print(f"download {megabytes} MB from host loopback (best of 3)")
    print(f"  vipernet stack via slirp gateway, in-process: {ours:6.2f} s "
          f"{size / ours / 1e6:8.1f} MB/s")
    print(f"  kernel loopback TCP (reference):              {kernel:6.2f} s "
          f"{size / kernel / 1e6:8.1f} MB/s")
    print(f"  vipernet fetch via netd --link user (HTTP):   {fetched:6.2f} s "
          f"{size / fetched / 1e6:8.1f} MB/s  (incl. process start-up)")
    if curl is not None:
        print(f"  curl over kernel loopback (reference):        {curl:6.2f} s "
              f"{size / curl / 1e6:8.1f} MB/s")


if __name__ == "__main__":
    main()
