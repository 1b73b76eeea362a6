"""TCP throughput under loss, delay and reordering: vipernet against the Linux kernel, each
way, with the kernel-to-kernel pair over the same impairment measured in the same run.

Needs root (namespaces, TAP, veth, nftables).  Usage::

    python benchmarks/tcp_loss.py [--seconds 8] [--quick] [--cases 2,3] [--skip-kernel]

How the impairment is applied (what works on this kernel; say so when it changes):

* **Random loss** is nftables in the ``netdev`` family on the *kernel side*:
  ``meta l4proto tcp numgen random mod 100000 < N drop`` on both the ingress and the egress
  hook (egress hooks need Linux >= 5.16; they are there) of the TAP that vipernet sits
  behind, and of the *receiving* veth for the kernel pair.  Both ways: data and ACKs.
* **Per segment, not per burst.**  A netdev hook sees an skb before GSO cuts it, so a
  64 KiB TSO burst would be one coin toss for ~45 segments.  GSO/TSO/GRO are therefore
  switched off (``ethtool -K``) on the kernel's devices, and vipernet's TAP is wrapped in
  the fault injector (``vipernet.link.faults``), which takes TSO away from the stack, so
  every coin is tossed for one MSS-sized segment on both test beds.
* **Delay and reordering** cannot come from the kernel here: this kernel has no
  ``sch_netem`` (``tc qdisc add ... netem`` answers "Specified qdisc kind is unknown").
  They come from the fault injector instead: on vipernet's TAP (in the stack's process),
  and for the kernel pair from a relay that joins two TAPs (one per namespace) through a
  fault injector each way (``RELAY`` below).  Loss in those rows is still nftables on the
  receiving side's device.  The relay is a Python process, so it caps the kernel pair near
  its own forwarding rate; the column ``relay cap`` gives that rate without impairment so a
  capped figure can be told from a real one.

**The kernel's congestion control** is the machine's default unless ``--kernel-cc`` names
another (set per namespace with sysctl, on both test beds).  The header prints which: on
this machine the default is BBR, which by design does not back off for random loss, so
against it a loss-based sender (ours: NewReno or CUBIC) cannot keep up at any loss rate;
``--kernel-cc cubic`` compares like with like.

Each cell runs a bulk transfer for ``--seconds`` (the sender stops at the deadline and
half-closes); the receiver's byte count over its elapsed time is the figure.  The table gives
MB/s each way for vipernet, for the kernel pair and their ratio, plus the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks.tcp_bulk import SINK  # noqa: E402 - kernel side: count to EOF
from tests.testbed import TestBed, require_binary  # noqa: E402

# Kernel-side sender: connect, send until the deadline, half-close, wait for the close.
TIMED_SENDER = r"""
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
buf = memoryview(b"\x5a" * (1 << 18))
s = socket.create_connection((host, port), timeout=120)
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

# The kernel pair's delay/reorder path: two TAPs, one per namespace, joined frame by frame
# through a fault injector each way (TX side of each), on a virtual-time-free real clock.
RELAY = r"""
import json, random, select, sys, time
from vipernet.link.faults import Direction, FaultConfig, FaultInjector
from vipernet.link.tap import TapDevice
a_name, a_ns, b_name, b_ns, cfg_json = sys.argv[1:6]
cfg = FaultConfig(direction=Direction.TX, **json.loads(cfg_json))
a = FaultInjector(TapDevice.open(a_name, netns=a_ns), cfg, random.Random(1))
b = FaultInjector(TapDevice.open(b_name, netns=b_ns), cfg, random.Random(2))
print("ready", flush=True)
fds = [a.fileno(), b.fileno()]
while True:
    now = time.monotonic()
    for f in a.receive(now):
        b.send(f, now)
    for f in b.receive(now):
        a.send(f, now)
    due = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
    wait = max(0.0, min(due) - time.monotonic()) if due else 0.05
    select.select(fds, [], [], min(wait, 0.05))
"""


@dataclass(frozen=True)
class Case:
    name: str
    loss: float  # probability per TCP segment, each way (nftables)
    delay: float = 0.0  # seconds each way (fault injector)
    reorder: float = 0.0  # probability a frame is held back (fault injector)

    @property
    def needs_injector(self) -> bool:
        return self.delay > 0 or self.reorder > 0

    def injector_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        if self.delay:
            cfg["delay"] = (self.delay, self.delay)
        if self.reorder:
            cfg["reorder"] = self.reorder
            cfg["reorder_hold"] = 0.003
        return cfg


CASES = [
    Case("0.1% loss", 0.001),
    Case("1% loss", 0.01),
    Case("3% loss", 0.03),
    Case("5% loss", 0.05),
    Case("2% loss + 2% reorder (3 ms)", 0.02, reorder=0.02),
    Case("25 ms each way + 1% loss", 0.01, delay=0.025),
]
QUICK = [CASES[1], CASES[5]]
VERBOSE = False
KERNEL_CC: str | None = None


ALLOWED_CC = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")


@contextlib.contextmanager
def cc_allowed_in_namespaces(name: str | None) -> Iterator[None]:
    """A namespace may only pick a congestion control the root namespace allows
    (``tcp_allowed_congestion_control``, "reno bbr" on these machines): allow ``name``
    for the run, then put the list back."""
    before = ALLOWED_CC.read_text().strip()
    if not name or name in before.split():
        yield
        return
    ALLOWED_CC.write_text(f"{before} {name}\n")
    try:
        yield
    finally:
        ALLOWED_CC.write_text(before + "\n")


def kernel_cc(ns: str) -> None:
    """Give namespace ``ns`` the kernel congestion control asked for (if any)."""
    if KERNEL_CC:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv4.tcp_congestion_control={KERNEL_CC}"], check=True,
                       capture_output=True)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / max(seconds, 1e-9) / 1e6


# -- the impairment on the kernel side -------------------------------------------------------

def nft_loss(ns: str, dev: str, loss: float) -> None:
    """Drop ``loss`` of the TCP segments crossing ``dev`` (namespace ``ns``), both ways."""
    subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "netdev", "loss"],
                   check=False, capture_output=True)
    if loss <= 0:
        return
    n = round(loss * 100000)
    rule = f"meta l4proto tcp numgen random mod 100000 < {n} drop"
    ruleset = (f'table netdev loss {{\n'
               f'  chain rx {{ type filter hook ingress device "{dev}" priority 0; {rule}; }}\n'
               f'  chain tx {{ type filter hook egress device "{dev}" priority 0; {rule}; }}\n'
               f'}}\n')
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset.encode(),
                   check=True, capture_output=True)


def no_offloads(ns: str, dev: str) -> None:
    """One skb per segment, so a netdev rule tosses its coin per segment (see the docstring)."""
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                    "gro", "off"], check=False, capture_output=True)


# -- vipernet on its TAP ----------------------------------------------------------------------

def vipernet_case(case: Case, seconds: float) -> tuple[float, float]:
    """(kernel -> vipernet, vipernet -> kernel) MB/s through ``case``."""
    from tests.tcp.kernel_rig import close_rig, open_rig

    from vipernet.link.faults import FaultConfig

    # Always through the injector: with no faults it only takes TSO away (per-segment loss).
    rig = open_rig("tl", faults=FaultConfig(**case.injector_config()), seed=3)
    try:
        kernel_cc(rig.bed.name)
        no_offloads(rig.bed.name, rig.bed.tap)
        nft_loss(rig.bed.name, rig.bed.tap, case.loss)
        lst = rig.call(lambda: rig.stack.tcp_socket(rig.family))
        rig.call(lambda: lst.bind(("", 5001)))
        rig.call(lambda: lst.listen(8))
        proc = rig.bed.start([sys.executable, "-c", TIMED_SENDER, rig.stack_host, "5001",
                              str(seconds)])
        sock = rig.accept(lst)
        t0 = time.perf_counter()
        total = rig.recv_all(sock, lambda _chunk: None, timeout=120)
        down = mbps(total, time.perf_counter() - t0)
        rig.close(sock)
        rig.close(lst)
        proc.wait(timeout=60)
        sink = rig.bed.start([sys.executable, "-c", SINK, rig.kernel_host],
                             stdout=subprocess.PIPE)
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        sock = rig.connect(rig.kernel_host, port)
        buf = memoryview(b"\xa5" * (1 << 20))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rig.sendall(sock, buf)
        rig.shutdown_write(sock)
        total_s, elapsed_s = sink.stdout.readline().decode().split()
        up = mbps(int(total_s), float(elapsed_s))
        rig.close(sock)
        if VERBOSE:
            c = rig.stack.tcp.counters
            print("    vipernet tcp counters: " + ", ".join(
                f"{k[4:]}={v}" for k, v in sorted(c.items())
                if any(w in k for w in ("rto", "recovery", "retransmit", "probe", "undo",
                                        "spurious", "reorder"))), flush=True)
        return down, up
    finally:
        close_rig(rig)


# -- the kernel pair ---------------------------------------------------------------------------

@contextlib.contextmanager
def kernel_pair(case: Case) -> Iterator[tuple[TestBed, str, str]]:
    """Two namespaces joined by a veth pair (loss only) or by two TAPs and the relay (delay,
    reordering).  Yields (bed, the other namespace, the device of the other namespace); the
    bed's namespace is 10.9.0.1, the other 10.9.0.2."""
    bed = TestBed("tlk")
    other = f"{bed.name}-b"
    relay: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "netns", "add", other], check=True)

        def there(*argv: str) -> None:
            subprocess.run(["ip", "netns", "exec", other, *argv], check=True,
                           capture_output=True)
        there("ip", "link", "set", "lo", "up")
        kernel_cc(bed.name)
        kernel_cc(other)
        if case.needs_injector:
            here_dev, there_dev = "ka0", "kb0"
            bed.ns(["ip", "tuntap", "add", "dev", here_dev, "mode", "tap"])
            there("ip", "tuntap", "add", "dev", there_dev, "mode", "tap")
        else:
            here_dev, there_dev = "va0", "vb0"
            bed.ns(["ip", "link", "add", here_dev, "type", "veth", "peer", "name", there_dev,
                    "netns", other])
        bed.ns(["ip", "addr", "add", "10.9.0.1/24", "dev", here_dev])
        bed.ns(["ip", "link", "set", here_dev, "up"])
        there("ip", "addr", "add", "10.9.0.2/24", "dev", there_dev)
        there("ip", "link", "set", there_dev, "up")
        if case.needs_injector:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            relay = subprocess.Popen(
                [sys.executable, "-c", RELAY, here_dev, bed.name, there_dev, other,
                 json.dumps(case.injector_config())], stdout=subprocess.PIPE, env=env,
                start_new_session=True)
            assert relay.stdout is not None
            if relay.stdout.readline().strip() != b"ready":
                raise RuntimeError("relay did not start")
        no_offloads(bed.name, here_dev)
        no_offloads(other, there_dev)
        yield bed, other, there_dev
    finally:
        if relay is not None:
            relay.kill()
            relay.wait()
        subprocess.run(["ip", "netns", "del", other], check=False)
        bed.close()


def kernel_one_way(bed: TestBed, other: str, seconds: float, *, into_bed: bool) -> float:
    """A timed transfer between the two namespaces; ``into_bed``: the bed's side receives."""
    sink_host = "10.9.0.1" if into_bed else "10.9.0.2"
    sink_argv = [sys.executable, "-c", SINK, sink_host]
    if into_bed:
        sink = bed.start(sink_argv, stdout=subprocess.PIPE)
    else:
        sink = bed.start(["ip", "netns", "exec", other, *sink_argv], inside=False,
                         stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = sink.stdout.readline().decode().strip()
    sender = [sys.executable, "-c", TIMED_SENDER, sink_host, port, str(seconds)]
    if into_bed:
        subprocess.run(["ip", "netns", "exec", other, *sender], check=True,
                       capture_output=True, timeout=seconds + 120)
    else:
        bed.ns(sender, timeout=seconds + 120)
    total, elapsed = sink.stdout.readline().decode().split()
    return mbps(int(total), float(elapsed))


def kernel_case(case: Case, seconds: float) -> tuple[float, float]:
    """(to the bed side, from it) MB/s; the loss rules sit on the receiving side's device."""
    with kernel_pair(case) as (bed, other, there_dev):
        nft_loss(bed.name, "ka0" if case.needs_injector else "va0", case.loss)
        into = kernel_one_way(bed, other, seconds, into_bed=True)
        nft_loss(bed.name, "ka0" if case.needs_injector else "va0", 0)
        nft_loss(other, there_dev, case.loss)
        out = kernel_one_way(bed, other, seconds, into_bed=False)
        return into, out


def relay_cap(seconds: float) -> float:
    """The relay's own ceiling: the kernel pair through it with no impairment."""
    with kernel_pair(Case("relay", 0.0, reorder=1e-9)) as (bed, other, _dev):
        return kernel_one_way(bed, other, seconds, into_bed=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each transfer")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: two rows, 1.5 s transfers")
    ap.add_argument("--cases", help="comma-separated row numbers (0-based) to run")
    ap.add_argument("--skip-kernel", action="store_true",
                    help="vipernet only (while tuning; the table then has no reference)")
    ap.add_argument("--verbose", action="store_true", help="print vipernet's loss counters")
    ap.add_argument("--kernel-cc", help="the kernel's congestion control (default: the "
                    "machine's, see the docstring)")
    args = ap.parse_args()
    global VERBOSE, KERNEL_CC
    VERBOSE = args.verbose
    KERNEL_CC = args.kernel_cc
    require_binary("nft")
    require_binary("ethtool")
    cases = QUICK if args.quick else CASES
    if args.cases:
        cases = [CASES[int(i)] for i in args.cases.split(",")]
    seconds = 1.5 if args.quick else args.seconds
    load0 = os.getloadavg()[0]
    default_cc = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    print(f"TCP under loss, {seconds:g} s per transfer, load average {load0:.2f}; kernel "
          f"congestion control {args.kernel_cc or default_cc}")
    with cc_allowed_in_namespaces(KERNEL_CC):
        run_cases(cases, seconds, skip_kernel=args.skip_kernel, load0=load0)


def run_cases(cases: list[Case], seconds: float, *, skip_kernel: bool, load0: float) -> None:
    """The table: every case for vipernet, then the kernel pair."""
    cap = 0.0 if skip_kernel else relay_cap(seconds)
    print(f"  relay cap (kernel pair through the Python relay, no impairment): {cap:.1f} MB/s")
    head = (f"  {'case':30} {'vn down':>8} {'kern':>8} {'ratio':>6}   "
            f"{'vn up':>8} {'kern':>8} {'ratio':>6}")
    print(head)
    rows: list[dict[str, Any]] = []
    for case in cases:
        down, up = vipernet_case(case, seconds)
        k_down, k_up = (0.0, 0.0) if skip_kernel else kernel_case(case, seconds)
        rows.append({"case": case.name, "down": down, "kernel": k_down, "up": up,
                     "kernel_up": k_up})
        print(f"  {case.name:30} {down:8.2f} {k_down:8.2f} {down / max(k_down, 1e-9):6.2f}   "
              f"{up:8.2f} {k_up:8.2f} {up / max(k_up, 1e-9):6.2f}", flush=True)
    print(f"  (down = kernel -> vipernet, up = vipernet -> kernel; MB/s; load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f})")
    print("JSON " + json.dumps(rows))


if __name__ == "__main__":
    main()
