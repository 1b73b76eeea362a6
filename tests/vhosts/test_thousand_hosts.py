"""1,000 virtual hosts on one TAP each complete a TCP connection and an HTTP request to
the kernel's own TCP in the test bed's namespace (``vipernet load``, a child process).

Checked on both sides: the tool's summary (1,000 completed, none failed, 1,000 distinct
hosts) and the kernel server's own list of peers (1,000 distinct source IPs, exactly the
range); the kernel's neighbour table holds an entry for every host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, TestBed, wait_for
from tests.vhosts.bed import (
    kernel_neighbours,
    roomy_neighbour_table,
    route_hosts,
    start_kernel_server,
)

pytestmark = pytest.mark.testbed

HOSTS = 1000
# Not 10.0.2.100: the range would cross 10.0.2.255, the broadcast address of the kernel's
# own 10.0.2.2/24, and the kernel drops a SYN from a broadcast source as a martian.
FIRST = IPv4Address("10.0.3.1")


@pytest.fixture
def bed() -> Iterator[TestBed]:
    with roomy_neighbour_table(), TestBed("vh") as bed:
        route_hosts(bed)
        yield bed


def test_thousand_hosts_each_complete_a_connection_and_a_request(bed: TestBed) -> None:
    port, peers_file = start_kernel_server(bed)
    # --linger keeps the hosts on the TAP after the summary (closing it would flush the
    # kernel's neighbours): the kernel's view of them is checked while they are up.
    tool = bed.start([
        sys.executable, "-m", "vipernet.cli.main", "load",
        "--link", f"tap:{bed.tap}@{bed.name}", "--hosts", f"{HOSTS}@{FIRST}/16",
        "--connections", "1", "--target", f"{GATEWAY}:{port}", "--pattern", "http-get",
        "--json", "--linger", "30"], inside=False, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert tool.stdout is not None and tool.stderr is not None
    line = tool.stdout.readline()  # the summary, once every connection ended
    assert line, tool.stderr.read().decode()[-3000:]
    summary = json.loads(line)
    assert summary["completed"] == HOSTS and summary["failed"] == 0, summary
    assert summary["hosts_completed"] == HOSTS
    assert summary["response_bytes"] >= HOSTS * 2
    assert summary["connections_per_s"] > 0 and summary["request_ms"]["p50"] is not None

    expected = {str(FIRST + i) for i in range(HOSTS)}
    wait_for(lambda: len(set(peers_file.read_text().split())) >= HOSTS, timeout=10,
             what="the server to log every peer")
    assert set(peers_file.read_text().split()) == expected
    assert expected <= kernel_neighbours(bed)
    # Each host answers for itself: a ping to the first, a middle and the last one.
    for ip in (FIRST, FIRST + HOSTS // 2, FIRST + HOSTS - 1):
        ping = bed.ns(["ping", "-n", "-c", "1", "-W", "2", str(ip)], check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout
    tool.terminate()  # the summary is out; the rest of the linger is not needed
    tool.wait(timeout=10)
    assert "conn/s" in tool.stderr.read().decode()  # the progress line
