"""`vipernet demo` (what `make run` runs) completes end to end and cleans up after itself."""

import subprocess
import sys

import pytest

from tests.testbed import require_binary, require_root


@pytest.mark.testbed
def test_demo_runs_every_step_against_real_servers_and_leaves_nothing_behind() -> None:
    require_root()
    for peer in ("dnsmasq", "openssl", "ip"):
        require_binary(peer)
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    proc = subprocess.run([sys.executable, "-m", "vipernet.cli.main", "demo"],
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "6 passed, 0 failed" in out
    assert "Hello from 10.0.2.2" in out
    assert " 0% packet loss" in out
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    demo_namespaces = [line for line in after.splitlines()
                       if line.startswith("vipernet-demo-") and line not in before]
    assert demo_namespaces == []
