"""netd ends promptly on SIGTERM, also after the namespace it serves was deleted under it
and with clients still connected (issue: 2-4 s seen once; a clean stop must be well under
a second): the socket file is removed and the exit status is 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, TestBed, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed


@pytest.mark.parametrize("namespace_deleted", [False, True], ids=["ns-kept", "ns-deleted"])
def test_sigterm_stops_netd_in_well_under_a_second(namespace_deleted: bool) -> None:
    bed = TestBed("sht")
    try:
        path = str(bed.workdir / "netd.sock")
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path],
                         env=cli_env(VIPERNET_SOCKET=path))
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None
        # Three clients, each with a UDP socket that has sent: state netd must drop.
        clients = [netclient.connect(path) for _ in range(3)]
        socks = [vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM, client=c)
                 for c in clients]
        for sock in socks:
            sock.sendto(b"x", (GATEWAY, 9))
        if namespace_deleted:
            subprocess.run(["ip", "netns", "del", bed.name], check=True)
        started = time.monotonic()
        os.killpg(netd.pid, signal.SIGTERM)
        status = netd.wait(timeout=10)
        elapsed = time.monotonic() - started
        assert status == 0
        assert elapsed < 1.0, f"netd took {elapsed:.2f} s to stop"
        assert not os.path.exists(path)  # its socket file is gone
        for client in clients:
            client.close_channel()
    finally:
        bed.close()
