"""TCP bulk throughput: kernel -> vipernet and vipernet -> kernel, in-process and through netd,
with the Linux kernel's own TCP over a veth pair measured in the same run as the reference.

Needs root (namespaces, TAP, veth).  Usage::

    python benchmarks/tcp_bulk.py [--mb 200] [--skip-netd] [--runs 3]

In-process figures are given for IPv4 and IPv6 (the stack at fd0a:2::15, the kernel at
fd0a:2::2, same TAP and offloads, TSO6 for IPv6) with the IPv6/IPv4 ratio; each is the
median of ``--runs`` runs (all runs printed).

Peers are cheap on purpose (constant buffers, ``recv_into`` a reused buffer, no hashing) so the
figures measure the stacks, not the test programs; correctness is the tests' job
(tests/tcp/test_kernel_interop.py compares sha256 on 100 MB each way).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.testbed import TestBed, stop_process, wait_for  # noqa: E402

SENDER = r"""
import socket, sys, time
host, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = memoryview(b"\x5a" * (1 << 20))
s = socket.create_connection((host, port), timeout=60)
t0 = time.perf_counter()
for _ in range(mb):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(time.perf_counter() - t0, flush=True)
"""

SINK = r"""
import socket, sys, time
host = sys.argv[1]
srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, 0))
srv.listen(4)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
buf = bytearray(1 << 20)
total = 0
t0 = time.perf_counter()
while True:
    n = c.recv_into(buf)
    if not n:
        break
    total += n
elapsed = time.perf_counter() - t0
c.close()
print(total, elapsed, flush=True)
"""


def _accepting(path: str) -> bool:
    """netd's socket file appears at bind(); it is usable once connect() succeeds."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


# -- the TCP engine alone ---------------------------------------------------------------------

def engine_only(mb: int) -> float:
    """Two TcpLayers joined in memory (TSO on, no IP layer, no device, one thread): what the
    TCP engine itself costs per byte, sender and receiver together."""
    from tests.tcp.sim import Impairments, SimNet

    net = SimNet(1, mtu=1500, imp=Impairments(delay=0.0001), tso=True)
    lst = net.b.tcp.open_socket()
    lst.bind(("0.0.0.0", 80))
    lst.listen(4)
    client = net.a.tcp.open_socket()
    with contextlib.suppress(BlockingIOError):
        client.connect(("10.0.0.2", 80), net.now)
    net.run(lambda: bool(lst.readable))
    server = lst.accept()
    block = memoryview(b"\x5a" * (4 << 20))
    total = mb << 20
    state = {"sent": 0, "got": 0}

    def each() -> None:
        while state["sent"] < total:
            try:
                state["sent"] += client.send(block, net.now)
            except BlockingIOError:
                break
        while True:
            try:
                state["got"] += len(server.recv(16 << 20))
            except BlockingIOError:
                break

    t0 = time.perf_counter()
    net.run(lambda: state["got"] >= total, each=each, limit=1e9)
    return mbps(total, time.perf_counter() - t0)


# -- reference: the kernel over veth ------------------------------------------------------------

def kernel_over_veth(mb: int, *, ipv6: bool = False) -> float:
    """The kernel's own TCP between two namespaces over a veth pair (IPv4 or IPv6)."""
    bed = TestBed("tbv6" if ipv6 else "tbv")
    other = f"{bed.name}-b"
    here, there, plen = ("fd09::1", "fd09::2", "64") if ipv6 else ("10.9.0.1", "10.9.0.2", "24")
    extra = ["nodad"] if ipv6 else []
    try:
        subprocess.run(["ip", "netns", "add", other], check=True)
        bed.ns(["ip", "link", "add", "vb0", "type", "veth", "peer", "name", "vb1", "netns", other])
        bed.ns(["ip", "addr", "add", f"{here}/{plen}", "dev", "vb0", *extra])
        bed.ns(["ip", "link", "set", "vb0", "up"])
        for argv in (["ip", "addr", "add", f"{there}/{plen}", "dev", "vb1", *extra],
                     ["ip", "link", "set", "vb1", "up"], ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", other, *argv], check=True)
        sink = bed.start([sys.executable, "-c", SINK, here], stdout=subprocess.PIPE)
        assert sink.stdout is not None
        port = sink.stdout.readline().decode().strip()
        subprocess.run(["ip", "netns", "exec", other, sys.executable, "-c", SENDER, here,
                        port, str(mb)], check=True, capture_output=True, timeout=300)
        total, elapsed = sink.stdout.readline().decode().split()
        return mbps(int(total), float(elapsed))
    finally:
        subprocess.run(["ip", "netns", "del", other], check=False)
        bed.close()


# -- in-process (kernel mode) ---------------------------------------------------------

def in_process(mb: int, *, ipv6: bool = False) -> tuple[float, float]:
    from tests.tcp.kernel_rig import close_rig, open_rig

    rig = open_rig("tb6" if ipv6 else "tbi", ipv6=ipv6)
    try:
        # kernel -> vipernet
        lst = rig.call(lambda: rig.stack.tcp_socket(rig.family))
        rig.call(lambda: lst.bind(("", 5001)))
        rig.call(lambda: lst.listen(8))
        proc = rig.bed.start([sys.executable, "-c", SENDER, rig.stack_host, "5001", str(mb)],
                             stdout=subprocess.PIPE)
        sock = rig.accept(lst)
        t0 = time.perf_counter()
        total = rig.recv_all(sock, lambda _chunk: None, timeout=120)
        down = mbps(total, time.perf_counter() - t0)
        rig.close(sock)
        rig.close(lst)
        proc.wait(timeout=60)
        # vipernet -> kernel
        sink = rig.bed.start([sys.executable, "-c", SINK, rig.kernel_host],
                             stdout=subprocess.PIPE)
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        sock = rig.connect(rig.kernel_host, port)
        buf = memoryview(b"\xa5" * (4 << 20))
        t0 = time.perf_counter()
        for _ in range(mb // 4):
            rig.sendall(sock, buf)
        rig.shutdown_write(sock)
        total_s, _elapsed = sink.stdout.readline().decode().split()
        up = mbps(int(total_s), time.perf_counter() - t0)
        rig.close(sock)
        return down, up
    finally:
        close_rig(rig)


# -- through netd ----------------------------------------------------------------------

@contextlib.contextmanager
def netd_on_tap(tag: str) -> Iterator[TestBed]:
    """A test bed with netd on its TAP, made the default client of this process."""
    bed = TestBed(tag)
    proc: Any = None
    try:
        path = str(bed.workdir / "netd.sock")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VIPERNET_SOCKET": path}
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env)
        wait_for(lambda: _accepting(path) or proc.poll() is not None, what="netd socket",
                 timeout=30)
        os.environ["VIPERNET_SOCKET"] = path
        os.environ.pop("VIPER_KERNEL_ENABLE_NET", None)
        from vipernet.netclient import default
        default.reset_default_client()
        yield bed
        default.reset_default_client()
    finally:
        if proc is not None:
            stop_process(proc)
        bed.close()


def through_netd(mb: int) -> tuple[float, float]:
    with netd_on_tap("tbn") as bed:
        return netd_transfers(bed, mb)


def netd_transfers(bed: TestBed, mb: int) -> tuple[float, float]:
    """Kernel -> vipernet and vipernet -> kernel through the running netd (vipernet.socket:
    the fd data plane)."""
    from vipernet import socket as vsocket

    lst = vsocket.socket(vsocket.AF_INET, vsocket.SOCK_STREAM)
    lst.bind(("0.0.0.0", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    sender = bed.start([sys.executable, "-c", SENDER, "10.0.2.15", str(port), str(mb)],
                       stdout=subprocess.PIPE)
    conn, _ = lst.accept()
    buf = bytearray(4 << 20)
    total = 0
    t0 = time.perf_counter()
    while n := conn.recv_into(buf):
        total += n
    down = mbps(total, time.perf_counter() - t0)
    conn.close()
    lst.close()
    sender.wait(timeout=60)
    sink = bed.start([sys.executable, "-c", SINK, "10.0.2.2"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    s = vsocket.create_connection(("10.0.2.2", sink_port), timeout=60)
    data = memoryview(b"\xa5" * (4 << 20))
    t0 = time.perf_counter()
    for _ in range(mb // 4):
        s.sendall(data)
    s.shutdown(vsocket.SHUT_WR)
    total_s, _ = sink.stdout.readline().decode().split()
    up = mbps(int(total_s), time.perf_counter() - t0)
    s.close()
    return down, up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="megabytes per direction (multiple of 4)")
    ap.add_argument("--skip-netd", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="runs per in-process figure")
    args = ap.parse_args()
    mb = max(4, args.mb - args.mb % 4)
    print(f"TCP bulk, {mb} MB per direction, load average {os.getloadavg()[0]:.2f}")
    print(f"  engine     two TcpLayers in memory, one thread   {engine_only(mb):8.0f} MB/s")
    ref = kernel_over_veth(mb)
    print(f"  reference  Linux kernel over veth           {ref:8.0f} MB/s")
    ref6 = kernel_over_veth(mb, ipv6=True)
    print(f"  reference  Linux kernel over veth, IPv6     {ref6:8.0f} MB/s "
          f"({ref6 / ref:.2f} of its IPv4)")
    # The families take turns, run by run, so a change in the machine's load while the
    # benchmark runs weighs on both alike.
    by_family: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(max(1, args.runs)):
        for ipv6 in (False, True):
            by_family[ipv6].append(in_process(mb, ipv6=ipv6))
    medians: dict[bool, tuple[float, float]] = {}
    for ipv6 in (False, True):
        runs = by_family[ipv6]
        downs = sorted(r[0] for r in runs)
        ups = sorted(r[1] for r in runs)
        down, up = downs[len(downs) // 2], ups[len(ups) // 2]
        medians[ipv6] = (down, up)
        name = "IPv6" if ipv6 else "IPv4"
        each_down = " ".join(f"{r[0]:.0f}" for r in runs)
        each_up = " ".join(f"{r[1]:.0f}" for r in runs)
        print(f"  in-process {name} kernel -> vipernet (TAP, TSO) {down:8.0f} MB/s "
              f"({down / ref:.0%} of veth; runs {each_down})")
        print(f"  in-process {name} vipernet -> kernel (TAP, TSO) {up:8.0f} MB/s "
              f"({up / ref:.0%} of veth; runs {each_up})")
    (d4, u4), (d6, u6) = medians[False], medians[True]
    print(f"  IPv6 / IPv4: kernel -> vipernet {d6 / d4:.2f}, vipernet -> kernel {u6 / u4:.2f}")
    if not args.skip_netd:
        try:
            ndown, nup = through_netd(mb)
            print(f"  netd       kernel -> vipernet               {ndown:8.0f} MB/s")
            print(f"  netd       vipernet -> kernel               {nup:8.0f} MB/s")
        except Exception as exc:  # netd is another package: report, do not hide the rest
            print(f"  netd       unavailable: {exc!r}")


if __name__ == "__main__":
    main()
