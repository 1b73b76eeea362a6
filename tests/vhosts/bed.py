"""The test bed for virtual hosts: room for 1,000+ neighbours and a kernel server.

The kernel's ARP table limits (``net.ipv4.neigh.default.gc_thresh1/2/3``) are global, not
per namespace (a non-initial namespace has no ``neigh/default`` directory at all): they
are raised in the initial namespace for the test and put back afterwards, so 1,000 hosts
are neither garbage-collected nor refused ("neighbour table overflow") mid-test.  The
namespace routes 10.0.0.0/16 onto the TAP, so hosts from 10.0.2.100/16 are on-link.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.testbed import GATEWAY, TestBed

NEIGH = "/proc/sys/net/ipv4/neigh/default"
ROOMY = {"gc_thresh1": 4096, "gc_thresh2": 8192, "gc_thresh3": 16384}
SERVER = Path(__file__).with_name("kernel_server.py")
HOSTS_NET = "10.0.0.0/16"


@contextmanager
def roomy_neighbour_table() -> Iterator[None]:
    """Raise the kernel's ARP table limits (never lower them); restore what we changed."""
    changed: dict[str, int] = {}
    try:
        for name, value in ROOMY.items():
            path = Path(NEIGH, name)
            old = int(path.read_text())
            if old < value:
                path.write_text(str(value))
                changed[name] = old
        yield
    finally:
        for name, old in changed.items():
            path = Path(NEIGH, name)
            if int(path.read_text()) == ROOMY[name]:  # nobody else moved it meanwhile
                path.write_text(str(old))


def start_kernel_server(bed: TestBed) -> tuple[int, Path]:
    """The kernel server on 10.0.2.2 in the namespace: (its port, its peers file)."""
    peers = bed.workdir / "peers.txt"
    proc = bed.start([sys.executable, str(SERVER), GATEWAY, str(peers)],
                     stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return port, peers


def route_hosts(bed: TestBed) -> None:
    bed.ns(["ip", "route", "add", HOSTS_NET, "dev", bed.tap])


def kernel_neighbours(bed: TestBed) -> set[str]:
    out = bed.ns(["ip", "-4", "neigh", "show", "dev", bed.tap]).stdout
    return {line.split()[0] for line in out.splitlines()
            if line.strip() and "FAILED" not in line and "INCOMPLETE" not in line}
