"""The DHCP client against dnsmasq over a real TAP: lease obtained, renewed, address used."""

from __future__ import annotations

import random
import time
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from tests.slirp.netd_proc import info, start_netd
from tests.testbed import TestBed, require_binary, wait_for
from vipernet.dhcp.client import DhcpClient, DhcpConfig, LeaseRenewed, State
from vipernet.dhcp.driver import DhcpDevice, acquire
from vipernet.link.tap import TapDevice
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig

MAC = bytes.fromhex("525400abcdef")
SRC = str(Path(__file__).resolve().parents[2] / "src")
pytestmark = pytest.mark.testbed


def start_dhcp_server(bed: TestBed, address: str = "10.0.2.15") -> None:
    dnsmasq = require_binary("dnsmasq")
    bed.start([
        dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--port=0", f"--interface={bed.tap}", "--bind-interfaces", "--user=root",
        "--no-ping", "--dhcp-authoritative",
        f"--dhcp-range={address},{address},255.255.255.0,2m",
        "--dhcp-option=option:router,10.0.2.2", "--dhcp-option=option:dns-server,10.0.2.3",
        f"--dhcp-leasefile={bed.workdir / 'leases'}", f"--pid-file={bed.workdir / 'pid'}",
    ])
    wait_for(lambda: bool(bed.ns(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip()),
             what="dnsmasq on port 67")


def test_a_lease_from_dnsmasq_is_obtained_used_and_renewed_at_t1() -> None:
    with TestBed("dhc") as bed:
        device = TapDevice.open(bed.tap, netns=bed.name)
        runtime = None
        try:
            start_dhcp_server(bed)
            offset = [0.0]

            def clock() -> float:
                return time.monotonic() + offset[0]

            client = DhcpClient(mac=MAC, rng=random.Random(7),
                                config=DhcpConfig(first_retransmit=1.0, jitter=0.2))
            lease = acquire(device, client, clock=clock, timeout=30.0)
            assert lease.address == IPv4Interface("10.0.2.15/24")
            assert lease.router == IPv4Address("10.0.2.2")
            assert lease.dns == (IPv4Address("10.0.2.3"),)
            assert lease.server_id == IPv4Address("10.0.2.2")
            assert lease.lease_time == 120.0 and lease.t1 == 60.0
            assert MAC.hex(":") in (bed.workdir / "leases").read_text()

            stack = Stack(StackConfig(mac=MAC, ip=lease.address, gateway=lease.router,
                                      dns=lease.dns), now=clock(), rng=random.Random(8))
            dhcp_device = DhcpDevice(device, client)
            dhcp_device.attach(stack)
            runtime = Runtime(stack, dhcp_device, clock=clock)
            runtime.start_thread("dhcp-test")
            ping = bed.ns(["ping", "-c", "2", "-i", "0.2", "-W", "3", "10.0.2.15"], check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr

            # Fake time forward to just before T1; the renewal itself goes out for real.
            offset[0] = lease.renew_at - time.monotonic() - 0.2
            runtime.wake()
            wait_for(lambda: any(isinstance(e, LeaseRenewed) for e in dhcp_device.events),
                     timeout=20.0, what="a renewed lease")
            renewed = next(e for e in dhcp_device.events if isinstance(e, LeaseRenewed))
            assert renewed.lease.address == lease.address
            assert renewed.lease.obtained_at >= lease.renew_at
            assert client.counters["tx.renew"] >= 1 and client.counters["tx.rebind"] == 0
            assert client.state is State.BOUND
            ping = bed.ns(["ping", "-c", "1", "-W", "3", "10.0.2.15"], check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr
        finally:
            if runtime is not None:
                runtime.close()
            device.close()


def test_netd_ip_dhcp_on_a_tap_takes_the_address_dnsmasq_hands_out() -> None:
    with TestBed("dhc") as bed:
        start_dhcp_server(bed, address="10.0.2.40")
        sock = str(bed.workdir / "netd.sock")
        start_netd(sock, "--link", f"tap:{bed.tap}", "--ip", "dhcp", start=bed.start)
        report = info(sock)
        assert (report["ip"], report["prefix"], report["gateway"]) == ("10.0.2.40", 24,
                                                                       "10.0.2.2")
        ping = bed.ns(["ping", "-c", "1", "-W", "3", "10.0.2.40"], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
