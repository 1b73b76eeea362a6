"""Where the user link sends the guest's connections, in a namespace the test makes.

The namespace's own non-loopback address (192.0.2.10 on a veth, and 2001:db8::10 for
IPv6) stands for "any other destination": without ``--restrict`` the gateway connects
to it as itself (over a host AF_INET6 socket for the IPv6 one), with ``--restrict`` the
guest is refused and no host socket is opened.  netd is started with no ``--link`` (the
default, user) and the issue's ``--restrict`` flag.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.slirp.nsrig import Namespace
from tests.testbed import wait_for

pytestmark = pytest.mark.testbed
ELSEWHERE = "192.0.2.10"  # nsrig's veth address: not the gateway, not loopback
ELSEWHERE6 = "2001:db8::10"  # added to the same veth by the IPv6 case


# A host-side server on the namespace's veth address that sends its file to each client
# (http.server would spend seconds on a reverse lookup of that address).
SERVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.create_server((sys.argv[1], 0), family=family)
print(srv.getsockname()[1], flush=True)
blob = open(sys.argv[2], "rb").read()
while True:
    conn, _ = srv.accept()
    with conn:
        conn.sendall(blob)
"""
# The guest: a vipernet.socket client through netd, printing the sha256 of what it got.
# For an IPv6 destination it first waits for netd's SLAAC address (from the gateway's RA).
CLIENT = """
import hashlib, sys, time
from vipernet import socket as vs
from vipernet.netclient.client import connect
if ":" in sys.argv[1]:
    with connect() as client:
        deadline = time.monotonic() + 30
        while not any(a["address"].startswith("fec0:") and a["state"] == "preferred"
                      for a in client.info()["ipv6"]["addresses"]):
            assert time.monotonic() < deadline, "no SLAAC address"
            time.sleep(0.1)
try:
    c = vs.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
except ConnectionRefusedError:
    print("refused")
    sys.exit(0)
h = hashlib.sha256()
while data := c.recv(1 << 20):
    h.update(data)
print(h.hexdigest())
"""


@pytest.mark.parametrize("elsewhere", [ELSEWHERE, ELSEWHERE6])
@pytest.mark.parametrize("restrict", [False, True])
def test_other_destinations_are_reached_as_themselves_unless_restricted(
        restrict: bool, elsewhere: str) -> None:
    with Namespace("udst") as ns:
        if ":" in elsewhere:
            ns.run(["ip", "-6", "addr", "add", f"{elsewhere}/64", "dev", "uv0", "nodad"])
        blob = os.urandom(1024 * 1024)
        (ns.workdir / "blob").write_bytes(blob)
        server = ns.start([sys.executable, "-c", SERVER, elsewhere, str(ns.workdir / "blob")],
                          stdout=subprocess.PIPE)
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        sock = str(ns.workdir / "netd.sock")
        flags = ["--restrict"] if restrict else []
        proc = ns.start([sys.executable, "-m", "vipernet.cli.main", "netd", *flags,
                         "--socket", sock], env=ns.env())
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=30,
                 what="netd's socket")
        assert proc.poll() is None
        got = ns.run([sys.executable, "-c", CLIENT, elsewhere, port],
                     env=ns.env(VIPERNET_SOCKET=sock), timeout=120)
        counters = ns.vipernet("info", "--json", "--socket", sock)
        assert counters.returncode == 0, counters.stderr
        device = json.loads(counters.stdout)["device_counters"]
        if restrict:
            assert got.stdout.strip() == "refused"
            assert device.get("tcp.refused", 0) >= 1 and device.get("tcp.flows", 0) == 0
        else:
            assert got.stdout.strip() == hashlib.sha256(blob).hexdigest()
            assert device.get("tcp.flows", 0) >= 1 and device.get("tcp.refused", 0) == 0
