"""netd with IPv6 on a real TAP: SLAAC from dnsmasq's RAs, pings both ways, GET_INFO.

netd runs with its default ``--ip6 auto``; the kernel side has IPv6 on (fd0a:2::2, ::3)
and dnsmasq advertises fd0a:2::/64 with RDNSS.  The CLI (``vipernet ping -6``,
``vipernet info --json``) goes through NET_PING6 and GET_INFO.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from tests.netd_rig import cli_env, vipernet_cli
from tests.testbed import DNS_SERVER6, GATEWAY6, PREFIX6, TestBed, wait_for
from vipernet.netclient import client as netclient
from vipernet.netd import protocol as p

pytestmark = pytest.mark.testbed

PREFIX = IPv6Network(f"{PREFIX6}/64")


@dataclass
class Netd6:
    bed: TestBed
    path: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return vipernet_cli(*argv, env=self.env, timeout=60)

    def ipv6(self) -> dict[str, Any]:
        with netclient.connect(self.path) as client:
            info: dict[str, Any] = client.info()["ipv6"]
            return info

    def address(self, where: IPv6Network | None) -> IPv6Address | None:
        for entry in self.ipv6()["addresses"]:
            address = IPv6Address(entry["address"])
            if entry["state"] != "preferred":
                continue
            if (where is None and address.is_link_local) or (where and address in where):
                return address
        return None


@pytest.fixture(scope="module")
def netd6() -> Iterator[Netd6]:
    bed = TestBed("n6")
    try:
        bed.enable_ipv6()
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env,
                         stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
        bed.start_router_advertisements()
        rig = Netd6(bed, path, env, proc)
        wait_for(lambda: rig.address(PREFIX) is not None and rig.address(None) is not None,
                 timeout=30, what="netd's SLAAC address")
        yield rig
        assert proc.poll() is None, (bed.workdir / "netd.err").read_text()
    finally:
        bed.close()


def test_get_info_reports_addresses_router_prefix_and_rdnss(netd6: Netd6) -> None:
    info = netd6.ipv6()
    assert info["mode"] == "auto" and info["enabled"]
    origins = {e["origin"] for e in info["addresses"] if e["state"] == "preferred"}
    assert origins == {"link-local", "slaac"}
    assert str(PREFIX) in info["prefixes"]
    assert len(info["routers"]) == 1 and IPv6Address(info["routers"][0]).is_link_local
    assert info["dns"] == [DNS_SERVER6]
    assert "ff02::1" in info["groups"]


def test_kernel_pings_netd_over_ipv6_and_learns_its_mac(netd6: Netd6) -> None:
    target = str(netd6.address(PREFIX))
    out = netd6.bed.ns(["ping", "-6", "-n", "-c", "5", "-i", "0.1", "-W", "2", "-s", "8000",
                        target], check=False).stdout
    assert "5 packets transmitted, 5 received" in out, out
    neigh = netd6.bed.ns(["ip", "-6", "neigh", "show", target]).stdout
    assert "52:54:00:12:34:56" in neigh, neigh


def test_vipernet_ping_6_reaches_the_kernel(netd6: Netd6) -> None:
    result = netd6.cli("ping", "-6", "-c", "3", "-i", "0.2", "-s", "2000", GATEWAY6)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"2008 bytes from {GATEWAY6}: icmp_seq=") == 3, result.stdout
    assert "3 packets transmitted, 3 received" in result.stdout


def test_vipernet_ping_6_to_a_silent_address_reports_unreachable(netd6: Netd6) -> None:
    result = netd6.cli("ping", "-c", "1", "-W", "5", f"{PREFIX6}99")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Destination Host Unreachable" in result.stdout, result.stdout


def test_ping6_request_with_a_truncated_address_is_einval(netd6: Netd6) -> None:
    with netclient.connect(netd6.path) as client:
        with pytest.raises(OSError) as caught:
            client._call(p.Code.PING6, p.Empty(), 2.0)
        assert caught.value.errno == 22
        assert client.ping6(GATEWAY6, 1, b"x", 3.0).source == GATEWAY6  # channel intact


def test_vipernet_info_json_carries_ipv6(netd6: Netd6) -> None:
    result = netd6.cli("info", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ipv6"]["dns"] == [DNS_SERVER6]
