"""``vipernet netd --link user`` run as nobody: 50 MB from host loopback, dig, ping the gateway.

Everything runs inside a namespace the test makes (its loopback is the "host"); netd runs
as ``nobody`` with the system Python, which gets a readable copy of dnspython.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import sys
from pathlib import Path

import pytest

from tests.slirp.nsrig import SRC, Namespace
from tests.testbed import require_binary, wait_for

pytestmark = pytest.mark.testbed
SYSTEM_PYTHON = "/usr/bin/python3"
# `vipernet netd` without the other subcommands, whose imports (h11, cryptography, ...) the
# system Python may lack: the daemon itself needs only the stdlib and dnspython.
NETD_ONLY = ("import argparse, sys; from vipernet.cli import cmd_netd; "
             "p = argparse.ArgumentParser(prog='vipernet'); cmd_netd.register(p.add_subparsers()); "
             "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


def readable_libraries(dest: Path) -> str:
    """Copies of the pure-Python packages the CLI imports (ours live under /root)."""
    import h11

    import dns

    for module in (dns, h11):
        where = Path(module.__file__ or "").parent
        shutil.copytree(where, dest / where.name)
    return str(dest)


def test_netd_on_the_user_link_as_nobody_fetches_50_mb_resolves_and_pings() -> None:
    runuser = require_binary("runuser")
    dnsmasq = require_binary("dnsmasq")
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no system python for the unprivileged netd")
    with Namespace("usr") as ns:
        nobody = pwd.getpwnam("nobody")
        run_dir = ns.workdir / "run"
        run_dir.mkdir()
        os.chown(run_dir, nobody.pw_uid, nobody.pw_gid)
        libs = ns.workdir / "libs"
        libs.mkdir()
        extra = readable_libraries(libs)
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
        ns.start([runuser, "-u", "nobody", "--", "env", f"PYTHONPATH={SRC}:{extra}",
                  SYSTEM_PYTHON, "-c", NETD_ONLY, "netd",
                  "--link", "user:dns=127.0.0.1:5353", "--socket", str(sock)])
        wait_for(sock.exists, timeout=30, what="netd's socket")
        assert sock.stat().st_uid == nobody.pw_uid  # netd really runs unprivileged
        wait_for(lambda: ns.run(["ss", "-Hltn", "sport = :8080"]).stdout.strip() != "",
                 what="http.server")
        env = ns.env(VIPERNET_SOCKET=str(sock))

        ping = ns.vipernet("ping", "-c", "2", "-i", "0.2", "10.0.2.2", "--socket", str(sock))
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "10.0.2.2" in ping.stdout

        dig = ns.vipernet("dig", "example.test", "+short", "--socket", str(sock))
        assert dig.returncode == 0, dig.stdout + dig.stderr
        assert "192.0.2.77" in dig.stdout

        out = ns.workdir / "out"
        fetched = ns.vipernet("fetch", "-s", "-o", str(out), "http://10.0.2.2:8080/blob",
                              env=env, timeout=300)
        assert fetched.returncode == 0, fetched.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
