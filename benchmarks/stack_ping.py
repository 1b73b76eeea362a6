"""Kernel -> in-process vipernet stack ping RTT on a real TAP, with kernel -> kernel over a
veth pair measured in the same run as the reference.

Needs root.  Run: ``python benchmarks/stack_ping.py [COUNT]``.  The stack runs in this
process (kernel mode: ``Runtime.start_thread()``), so this is the stack + runtime cost
without netd; ``benchmarks/ping_rtt.py`` measures the same through netd.
"""

from __future__ import annotations

import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.testbed import TestBed

from vipernet.link.tap import TapDevice
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig


def _rtts(output: str) -> list[float]:
    return [float(x) * 1000 for x in re.findall(r"time=([\d.]+) ms", output)]


def _ping(argv_prefix: list[str], target: str, count: int) -> list[float]:
    out = subprocess.run([*argv_prefix, "ping", "-n", "-c", str(count),
                          "-i", "0.002", target], capture_output=True, text=True, check=False)
    return _rtts(out.stdout)


def _report(name: str, rtts: list[float]) -> None:
    if not rtts:
        print(f"{name:32s} no replies")
        return
    rtts.sort()
    print(f"{name:32s} median {statistics.median(rtts):7.1f} us   p10 {rtts[len(rtts) // 10]:7.1f}"
          f"   p90 {rtts[len(rtts) * 9 // 10]:7.1f}   min {rtts[0]:6.1f}   n={len(rtts)}")


def bench_vipernet(count: int) -> list[float]:
    bed = TestBed("spb")
    try:
        device = TapDevice.open(bed.tap, netns=bed.name)
        stack = Stack(StackConfig(), capabilities=device.capabilities, now=time.monotonic(),
                      rng=random.Random())
        runtime = Runtime(stack, device)
        runtime.start_thread()
        try:
            _ping(bed.ns_argv([]), "10.0.2.15", 5)  # warm up ARP
            return _ping(bed.ns_argv([]), "10.0.2.15", count)
        finally:
            runtime.close()
            device.close()
    finally:
        bed.close()


def bench_kernel_veth(count: int) -> list[float]:
    tag = f"vnspb{time.monotonic_ns() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    run = subprocess.run
    try:
        for ns in (a, b):
            run(["ip", "netns", "add", ns], check=True)
        run(["ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "vb", "netns", b],
            check=True)
        for ns, dev, ip in ((a, "va", "10.9.0.1/24"), (b, "vb", "10.9.0.2/24")):
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", ip, "dev", dev], check=True)
            run(["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"], check=True)
        _ping(["ip", "netns", "exec", a], "10.9.0.2", 5)
        return _ping(["ip", "netns", "exec", a], "10.9.0.2", count)
    finally:
        for ns in (a, b):
            run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    _report("kernel -> vipernet (in-process)", bench_vipernet(count))
    _report("kernel -> kernel (veth)", bench_kernel_veth(count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
