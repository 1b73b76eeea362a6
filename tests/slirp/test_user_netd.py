"""``vipernet netd --link user`` run as nobody: 50 MB from host loopback, dig, ping the gateway;
and over IPv6, 2 MB each way between the stack and a host server on [::1] via fec0::2.

Everything runs inside a namespace the test makes (its loopback is the "host").  netd
and the clients (ping, dig, fetch) all run as ``nobody``.  nobody cannot read our sources
or a pyenv/venv Python under /root, so the test copies what the CLI imports (vipernet,
dnspython, h11) into its world-readable work directory and runs it with the first Python
nobody can execute and import that copy with: the one running the tests, else Debian's
/usr/bin/python3 (installed with ssh-audit by scripts/setup.sh).  No such Python is a
test-bed failure under CI, never a silent skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slirp.nsrig import SRC, Namespace
from tests.testbed import require_binary, unavailable, wait_for

pytestmark = pytest.mark.testbed
SYSTEM_PYTHON = "/usr/bin/python3"
def readable_libraries(dest: Path) -> str:
    """Copies of vipernet and the pure-Python packages netd imports, readable by anyone."""
    import h11

    import dns

    for where in (Path(SRC) / "vipernet", *(Path(m.__file__ or "").parent for m in (dns, h11))):
        shutil.copytree(where, dest / where.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for path in (dest, *dest.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(dest)


def python_for_nobody(runuser: str, libs: str) -> str:
    """A Python that nobody can run and that imports netd from ``libs``."""
    for candidate in dict.fromkeys((sys.executable, SYSTEM_PYTHON)):
        probe = subprocess.run([runuser, "-u", "nobody", "--", "env", f"PYTHONPATH={libs}",
                                candidate, "-c", "from vipernet.cli.main import build_parser; "
                                "import vipernet.netd.daemon, vipernet.slirp, dns.message; "
                                "build_parser()"],
                               capture_output=True, text=True, timeout=60, cwd="/")
        if probe.returncode == 0:
            return candidate
    unavailable(f"no Python that nobody can run netd with (tried {sys.executable}, "
                f"{SYSTEM_PYTHON}; apt-get install python3)")
    raise AssertionError("unreachable")


def test_netd_on_the_user_link_as_nobody_fetches_50_mb_resolves_and_pings() -> None:
    runuser = require_binary("runuser")
    dnsmasq = require_binary("dnsmasq")
    with Namespace("usr") as ns:
        nobody = pwd.getpwnam("nobody")
        run_dir = ns.workdir / "run"
        run_dir.mkdir()
        os.chown(run_dir, nobody.pw_uid, nobody.pw_gid)
        libs = ns.workdir / "libs"
        libs.mkdir()
        extra = readable_libraries(libs)
        python = python_for_nobody(runuser, extra)
        blob = os.urandom(50 * 1024 * 1024)
        (ns.workdir / "blob").write_bytes(blob)
        ns.start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                  str(ns.workdir), "8080"])
        ns.start([dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                  "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
                  "--port=5353", "--user=root", f"--pid-file={ns.workdir / 'dnsmasq.pid'}",
                  "--address=/example.test/192.0.2.77", "--local=/example.test/",
                  "--local=/#/"])
        sock = run_dir / "netd.sock"
        as_nobody = [runuser, "-u", "nobody", "--", "env", f"PYTHONPATH={extra}",
                     f"VIPERNET_SOCKET={sock}", python, "-m", "vipernet.cli.main"]
        ns.start([*as_nobody, "netd", "--link", "user:dns=127.0.0.1:5353"])
        wait_for(sock.exists, timeout=30, what="netd's socket")
        assert sock.stat().st_uid == nobody.pw_uid  # netd really runs unprivileged
        wait_for(lambda: ns.run(["ss", "-Hltn", "sport = :8080"]).stdout.strip() != "",
                 what="http.server")
        # The clients run as nobody too: the whole session needs no privilege.
        ping = ns.run([*as_nobody, "ping", "-c", "2", "-i", "0.2", "10.0.2.2"], check=False,
                      cwd=run_dir)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "2 packets transmitted, 2 received" in ping.stdout

        dig = ns.run([*as_nobody, "dig", "example.test", "+short"], check=False, cwd=run_dir)
        assert dig.returncode == 0, dig.stdout + dig.stderr
        assert dig.stdout.split() == ["192.0.2.77"]

        out = run_dir / "out"
        fetched = ns.run([*as_nobody, "fetch", "-s", "-o", str(out),
                          "http://10.0.2.2:8080/blob"], check=False, timeout=300, cwd=run_dir)
        assert fetched.returncode == 0, fetched.stderr
        assert out.stat().st_uid == nobody.pw_uid
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()


# A host server on the namespace's IPv6 loopback: reads to EOF, then answers with the
# sha256 of what it got and the file it was given.
SERVER6 = """
import hashlib, socket, sys
srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
print(srv.getsockname()[1], flush=True)
blob = open(sys.argv[1], "rb").read()
while True:
    conn, _ = srv.accept()
    with conn:
        digest = hashlib.sha256()
        while data := conn.recv(65536):
            digest.update(data)
        conn.sendall(digest.digest() + blob)
"""
# The guest: an AF_INET6 vipernet.socket through netd, once netd's stack has its SLAAC
# address; prints sha256(what it sent), the digest the host sent back, sha256(the rest).
CLIENT6 = """
import hashlib, os, sys, time
from vipernet.netclient.client import connect
import vipernet.socket as vs
path, port = sys.argv[1], int(sys.argv[2])
with connect(path) as client:
    deadline = time.monotonic() + 30
    while not any(a["address"].startswith("fec0:") and a["state"] == "preferred"
                  for a in client.info()["ipv6"]["addresses"]):
        assert time.monotonic() < deadline, client.info()["ipv6"]
        time.sleep(0.1)
    up = os.urandom(2 * 1024 * 1024)
    c = vs.socket(vs.AF_INET6, vs.SOCK_STREAM, client=client)
    c.settimeout(60)
    c.connect(("fec0::2", port))
    c.sendall(up)
    c.shutdown(vs.SHUT_WR)
    got = bytearray()
    while data := c.recv(1 << 20):
        got += data
    print(hashlib.sha256(up).hexdigest(), got[:32].hex(), hashlib.sha256(got[32:]).hexdigest())
"""


def test_netd_on_the_user_link_as_nobody_reaches_host_ipv6_loopback_through_fec0_2() -> None:
    """And its resolver, told to use fec0::3 (over the guest's IPv6), gets the host
    resolver's AAAA answer."""
    runuser = require_binary("runuser")
    dnsmasq = require_binary("dnsmasq")
    with Namespace("usr6") as ns:
        nobody = pwd.getpwnam("nobody")
        run_dir = ns.workdir / "run"
        run_dir.mkdir()
        os.chown(run_dir, nobody.pw_uid, nobody.pw_gid)
        libs = ns.workdir / "libs"
        libs.mkdir()
        extra = readable_libraries(libs)
        python = python_for_nobody(runuser, extra)
        blob = os.urandom(2 * 1024 * 1024)
        (ns.workdir / "blob").write_bytes(blob)
        server = ns.start([sys.executable, "-c", SERVER6, str(ns.workdir / "blob")],
                          stdout=subprocess.PIPE)
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), "the IPv6 loopback server did not start"
        ns.start([dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                  "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
                  "--port=5353", "--user=root", f"--pid-file={ns.workdir / 'dnsmasq.pid'}",
                  "--address=/example.test/2001:db8::77", "--local=/example.test/",
                  "--local=/#/"])
        sock = run_dir / "netd.sock"
        as_nobody = [runuser, "-u", "nobody", "--", "env", f"PYTHONPATH={extra}",
                     f"VIPERNET_SOCKET={sock}", python]
        ns.start([*as_nobody, "-m", "vipernet.cli.main", "netd", "--link",
                  "user:dns=127.0.0.1:5353", "--dns", "fec0::3"])
        wait_for(sock.exists, timeout=30, what="netd's socket")
        assert sock.stat().st_uid == nobody.pw_uid  # netd really runs unprivileged
        result = ns.run([*as_nobody, "-c", CLIENT6, str(sock), port], check=False,
                        timeout=180, cwd=run_dir)
        assert result.returncode == 0, result.stdout + result.stderr
        sent, echoed, rest = result.stdout.split()
        assert echoed == sent  # the host got every byte the guest sent
        assert rest == hashlib.sha256(blob).hexdigest()  # and the guest every byte back
        dig = ns.run([*as_nobody, "-m", "vipernet.cli.main", "dig", "-t", "AAAA",
                      "example.test", "+short"], check=False, cwd=run_dir)
        assert dig.returncode == 0, dig.stdout + dig.stderr
        assert dig.stdout.split() == ["2001:db8::77"]  # the host's dnsmasq, via fec0::3
        report = ns.run([*as_nobody, "-m", "vipernet.cli.main", "info", "--json"],
                        check=False, cwd=run_dir)
        assert report.returncode == 0, report.stderr
        info = json.loads(report.stdout)
        assert info["ipv6"]["dns"] == ["fec0::3"]
        assert info["device_counters"].get("tcp.flows", 0) >= 1
