"""netd's fd data plane against its message path, in-process, and the kernel over veth.

One run prints, in MB/s: bulk kernel -> program and program -> kernel through the fd path
(a ``vipernet.socket`` stream's descriptor, NET_SOCKET_ATTACH_FD), through the message path
(NET_SOCKET_SEND/RECV on the same netd), in-process (kernel mode, no netd), and the Linux
kernel's own TCP over a veth pair as the reference; then the round trip of a 1-byte request
and response over both netd paths.  Ratios to the reference and to in-process are printed
beside the figures.  Needs root (namespaces, TAP, veth).  Usage::

    python benchmarks/fd_path.py [--mb 200] [--rounds 3] [--pings 2000]

Each bulk figure is the best of ``--rounds`` runs (the spread is printed too): the machine
is shared, and the best run is the least disturbed one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.testbed import TestBed  # noqa: E402

from tcp_bulk import (  # noqa: E402
    SENDER,
    SINK,
    in_process,
    kernel_over_veth,
    mbps,
    netd_on_tap,
    netd_transfers,
)

ECHO_ONE = r"""
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("10.0.2.2", 0))
srv.listen(4)
print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := c.recv(1):
        c.sendall(data)
    c.close()
"""

BLOCK = 4 << 20


def message_bulk(bed: TestBed, mb: int) -> tuple[float, float]:
    """The same transfers with NET_SOCKET_SEND/RECV messages (no descriptor)."""
    from vipernet.netclient import default
    from vipernet.stack.socket_api import SocketKind

    client = default.default_client()
    lst = client.create(SocketKind.TCP)
    port = client.bind(lst, ("0.0.0.0", 0))[1]
    client.listen(lst, 4)
    sender = bed.start([sys.executable, "-c", SENDER, "10.0.2.15", str(port), str(mb)],
                       stdout=subprocess.PIPE)
    conn, _ = client.accept(lst, 60)
    total = 0
    t0 = time.perf_counter()
    while chunk := client.recv(conn, BLOCK, 60):
        total += len(chunk)
    down = mbps(total, time.perf_counter() - t0)
    client.close(conn)
    client.close(lst)
    sender.wait(timeout=60)
    sink = bed.start([sys.executable, "-c", SINK, "10.0.2.2"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    sock = client.create(SocketKind.TCP)
    client.connect(sock, ("10.0.2.2", sink_port), 30)
    piece = memoryview(b"\xa5" * (256 << 10))  # a SEND body is at most 256 KiB
    t0 = time.perf_counter()
    for _ in range(mb * 4):
        client.send(sock, piece, 60, send_all=True)
    client.shutdown(sock, 1)
    total_s, _ = sink.stdout.readline().decode().split()
    up = mbps(int(total_s), time.perf_counter() - t0)
    client.close(sock)
    return down, up


def round_trips(bed: TestBed, pings: int) -> tuple[float, float]:
    """Median microseconds of a 1-byte request/response: fd path, message path."""
    from vipernet import socket as vsocket
    from vipernet.netclient import default
    from vipernet.netd import protocol as p
    from vipernet.stack.socket_api import SocketKind

    echo = bed.start([sys.executable, "-c", ECHO_ONE], stdout=subprocess.PIPE)
    assert echo.stdout is not None
    port = int(echo.stdout.readline())
    s = vsocket.create_connection(("10.0.2.2", port), timeout=10)
    s.setsockopt(vsocket.IPPROTO_TCP, vsocket.TCP_NODELAY, 1)
    fd_times = _time_each(pings, lambda: (s.sendall(b"x"), s.recv(1)))
    s.close()
    client = default.default_client()
    sock = client.create(SocketKind.TCP)
    client.setsockopt(sock, p.SockOpt.TCP_NODELAY, 1)
    client.connect(sock, ("10.0.2.2", port), 10)
    msg_times = _time_each(pings, lambda: (client.send(sock, b"x", 10), client.recv(sock, 1, 10)))
    client.close(sock)
    return statistics.median(fd_times) * 1e6, statistics.median(msg_times) * 1e6


def _time_each(n: int, once: Callable[[], object]) -> list[float]:
    for _ in range(50):  # warm up
        once()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        once()
        out.append(time.perf_counter() - t0)
    return out


def best(runs: list[tuple[float, float]], i: int) -> str:
    values = [r[i] for r in runs]
    return f"{max(values):7.0f} MB/s (runs {', '.join(f'{v:.0f}' for v in values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="megabytes per direction (x4)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pings", type=int, default=2000)
    args = ap.parse_args()
    mb = max(4, args.mb - args.mb % 4)
    print(f"fd data plane, {mb} MB per direction, best of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    ref = max(kernel_over_veth(mb) for _ in range(args.rounds))
    inproc = [in_process(mb) for _ in range(args.rounds)]
    with netd_on_tap("fdb") as bed:
        fd = [netd_transfers(bed, mb) for _ in range(args.rounds)]
        msg = [message_bulk(bed, mb) for _ in range(args.rounds)]
        fd_rtt, msg_rtt = round_trips(bed, args.pings)
    print(f"  reference  kernel over veth            {ref:7.0f} MB/s")
    for i, direction in enumerate(("kernel -> program", "program -> kernel")):
        f, m, k = (max(r[i] for r in runs) for runs in (fd, msg, inproc))
        print(f"  {direction}")
        print(f"    fd path       {best(fd, i)}  = {f / ref:4.0%} of veth, "
              f"{f / k:4.0%} of in-process")
        print(f"    message path  {best(msg, i)}  = {m / ref:4.0%} of veth")
        print(f"    in-process    {best(inproc, i)}  = {k / ref:4.0%} of veth")
    print(f"  1-byte round trip (median of {args.pings}): fd path {fd_rtt:.0f} us, "
          f"message path {msg_rtt:.0f} us ({fd_rtt / msg_rtt:.2f}x)")


if __name__ == "__main__":
    main()
