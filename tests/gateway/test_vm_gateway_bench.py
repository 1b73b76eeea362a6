"""benchmarks/vm_gateway.py still runs: a smoke run of two VM rows and one namespace row.

``--quick`` moves 2 MB each way once; the benchmark checks every transfer itself (bytes and
sha256) and exits 1 when any run failed, so status 0 and a full table are the proof.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import require_binary, require_root
from tests.vm.guest import require_guest

pytestmark = pytest.mark.testbed

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "vm_gateway.py"


def test_the_quick_benchmark_prints_both_tables_and_the_targets() -> None:
    require_root()
    require_guest()
    for name in ("curl", "busybox", "setpriv", "runuser"):
        require_binary(name)
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--only", "stream1500,libslirp,netns1500"],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for row in ("stream1500", "libslirp", "netns1500"):
        [table_row] = [line for line in lines if line.split()[:1] == [row]]
        figures = table_row.split()[1:]
        assert len(figures) == 8, table_row  # four columns, each a median and its runs
        assert figures[0] != "-" and figures[2] != "-", table_row  # both throughputs
    verdicts = [line for line in lines if "stream1500/libslirp" in line]
    assert len(verdicts) == 4 and all(line.endswith(("PASS", "MISS")) for line in verdicts)
    assert "load average" in lines[0] and "load average" in lines[-1]
