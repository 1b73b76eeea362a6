"""The issue's exact command: ``vipernet run -- python -c "...urlopen('http://10.0.2.2/')..."``.

Port 80 on the host's loopback needs root and may be taken, so the "host" is a namespace
the test makes: its loopback serves port 80, and netd (user link) runs inside it with a
capture that must show the program's SYN leaving from the stack's 10.0.2.15.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.run.test_run import syns_in
from tests.slirp.nsrig import Namespace
from tests.testbed import wait_for

pytestmark = pytest.mark.testbed
ISSUE_PROGRAM = "import urllib.request; print(urllib.request.urlopen('http://10.0.2.2/').status)"


def test_the_issue_s_urllib_one_liner_prints_200_through_netd() -> None:
    with Namespace("run80") as ns:
        (ns.workdir / "index.html").write_text("hello\n")
        ns.start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                  str(ns.workdir), "80"])
        sock = str(ns.workdir / "netd.sock")
        pcap = ns.workdir / "netd.pcap"
        proc = ns.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--socket", sock,
                         "--pcap", str(pcap)], env=ns.env())
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=30,
                 what="netd's socket")
        assert proc.poll() is None
        wait_for(lambda: ns.run(["ss", "-Hltn", "sport = :80"]).stdout.strip() != "",
                 what="the web server on port 80")
        result = ns.vipernet("run", "--socket", sock, "--", sys.executable, "-c", ISSUE_PROGRAM)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "200\n"
        wait_for(lambda: bool(syns_in(pcap, "10.0.2.2", 80)), timeout=10,
                 what="the SYN in netd's capture")
        assert set(syns_in(pcap, "10.0.2.2", 80)) == {"10.0.2.15"}
