"""`vipernet demo` (what `make run` runs) completes end to end and cleans up after itself."""

import subprocess
import sys

import pytest

from tests.testbed import require_binary, require_root


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()}


@pytest.mark.testbed
@pytest.mark.parametrize("link", ["user", "tap"])
def test_demo_runs_every_step_against_real_servers_and_leaves_nothing_behind(link: str) -> None:
    if link == "tap":
        require_root()
    for peer in ("dnsmasq", "openssl", "ip"):
        require_binary(peer)
    proc = subprocess.Popen([sys.executable, "-m", "vipernet.cli.main", "demo", "--link", link],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "6 passed, 0 failed" in out
    assert out.count("Hello from 10.0.2.2") == 2  # over HTTP and over HTTPS
    assert " 0% packet loss" in out
    assert f"--link {link}" in out
    assert f"vipernet-demo-{proc.pid}" not in _namespaces()  # this run's, if it made one
