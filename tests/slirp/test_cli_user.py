"""``vipernet netd --link user --ip dhcp`` from the command line (no root, loopback only)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.slirp.netd_proc import cli, info, start_netd, start_netd_on_a_free_port
from tests.testbed import stop_process


def test_netd_on_the_user_link_takes_its_address_from_the_gateway_s_dhcp(
        tmp_path: Path) -> None:
    sock = str(tmp_path / "netd.sock")
    proc = start_netd(sock, "--link", "user", "--ip", "dhcp")
    try:
        report = info(sock)
        assert report["ip"] == "10.0.2.15" and report["gateway"] == "10.0.2.2"
        assert report["device_counters"]["dhcp.offer"] == 1
        assert report["device_counters"]["dhcp.ack"] == 1
        ping = cli("ping", "-c", "1", "10.0.2.2", "--socket", sock)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        stop_process(proc)


def assert_forward_reaches_a_guest_listener(nc: Any, host_port: int, guest_port: int) -> None:
    """A host connection to 127.0.0.1:HOST arrives at the stack's listener on GUEST from
    10.0.2.2, and bytes cross both ways."""
    from vipernet.netclient.sockets import socket as vsocket

    with vsocket(client=nc) as listener:
        listener.bind(("0.0.0.0", guest_port))
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


def test_a_forwarded_host_port_reaches_a_listener_served_by_netd(tmp_path: Path) -> None:
    from vipernet.netclient import client as netclient

    sock = str(tmp_path / "netd.sock")
    proc, host_port = start_netd_on_a_free_port(
        sock, lambda port: ["--link", f"user:forward=tcp:{port}:8080"])
    try:
        with netclient.connect(sock) as nc:
            assert_forward_reaches_a_guest_listener(nc, host_port, 8080)
    finally:
        stop_process(proc)
