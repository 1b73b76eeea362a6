"""HTTP client benchmark: vipernet.http vs stdlib http.client vs httpx, in one run.

Against nginx on 127.0.0.1 (OS sockets; falls back to Python's http.server if nginx is not
installed, which then bounds every client): small keep-alive GETs per second, and MB/s for
one large body (200 MB by default) streamed and discarded — with ``readinto`` into one
reusable 1 MiB buffer (both http.client and vipernet) and with ``read()`` / ``iter_bytes``.

    python benchmarks/http.py [--size-mb 200] [--seconds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: drop its own directory from the path so that
# ``import http.client`` finds the standard library, not this script.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import http.client  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from tests.http.peers import Nginx, StdlibServer  # noqa: E402

from vipernet.http import Client  # noqa: E402

CHUNK = 256 * 1024
READINTO_BUFFER = 1024 * 1024  # the caller's buffer for every readinto figure


def os_connect(host: str, port: int, timeout: float | None) -> Any:
    return socket.create_connection((host, port), timeout=timeout)


def rates(fns: dict[str, Callable[[], None]], seconds: float,
          rounds: int = 8) -> dict[str, tuple[float, float]]:
    """Best requests/s and least CPU µs per request of each client.

    The clients take turns in short rounds, so a burst of load from other processes on
    this shared machine hits all of them alike instead of whichever ran at the time.
    """
    for fn in fns.values():
        for _ in range(200):
            fn()
    best: dict[str, tuple[float, float]] = {name: (0.0, float("inf")) for name in fns}
    slot = seconds / rounds
    for _ in range(rounds):
        for name, fn in fns.items():
            count = 0
            start, cpu = time.perf_counter(), time.process_time()
            while time.perf_counter() - start < slot:
                for _ in range(50):
                    fn()
                count += 50
            wall = time.perf_counter() - start
            used = (time.process_time() - cpu) / count * 1e6
            rate_, cpu_ = best[name]
            best[name] = (max(rate_, count / wall), min(cpu_, used))
    return best


def best_mbps(fn: Callable[[], int], rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start) / 1e6)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--https-mb", type=int, default=100,
                    help="size for the https run (0 skips it)")
    ap.add_argument("--stack-mb", type=int, default=100,
                    help="size for the over-the-stack run (0 skips it; needs root)")
    args = ap.parse_args()
    size = args.size_mb * 1_000_000

    import httpx

    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(nginx_bin).exists():
        server: Any = Nginx(nginx_bin)
        www = server.www
        kind = "nginx"
    else:
        server = StdlibServer()
        www = server.dir
        kind = "http.server (nginx not installed: figures bounded by the server)"
    try:
        (www / "small").write_bytes(b"hello, world\n")
        (www / "small").chmod(0o644)
        with (www / "big").open("wb") as f:
            block = bytes(range(256)) * 4096
            for _ in range(size // len(block)):
                f.write(block)
            f.write(block[: size % len(block)])
        (www / "big").chmod(0o644)
        host, port = "127.0.0.1", server.port
        print(f"server: {kind} on {host}:{port}; body {size / 1e6:.0f} MB")

        # -- small keep-alive GETs ------------------------------------------------------------
        hc = http.client.HTTPConnection(host, port)

        def stdlib_small() -> None:
            hc.request("GET", "/small")
            hc.getresponse().read()

        hx = httpx.Client()
        small_url = f"http://{host}:{port}/small"

        def httpx_small() -> None:
            hx.get(small_url).read()

        vc = Client(connect=os_connect)

        def viper_small() -> None:
            vc.get(small_url)

        results = rates({"http.client": stdlib_small, "httpx": httpx_small,
                         "vipernet.http": viper_small}, args.seconds * 3)
        print("\nsmall keep-alive GETs (best requests/s over interleaved rounds; client CPU)")
        for name, (value, cpu) in results.items():
            print(f"  {name:16s} {value:9,.0f} req/s   {cpu:6.1f} µs CPU/request")
        ratio_small = results["vipernet.http"][0] / results["http.client"][0]
        ratio_cpu = results["http.client"][1] / results["vipernet.http"][1]
        print(f"  vipernet / http.client = {ratio_small:.0%} by req/s, {ratio_cpu:.0%} by CPU "
              f"(target >= 80%)")
        print(f"  vipernet connections opened {vc.stats.connections_opened}, "
              f"reused {vc.stats.connections_reused}")

        # -- one large body ---------------------------------------------------------------------
        big = f"http://{host}:{port}/big"
        buf = bytearray(READINTO_BUFFER)

        def stdlib_big_readinto() -> int:
            hc.request("GET", "/big")
            r = hc.getresponse()
            total = 0
            view = memoryview(buf)
            while n := r.readinto(view):
                total += n
            return total

        def stdlib_big_read() -> int:
            hc.request("GET", "/big")
            return len(hc.getresponse().read())

        def httpx_big() -> int:
            total = 0
            with hx.stream("GET", big) as r:
                for chunk in r.iter_raw(CHUNK):
                    total += len(chunk)
            return total

        def viper_big() -> int:
            total = 0
            with vc.stream("GET", big) as r:
                for chunk in r.iter_bytes():
                    total += len(chunk)
            return total

        def viper_big_read() -> int:
            return len(vc.get(big).content)

        def viper_big_readinto() -> int:
            total = 0
            view = memoryview(buf)
            with vc.stream("GET", big) as r:
                while n := r.readinto(view):
                    total += n
            return total

        big_fns = {"http.client readinto": stdlib_big_readinto,
                   "http.client read()": stdlib_big_read, "httpx iter_raw": httpx_big,
                   "vipernet readinto": viper_big_readinto,
                   "vipernet iter_bytes": viper_big, "vipernet read()": viper_big_read}
        mb = dict.fromkeys(big_fns, 0.0)
        for _ in range(3):  # interleaved rounds, best of each
            for name, fn in big_fns.items():
                mb[name] = max(mb[name], best_mbps(fn, rounds=1))
        print(f"\n{size / 1e6:.0f} MB body (MB/s, best of 3 interleaved rounds)")
        for name, value in mb.items():
            print(f"  {name:22s} {value:9,.0f}")
        ref_name = max(("http.client readinto", "http.client read()"), key=mb.__getitem__)
        ours_name = max(("vipernet readinto", "vipernet iter_bytes", "vipernet read()"),
                        key=mb.__getitem__)
        print(f"  best vipernet ({ours_name.split()[1]}) / best http.client "
              f"({ref_name.split()[1]}) = {mb[ours_name] / mb[ref_name]:.0%} (target >= 50%)")
        print(f"  vipernet readinto / http.client readinto = "
              f"{mb['vipernet readinto'] / mb['http.client readinto']:.0%}, / http.client "
              f"read() = {mb['vipernet readinto'] / mb['http.client read()']:.0%}")
        print(f"  vipernet connections opened {vc.stats.connections_opened}, "
              f"reused {vc.stats.connections_reused}")
        hc.close()
        hx.close()
        vc.close()
    finally:
        server.close()
    if args.https_mb and Path(nginx_bin).exists():
        over_https(nginx_bin, args.https_mb * 1_000_000, args.seconds)
    if args.stack_mb:
        over_the_stack(args.stack_mb * 1_000_000)
    return 0


def over_https(nginx_bin: str, size: int, seconds: float) -> None:
    """nginx with TLS 1.3 on loopback: vipernet.http + vipernet.tls vs http.client + ssl."""
    import ssl
    import tempfile

    from tests.http.certs import make_ca_and_server

    with tempfile.TemporaryDirectory(prefix="vipernet-http-bench-") as d:
        ca, cert, key = make_ca_and_server(Path(d), "example.test")
        with Nginx(nginx_bin, tls=(cert, key)) as server:
            (server.www / "small").write_bytes(b"hello, world\n")
            (server.www / "small").chmod(0o644)
            with (server.www / "big").open("wb") as f:
                block = bytes(range(256)) * 4096
                for _ in range(size // len(block) + 1):
                    f.write(block)
            (server.www / "big").chmod(0o644)
            port = server.port
            ctx = ssl.create_default_context(cafile=str(ca))  # the reference client only

            def ref_connection() -> http.client.HTTPSConnection:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
                conn.connect = lambda: _connect_sni(conn, ctx, port)  # type: ignore[method-assign]
                return conn

            hc = ref_connection()
            vc = Client(connect=os_connect, cafile=str(ca),
                        resolve={("example.test", port): "127.0.0.1"})
            base = f"https://example.test:{port}"

            def stdlib_small() -> None:
                hc.request("GET", "/small", headers={"Host": "example.test"})
                hc.getresponse().read()

            def viper_small() -> None:
                vc.get(base + "/small")

            results = rates({"http.client+ssl": stdlib_small, "vipernet (tls)": viper_small},
                            seconds * 2)
            print("\nhttps (TLS 1.3, nginx on loopback)")
            for name, (value, cpu) in results.items():
                print(f"  small GETs  {name:16s} {value:9,.0f} req/s   {cpu:6.1f} µs CPU/request")

            def stdlib_big() -> int:
                hc.request("GET", "/big", headers={"Host": "example.test"})
                r = hc.getresponse()
                total = 0
                buf = memoryview(bytearray(CHUNK))
                while n := r.readinto(buf):
                    total += n
                return total

            def viper_big() -> int:
                total = 0
                with vc.stream("GET", base + "/big") as r:
                    for chunk in r.iter_bytes():
                        total += len(chunk)
                return total

            def viper_big_readinto() -> int:
                total = 0
                view = memoryview(bytearray(READINTO_BUFFER))
                with vc.stream("GET", base + "/big") as r:
                    while n := r.readinto(view):
                        total += n
                return total

            tls_fns = {"http.client+ssl": stdlib_big, "vipernet (tls)": viper_big,
                       "vipernet readinto": viper_big_readinto}
            mb = dict.fromkeys(tls_fns, 0.0)
            for _ in range(2):
                for name, fn in tls_fns.items():
                    mb[name] = max(mb[name], best_mbps(fn, 1))
            for name, value in mb.items():
                print(f"  {size / 1e6:.0f} MB body {name:16s} {value:9,.0f} MB/s")
            print(f"  vipernet connections opened {vc.stats.connections_opened}, "
                  f"reused {vc.stats.connections_reused}")
            hc.close()
            vc.close()


def _connect_sni(conn: http.client.HTTPSConnection, ctx: Any, port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sock = ctx.wrap_socket(sock, server_hostname="example.test")


STREAM_SNIPPET = """
import socket, sys, time
sys.path.insert(0, {src!r})
from vipernet.http import Client
connect = None
if {kernel!r}:
    connect = lambda h, p, t: socket.create_connection((h, p), t)
with Client(connect=connect) as c:
    best = 0.0
    for _ in range(3):
        t = time.perf_counter(); n = 0
        with c.stream("GET", {url!r}) as r:
            for chunk in r.iter_bytes():
                n += len(chunk)
        best = max(best, n / (time.perf_counter() - t) / 1e6)
print(f"{{best:.0f}}")
"""


def over_the_stack(size: int) -> None:
    """100 MB from nginx at 10.0.2.2 in a test namespace: through netd vs the kernel."""
    import subprocess

    print(f"\nover the stack: {size / 1e6:.0f} MB from nginx at 10.0.2.2 (MB/s, best of 3)")
    try:
        import pytest
        from tests.testbed import GATEWAY, TestBed
        from tests.tls.netd_bed import start_netd
        bed = TestBed("hbench")
    except (Exception, pytest.skip.Exception) as exc:  # not root, no TAP: say so, go on
        print(f"  skipped: {exc}")
        return
    nginx = None
    try:
        nginx = Nginx(shutil.which("nginx") or "/usr/sbin/nginx", GATEWAY,
                      prefix=bed.ns_argv([]), port=80, ready=bed.tcp_port_open)
        with (nginx.www / "big").open("wb") as f:
            block = bytes(range(256)) * 4096
            for _ in range(size // len(block) + 1):
                f.write(block)
        (nginx.www / "big").chmod(0o644)
        env = start_netd(bed)
        url = f"http://{GATEWAY}/big"
        src = str(ROOT / "src")
        ours = subprocess.run([sys.executable, "-c", STREAM_SNIPPET.format(
            src=src, kernel=False, url=url)], env=env, capture_output=True, text=True,
            timeout=600)
        kernel = subprocess.run(bed.ns_argv([sys.executable, "-c", STREAM_SNIPPET.format(
            src=src, kernel=True, url=url)]), capture_output=True, text=True, timeout=600)
        for label, run in (("vipernet.http via netd (vipernet TCP/IP)  ", ours),
                           ("vipernet.http, kernel TCP in the namespace", kernel)):
            print(f"  {label} {run.stdout.strip() or run.stderr[-300:]}")
    finally:
        if nginx is not None:
            nginx.close()
        bed.close()


if __name__ == "__main__":
    sys.exit(main())
