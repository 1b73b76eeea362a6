"""Smoke run of ``benchmarks/tcp_loss.py --quick``: the loss table prints both rows, each way,
for vipernet and the kernel pair (nftables loss, fault-injector delay, the relay), and
leaves no namespace behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import require_binary, require_root

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_tcp_loss_quick_prints_every_row_each_way() -> None:
    require_root()
    require_binary("nft")
    require_binary("ethtool")
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "tcp_loss.py"),
                             "--quick"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=110)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    rows = [line for line in out.splitlines() if "loss" in line and "MB" not in line
            and line.startswith("  ") and not line.startswith("  (")]
    assert len(rows) == 2, out
    for row in rows:
        figures = [float(x) for x in row.split()[-6:]]
        assert all(f > 0 for f in figures), row  # MB/s each way and both ratios
    # its namespaces (named after its pid; other test runs may share the machine) are gone
    assert {n for n in _namespaces() if f"-{proc.pid}-" in n} == set()
