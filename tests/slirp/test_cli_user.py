"""``vipernet netd --link user --ip dhcp`` from the command line (no root, loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.slirp.nsrig import SRC
from tests.testbed import stop_process, wait_for


def test_netd_on_the_user_link_takes_its_address_from_the_gateway_s_dhcp(
        tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    sock = str(tmp_path / "netd.sock")
    cli = [sys.executable, "-m", "vipernet.cli.main"]
    proc = subprocess.Popen([*cli, "netd", "--link", "user", "--ip", "dhcp", "--socket", sock],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=30,
                 what="netd's socket")
        assert proc.poll() is None
        info = subprocess.run([*cli, "info", "--json", "--socket", sock], env=env,
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stderr
        report = json.loads(info.stdout)
        assert report["ip"] == "10.0.2.15" and report["gateway"] == "10.0.2.2"
        assert report["device_counters"]["dhcp.offer"] == 1
        assert report["device_counters"]["dhcp.ack"] == 1
        ping = subprocess.run([*cli, "ping", "-c", "1", "10.0.2.2", "--socket", sock], env=env,
                              capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def test_a_forwarded_host_port_reaches_a_listener_served_by_netd(tmp_path: Path) -> None:
    from vipernet.netclient import client as netclient
    from vipernet.netclient.sockets import socket as vsocket

    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    sock = str(tmp_path / "netd.sock")
    host_port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                             f"user:forward=tcp:{host_port}:8080", "--socket", sock],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=30,
                 what="netd's socket")
        assert proc.poll() is None
        with netclient.connect(sock) as nc:
            listener = vsocket(client=nc)
            listener.bind(("0.0.0.0", 8080))
            listener.listen(4)
            listener.settimeout(20)
            with socket.create_connection(("127.0.0.1", host_port), timeout=20) as outside:
                conn, peer = listener.accept()
                assert peer[0] == "10.0.2.2"
                outside.sendall(b"hello guest")
                conn.settimeout(20)
                got = b""
                while len(got) < 11:
                    got += conn.recv(64)
                assert got == b"hello guest"
                conn.sendall(b"hello host")
                answer = b""
                while len(answer) < 10:
                    answer += outside.recv(64)
                assert answer == b"hello host"
                conn.close()
            listener.close()
    finally:
        stop_process(proc)
