"""Virtual hosts: netd's memory per idle host, create/destroy rate, and ``vipernet load``'s
connections/s against the kernel's own connect rate in the same namespace (same run).

Needs root.  Run: ``python benchmarks/virtual_hosts.py [SECONDS]`` (default 5 s per load
measurement).  What it prints:

* netd's RSS with 0, 1,000 and 10,000 idle hosts (``--hosts``), and MB per 1,000 hosts
  over the 0-host baseline;
* in-process ``VirtualHosts``: hosts created and destroyed per second (10,000 of each);
* connections/s to a kernel server on 10.0.2.2 (tests/vhosts/kernel_server.py), pattern
  ``connect`` and ``http-get``: ``vipernet load`` from 1,000 hosts x 1 connection, and,
  as the reference, a kernel client in the namespace doing the same one connection at a
  time for the same time (Python, blocking sockets: what one process of the kernel's does).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Interface
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.testbed import GATEWAY, TestBed, wait_for  # noqa: E402
from tests.vhosts.bed import roomy_neighbour_table, route_hosts, start_kernel_server  # noqa: E402

from vipernet.vhosts import VirtualHosts  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

KERNEL_CLIENT = """
import socket, sys, time
host, port, seconds, pattern = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
done, errors, end = 0, 0, time.monotonic() + seconds
start = time.monotonic()
while time.monotonic() < end:
    try:
        s = socket.create_connection((host, port), timeout=5)
        if pattern == "http-get":
            s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            while s.recv(4096):
                pass
        s.close()
        done += 1
    except OSError:
        errors += 1
print(done / (time.monotonic() - start), errors)
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def netd_rss(hosts: int) -> tuple[float, float]:
    """(RSS in MB, seconds from start to serving) of netd with ``hosts`` idle hosts."""
    with TestBed("vbr") as bed:
        path = str(bed.workdir / "netd.sock")
        argv = [sys.executable, "-m", "vipernet.cli.main", "netd", "--link", f"tap:{bed.tap}",
                "--socket", path, "--ip6", "off"]
        if hosts:
            argv += ["--hosts", f"{hosts}@10.1.0.1/16"]
        started = time.monotonic()
        proc = bed.start(argv, env=ENV)
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd")
        ready = time.monotonic() - started
        time.sleep(0.5)  # let the start-up garbage settle
        return rss_mb(proc.pid), ready


def create_destroy_rate(count: int = 10000) -> tuple[float, float]:
    hosts = VirtualHosts(now=0.0)
    interfaces = [IPv4Interface((int(IPv4Interface("10.1.0.1/16").ip) + i, 16))
                  for i in range(count)]
    t = time.perf_counter()
    for ip in interfaces:
        hosts.add(ip, 0.0)
    hosts.transmit()
    created = count / (time.perf_counter() - t)
    t = time.perf_counter()
    for ip in interfaces:
        hosts.remove(ip.ip)
    destroyed = count / (time.perf_counter() - t)
    return created, destroyed


def load_rate(bed: TestBed, port: int, pattern: str, seconds: float) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "vipernet.cli.main", "load", "--link",
         f"tap:{bed.tap}@{bed.name}", "--hosts", "1000@10.0.3.1/16", "--connections", "1",
         "--target", f"{GATEWAY}:{port}", "--pattern", pattern, "--duration", str(seconds),
         "--json"], env=ENV, capture_output=True, text=True, timeout=seconds + 60)
    summary: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return summary


def kernel_rate(bed: TestBed, port: int, pattern: str, seconds: float) -> float:
    out = bed.ns([sys.executable, "-c", KERNEL_CLIENT, GATEWAY, str(port), str(seconds),
                  pattern], timeout=seconds + 30).stdout.split()
    return float(out[0])


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    print("netd RSS, idle virtual hosts:")
    base, _ = netd_rss(0)
    print(f"  {0:6d} hosts  {base:7.1f} MB")
    for count in (1000, 10000):
        rss, ready = netd_rss(count)
        per = (rss - base) / (count / 1000)
        print(f"  {count:6d} hosts  {rss:7.1f} MB   {per:5.2f} MB per 1,000 hosts   "
              f"serving {ready:.1f} s after start")
    created, destroyed = create_destroy_rate()
    print(f"VirtualHosts: {created:,.0f} hosts created/s, {destroyed:,.0f} destroyed/s")
    with roomy_neighbour_table(), TestBed("vbl") as bed:
        route_hosts(bed)
        port, _ = start_kernel_server(bed)
        socket.setdefaulttimeout(None)
        for pattern in ("connect", "http-get"):
            summary = load_rate(bed, port, pattern, seconds)
            reference = kernel_rate(bed, port, pattern, seconds)
            connect_ms = summary["connect_ms"]
            assert isinstance(connect_ms, dict)
            print(f"{pattern:9s} vipernet load (1,000 hosts x 1): "
                  f"{summary['connections_per_s']:8.1f} conn/s  connect p50 "
                  f"{connect_ms['p50']} ms p99 {connect_ms['p99']} ms  errors "
                  f"{summary['errors'] or 'none'}")
            print(f"{pattern:9s} kernel client, one at a time:  {reference:8.1f} conn/s "
                  "(reference, same server, same run)")


if __name__ == "__main__":
    main()
