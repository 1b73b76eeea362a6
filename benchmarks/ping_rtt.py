"""Median ICMP echo RTT: kernel -> vipernet netd on a TAP, and kernel -> kernel over veth.

Makes its own namespaces (removed at the end), starts ``vipernet netd`` on the TAP of a
SLiRP-layout test bed, pings 10.0.2.15 from the namespace with the kernel's ping, then
pings across a veth pair between two fresh namespaces as the reference.  Prints the
median, p90 and minimum of each.  Needs root.  Target: vipernet median <= 150 us.

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
        return kernel_ping(bed.name, STACK_IP, count, interval)
    finally:
        bed.close()


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
    if ours:
        target = "met" if statistics.median(ours) <= 150 else "NOT met"
        print(f"target: vipernet median <= 150 us: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
