"""``vipernet netd --hosts`` on a real TAP: sockets made on chosen hosts reach the kernel
from those hosts' addresses; hosts are listed, added and removed at run time (the kernel
pings them, then no longer can); 10,000 idle hosts fit netd in <= 300 MB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, TestBed, wait_for
from tests.vhosts.bed import roomy_neighbour_table, route_hosts, start_kernel_server
from vipernet import socket as vsocket
from vipernet.netclient import client as netclient
from vipernet.netclient.vhosts import add_hosts, list_hosts, remove_hosts

pytestmark = pytest.mark.testbed

FIRST = IPv4Address("10.0.3.1")
HOSTS = 50


@dataclass
class Rig:
    bed: TestBed
    path: str
    proc: subprocess.Popen[bytes]


def start_netd(bed: TestBed, hosts: str) -> Rig:
    path = str(bed.workdir / "netd.sock")
    err = open(bed.workdir / "netd.err", "wb")  # noqa: SIM115 - closed with the bed
    proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                      f"tap:{bed.tap}", "--socket", path, "--ip6", "off", "--hosts", hosts],
                     env=cli_env(VIPERNET_SOCKET=path), stderr=err)
    wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
    assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
    return Rig(bed, path, proc)


@pytest.fixture
def rig() -> Iterator[Rig]:
    with roomy_neighbour_table(), TestBed("vn") as bed:
        route_hosts(bed)
        yield start_netd(bed, f"{HOSTS}@{FIRST}/16")


def _get(sock: vsocket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = b""
    while chunk := sock.recv(4096):
        response += chunk
    return response


def test_a_socket_made_on_a_host_speaks_from_that_host(rig: Rig) -> None:
    port, peers_file = start_kernel_server(rig.bed)
    expected = {str(FIRST + i) for i in range(HOSTS)}
    with netclient.connect(rig.path) as client:
        for ip in sorted(expected):
            with vsocket.socket(client=client, host=ip) as sock:
                sock.settimeout(10)
                sock.connect((GATEWAY, port))
                assert sock.getsockname()[0] == ip
                assert _get(sock).endswith(b"\r\n\r\nok")
        with pytest.raises(OSError) as info:
            vsocket.socket(client=client, host="10.0.9.9")
        assert info.value.errno == 99  # EADDRNOTAVAIL: no such host
    wait_for(lambda: len(set(peers_file.read_text().split())) >= HOSTS, timeout=10,
             what="the server to log every peer")
    assert set(peers_file.read_text().split()) == expected


def _pings(bed: TestBed, ip: str) -> bool:
    out = bed.ns(["ping", "-n", "-c", "1", "-W", "1", ip], check=False).stdout
    return " 0% packet loss" in out


def test_hosts_are_listed_added_and_removed_at_run_time(rig: Rig) -> None:
    with netclient.connect(rig.path) as client:
        listed = list_hosts(client)
        assert listed["count"] == HOSTS and listed["hosts"][0] == str(FIRST)
        assert add_hosts(client, "10.0.4.1", 10, 16) == 10
        assert list_hosts(client)["count"] == HOSTS + 10
        assert _pings(rig.bed, "10.0.4.5")
        with pytest.raises(FileExistsError):
            add_hosts(client, "10.0.4.10", 5, 16)  # 10.0.4.10 is taken: nothing added
        assert list_hosts(client)["count"] == HOSTS + 10
        assert remove_hosts(client, "10.0.4.1", 10) == 10
        assert list_hosts(client)["count"] == HOSTS
        assert not _pings(rig.bed, "10.0.4.5")
        assert _pings(rig.bed, str(FIRST + 7))  # the others are untouched


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _netd_pid(proc: subprocess.Popen[bytes]) -> int:
    # bed.start runs "ip netns exec ... python3": that exec's the interpreter in place.
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert b"netd" in argv and b"netns" not in argv, argv
    return proc.pid


def test_ten_thousand_idle_hosts_fit_in_300_mb_of_netd() -> None:
    with roomy_neighbour_table(), TestBed("vr") as bed:
        rig = start_netd(bed, "10000@10.1.0.1/16")
        with netclient.connect(rig.path) as client:
            assert list_hosts(client)["count"] == 10000
        rss = _rss_mb(_netd_pid(rig.proc))
        print(f"netd RSS with 10,000 idle virtual hosts: {rss:.1f} MB")
        assert rss <= 300, rss
