"""TCP connection rates and memory: accepted connections/s, open/close cycles/s, and the
memory of 10,000 concurrent idle connections (in-process and in netd), with the Linux
kernel's own figures over veth in the same run as the reference.

Needs root.  Usage::

    python benchmarks/tcp_connect.py [--conns 10000] [--cycles 5000] [--skip-netd]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.testbed import TestBed, stop_process, wait_for  # noqa: E402

# Kernel-side connector: N connect+close as fast as it can, K at a time (non-blocking).
CONNECTOR = r"""
import errno, selectors, socket, sys, time
host, port, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
done = 0
t0 = time.perf_counter()
while done < n:
    batch = []
    for _ in range(min(k, n - done)):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        batch.append(s)
    sel = selectors.DefaultSelector()
    for s in batch:
        sel.register(s, selectors.EVENT_WRITE)
    left = len(batch)
    while left:
        for key, _ in sel.select(10):
            sel.unregister(key.fileobj)
            left -= 1
    for s in batch:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            done += 1
        s.close()
print(done, time.perf_counter() - t0, flush=True)
"""

# Kernel-side server: accept and close at once (cycles), or hold each connection until the
# peer closes it (idle), then close it too.
ACCEPTOR = r"""
import resource, selectors, socket, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
hold = sys.argv[2] == "hold"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 0))
srv.listen(4096)
srv.setblocking(False)
print(srv.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            try:
                c, _ = srv.accept()
            except BlockingIOError:
                continue
            if hold:  # keep it until the peer closes, then close too
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
            else:
                c.close()
        else:
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
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


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- reference ------------------------------------------------------------------------------

def kernel_reference(n: int) -> tuple[float, float]:
    """Accepted connections/s and connect+close cycles/s of the kernel over veth."""
    bed = TestBed("tcv")
    other = f"{bed.name}-b"
    try:
        subprocess.run(["ip", "netns", "add", other], check=True)
        bed.ns(["ip", "link", "add", "vc0", "type", "veth", "peer", "name", "vc1", "netns", other])
        bed.ns(["ip", "addr", "add", "10.9.1.1/24", "dev", "vc0"])
        bed.ns(["ip", "link", "set", "vc0", "up"])
        for argv in (["ip", "addr", "add", "10.9.1.2/24", "dev", "vc1"],
                     ["ip", "link", "set", "vc1", "up"]):
            subprocess.run(["ip", "netns", "exec", other, *argv], check=True)
        srv = bed.start([sys.executable, "-c", ACCEPTOR, "10.9.1.1", "close"],
                        stdout=subprocess.PIPE)
        assert srv.stdout is not None
        port = srv.stdout.readline().decode().strip()
        out = subprocess.run(["ip", "netns", "exec", other, sys.executable, "-c", CONNECTOR,
                              "10.9.1.1", port, str(n), "50"], capture_output=True, text=True,
                             timeout=300, check=True).stdout.split()
        rate = int(out[0]) / float(out[1])
        return rate, rate
    finally:
        subprocess.run(["ip", "netns", "del", other], check=False)
        bed.close()


# -- in-process ---------------------------------------------------------------------------------

def in_process(n_accept: int, n_cycles: int, n_idle: int) -> tuple[float, float, float, float]:
    from tests.tcp.kernel_rig import close_rig, open_rig

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rig = open_rig("tci")
    try:
        now = rig.now
        # accepted connections/s: the kernel connects, we accept and close in batches
        lst = rig.call(rig.stack.tcp_socket)
        rig.call(lambda: lst.bind(("0.0.0.0", 6001)))
        rig.call(lambda: lst.listen(4096))
        proc = rig.bed.start([sys.executable, "-c", CONNECTOR, "10.0.2.15", "6001",
                              str(n_accept), "50"], stdout=subprocess.PIPE)
        accepted = 0
        t0 = time.perf_counter()

        def drain() -> int:
            got = 0
            while lst.readable:
                lst.accept().close(now())
                got += 1
            return got
        while accepted < n_accept:
            rig.runtime.wait_until(lambda: lst.readable, 10)
            accepted += rig.call(drain)
        accept_rate = accepted / (time.perf_counter() - t0)
        proc.wait(timeout=60)
        rig.close(lst)
        # open/close cycles/s: we connect to the kernel and close, 50 at a time
        srv = rig.bed.start([sys.executable, "-c", ACCEPTOR, "10.0.2.2", "close"],
                            stdout=subprocess.PIPE)
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        done = 0
        t0 = time.perf_counter()
        while done < n_cycles:
            socks = rig.call(lambda: [_start(rig, "10.0.2.2", port) for _ in range(50)])
            rig.runtime.wait_until(lambda socks=socks: all(s.writable for s in socks), 30)
            done += rig.call(lambda socks=socks: _close_all(rig, socks))
        cycle_rate = done / (time.perf_counter() - t0)
        stop_process(srv)
        # idle connections: memory of n_idle established connections
        srv = rig.bed.start([sys.executable, "-c", ACCEPTOR, "10.0.2.2", "hold"],
                            stdout=subprocess.PIPE)
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        base_rss = rss_mb()
        idle: list[Any] = []
        while len(idle) < n_idle:
            socks = rig.call(lambda: [_start(rig, "10.0.2.2", port) for _ in range(200)])
            rig.runtime.wait_until(lambda socks=socks: all(s.writable for s in socks), 60)
            idle += socks
        established = rig.call(lambda: sum(s.state.name == "ESTABLISHED" for s in idle))
        idle_rss = rss_mb() - base_rss
        stop_process(srv)
        return accept_rate, cycle_rate, idle_rss, established
    finally:
        close_rig(rig)


def _start(rig: Any, host: str, port: int) -> Any:
    s = rig.stack.tcp_socket()
    with contextlib.suppress(BlockingIOError):
        s.connect((host, port), rig.now())
    return s


def _close_all(rig: Any, socks: list[Any]) -> int:
    ok = 0
    for s in socks:
        if s.take_error() is None:
            ok += 1
        s.close(rig.now())
    return ok


# -- netd ------------------------------------------------------------------------------------

HOLDER = r"""
import sys
from vipernet import socket as vs
n, port = int(sys.argv[1]), int(sys.argv[2])
socks = [vs.create_connection(("10.0.2.2", port), timeout=30) for _ in range(n)]
print("ready", flush=True)
sys.stdin.read()
for s in socks:
    s.close()
for _ in range(n):
    vs.create_connection(("10.0.2.2", port), timeout=30).close()
print("cycled", flush=True)
sys.stdin.read()
"""

PER_CLIENT = 1000  # netd caps one client at 1024 sockets


def netd_idle(n_idle: int) -> tuple[float, float, float, float]:
    """netd's RSS: at start, with n_idle idle connections (from n_idle/1000 client
    processes), after closing them, and after n_idle more open/close cycles."""
    bed = TestBed("tcn")
    proc: Any = None
    holders: list[Any] = []
    try:
        path = str(bed.workdir / "netd.sock")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VIPERNET_SOCKET": path}
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env)
        wait_for(lambda: _accepting(path) or proc.poll() is not None, what="netd socket",
                 timeout=30)
        srv = bed.start([sys.executable, "-c", ACCEPTOR, "10.0.2.2", "hold"],
                        stdout=subprocess.PIPE)
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        pid = proc.pid  # `ip netns exec` execs netd in place
        base = rss_mb(pid)
        for _ in range(max(1, n_idle // PER_CLIENT)):
            h = subprocess.Popen([sys.executable, "-c", HOLDER, str(PER_CLIENT), str(port)],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            holders.append(h)
            assert h.stdout is not None and h.stdout.readline().strip() == b"ready"
        loaded = rss_mb(pid)
        for h in holders:
            h.stdin.write(b"x")
            h.stdin.close()
        for h in holders:
            h.stdout.readline()
        time.sleep(1)
        cycled = rss_mb(pid)
        stop_process(srv)
        return base, loaded, cycled, float(len(holders) * PER_CLIENT)
    finally:
        for h in holders:
            with contextlib.suppress(Exception):
                h.kill()
                h.wait(timeout=5)
        if proc is not None:
            stop_process(proc)
        bed.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=10000, help="idle connections to hold")
    ap.add_argument("--cycles", type=int, default=5000, help="connections per rate test")
    ap.add_argument("--skip-netd", action="store_true")
    args = ap.parse_args()
    ref_accept, _ = kernel_reference(args.cycles)
    print(f"TCP connections ({args.cycles} per rate test, {args.conns} idle)")
    print(f"  reference  Linux kernel over veth: connect+accept+close   {ref_accept:8.0f} /s")
    acc, cyc, idle_mb, est = in_process(args.cycles, args.cycles, args.conns)
    print(f"  in-process accepted connections (kernel connects)         {acc:8.0f} /s")
    print(f"  in-process open/close cycles (vipernet connects, 50 at once) {cyc:6.0f} /s")
    print(f"  in-process {int(est)} idle established connections: +{idle_mb:.1f} MB RSS "
          f"({idle_mb * 1024 * 1024 / max(est, 1):.0f} B each)")
    if not args.skip_netd:
        try:
            base, loaded, cycled, n = netd_idle(args.conns)
            print(f"  netd       RSS {base:.1f} MB at start, {loaded:.1f} MB with {n:.0f} "
                  f"idle connections (+{loaded - base:.1f} MB)")
            print(f"  netd       RSS {cycled:.1f} MB after closing them and {n:.0f} more "
                  f"open/close cycles")
        except Exception as exc:  # netd is another package: report, do not hide the rest
            print(f"  netd       unavailable: {exc!r}")


if __name__ == "__main__":
    main()
