"""Median ICMP echo RTT: kernel -> vipernet netd on a TAP, and kernel -> kernel over veth.

Makes its own namespaces (removed at the end), starts ``vipernet netd`` on the TAP of a
SLiRP-layout test bed, pings 10.0.2.15 from the namespace with the kernel's ping, then
pings across a veth pair between two fresh namespaces as the reference.  Prints the
median, p90 and minimum of each.  Needs root.  Target: vipernet median <= 150 us.
Also prints the reverse direction (NET_PING from netd to the kernel, by the stack's
clock and as seen by the calling program) and the bare netd IPC round trip.

    python benchmarks/ping_rtt.py [--count 500] [--interval 0.002]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.testbed import STACK_IP, TestBed  # noqa: E402

RTT = re.compile(r"time=([\d.]+) ms")


def kernel_ping(netns: str, target: str, count: int, interval: float) -> list[float]:
    out = subprocess.run(["ip", "netns", "exec", netns, "ping", "-n",
                          "-c", str(count), "-i", str(interval), "-W", "1", target],
                         capture_output=True, text=True, check=False).stdout
    return [float(m) * 1000 for m in RTT.findall(out)]  # microseconds


def summary(name: str, rtts: list[float], sent: int) -> str:
    if not rtts:
        return f"{name:<34} no replies"
    rtts_sorted = sorted(rtts)
    p90 = rtts_sorted[int(0.9 * (len(rtts_sorted) - 1))]
    return (f"{name:<34} median {statistics.median(rtts):7.1f} us   p90 {p90:7.1f} us   "
            f"min {rtts_sorted[0]:7.1f} us   ({len(rtts)}/{sent} replies)")


def veth_reference(count: int, interval: float) -> list[float]:
    tag = f"vn-bench-{os.getpid()}"
    a, b = f"{tag}-a", f"{tag}-b"
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "link", "add", "vnbA", "netns", a, "type", "veth", "peer", "name",
                        "vnbB", "netns", b], check=True)
        subprocess.run(["ip", "-n", a, "addr", "add", "10.9.0.1/24", "dev", "vnbA"], check=True)
        subprocess.run(["ip", "-n", b, "addr", "add", "10.9.0.2/24", "dev", "vnbB"], check=True)
        subprocess.run(["ip", "-n", a, "link", "set", "vnbA", "up"], check=True)
        subprocess.run(["ip", "-n", b, "link", "set", "vnbB", "up"], check=True)
        kernel_ping(a, "10.9.0.2", 3, 0.05)  # warm up ARP
        return kernel_ping(a, "10.9.0.2", count, interval)
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def vipernet_rtts(count: int, interval: float) -> list[float]:
    bed = TestBed("bp")
    try:
        path = str(bed.workdir / "netd.sock")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env)
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("netd did not start")
            time.sleep(0.05)
        kernel_ping(bed.name, STACK_IP, 20, 0.01)  # warm up ARP and caches
        rtts = kernel_ping(bed.name, STACK_IP, count, interval)
        _vipernet_side(path, count)
        return rtts
    finally:
        bed.close()


def _vipernet_side(path: str, count: int) -> None:
    """The other direction and the IPC cost, measured through netd's client library."""
    from vipernet.netclient.client import connect

    with connect(path) as client:
        client.ping("10.0.2.2", 0, bytes(56), 2.0)  # ARP
        stack_rtts = []
        call_rtts = []
        for seq in range(1, count + 1):
            started = time.perf_counter()
            reply = client.ping("10.0.2.2", seq, bytes(56), 2.0)
            call_rtts.append((time.perf_counter() - started) * 1e6)
            stack_rtts.append(reply.rtt_ns / 1000)
        sock = client.create(2)  # UDP, for a bare IPC round trip
        started = time.perf_counter()
        for _ in range(count):
            client.getsockname(sock)
        ipc = (time.perf_counter() - started) / count * 1e6
    _EXTRA.append(summary("vipernet -> kernel (stack clock)", stack_rtts, count))
    _EXTRA.append(summary("vipernet ping call incl. IPC", call_rtts, count))
    _EXTRA.append(f"{'netd IPC round trip (GETSOCKNAME)':<34} mean {ipc:7.1f} us")


_EXTRA: list[str] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.002)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("ping_rtt: needs root (namespaces, TAP)", file=sys.stderr)
        return 1
    ours = vipernet_rtts(args.count, args.interval)
    reference = veth_reference(args.count, args.interval)
    print(f"ICMP echo RTT, {args.count} pings at {args.interval * 1000:.0f} ms intervals")
    print(summary("kernel -> vipernet netd (TAP)", ours, args.count))
    print(summary("kernel -> kernel (veth)", reference, args.count))
    for line in _EXTRA:
        print(line)
    if ours:
        target = "met" if statistics.median(ours) <= 150 else "NOT met"
        print(f"target: vipernet median <= 150 us: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
