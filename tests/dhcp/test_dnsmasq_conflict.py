"""Against dnsmasq over a real TAP: an address the kernel already holds is declined, and
DNS servers that dnsmasq changes are taken at the next renewal by a running netd."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.slirp.netd_proc import info, start_netd
from tests.testbed import TestBed, require_binary, wait_for
from vipernet.dhcp.client import DhcpClient, DhcpConfig
from vipernet.dhcp.driver import acquire
from vipernet.link.tap import TapDevice
from vipernet.netclient import client as netclient

SRC = str(Path(__file__).resolve().parents[2] / "src")
pytestmark = pytest.mark.testbed
MAC = bytes.fromhex("525400abcdef")
SQUATTER_MAC = "02:00:00:00:be:ef"
# Another host on the wire that holds 10.0.2.15: it answers ARP for it (who-has, including
# a probe from 0.0.0.0) from its own MAC, through a packet socket on the kernel's side of
# the TAP, so the kernel's own addresses and routes stay out of it.
SQUATTER = """
import socket, struct, sys
iface, ip, mac = sys.argv[1], socket.inet_aton(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0x0806))
print("ready", flush=True)
while True:
    frame = s.recv(2048)
    if len(frame) < 42 or frame[20:22] != b"\\x00\\x01" or frame[38:42] != ip:
        continue
    asker_mac, asker_ip = frame[22:28], frame[28:32]
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, ip, asker_mac, asker_ip)
    s.send(asker_mac + mac + b"\\x08\\x06" + arp)
"""


def start_dnsmasq(bed: TestBed, first: str, last: str, *options: str
                  ) -> subprocess.Popen[bytes]:
    dnsmasq = require_binary("dnsmasq")
    proc = bed.start([
        dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--port=0", f"--interface={bed.tap}", "--bind-interfaces", "--user=root",
        "--no-ping", "--dhcp-authoritative", f"--dhcp-range={first},{last},255.255.255.0,2m",
        "--dhcp-option=option:router,10.0.2.2", *options,
        f"--dhcp-leasefile={bed.workdir / 'leases'}", f"--pid-file={bed.workdir / 'pid'}",
        "--log-dhcp", f"--log-facility={bed.workdir / 'dnsmasq.log'}",
    ])
    wait_for(lambda: bool(bed.ns(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip()),
             what="dnsmasq on port 67")
    return proc


def test_an_address_another_host_holds_is_declined_and_another_one_taken() -> None:
    with TestBed("dcf") as bed:
        squatter = bed.start([sys.executable, "-c", SQUATTER, bed.tap, "10.0.2.15",
                              SQUATTER_MAC.replace(":", "")], stdout=subprocess.PIPE)
        assert squatter.stdout is not None and squatter.stdout.readline() == b"ready\n"
        # dnsmasq offers 10.0.2.15 first (reserved for our MAC), .16 once .15 is declined.
        start_dnsmasq(bed, "10.0.2.15", "10.0.2.16",
                      f"--dhcp-host={MAC.hex(':')},10.0.2.15")
        device = TapDevice.open(bed.tap, netns=bed.name)
        try:
            client = DhcpClient(mac=MAC, rng=random.Random(5), config=DhcpConfig(
                first_retransmit=1.0, jitter=0.2, arp_probes=2, probe_interval=0.2,
                probe_wait=0.5, decline_backoff=0.5))
            lease = acquire(device, client, timeout=30.0)
        finally:
            device.close()
        assert client.counters["arp.conflict"] >= 1
        assert client.counters["tx.decline"] == 1
        assert lease.address.ip == IPv4Address("10.0.2.16")
        log = (bed.workdir / "dnsmasq.log").read_text()
        assert "DHCPDECLINE" in log and "10.0.2.15" in log


def test_netd_takes_new_dns_servers_at_the_next_renewal() -> None:
    with TestBed("dcf") as bed:
        leases = bed.workdir / "leases"
        # T1 of 3 s: netd renews for real, on its own clock, within the test's patience.
        opts = bed.workdir / "dhcp-opts"
        opts.write_text("option:dns-server,10.0.2.3\n")
        server = start_dnsmasq(bed, "10.0.2.15", "10.0.2.15", f"--dhcp-optsfile={opts}",
                               "--dhcp-option=option:T1,3", "--dhcp-option=option:T2,100")
        sock = str(bed.workdir / "netd.sock")
        proc = start_netd(sock, "--link", f"tap:{bed.tap}", "--ip", "dhcp", start=bed.start)

        def dns() -> list[str]:
            return list(info(sock)["dns"])

        assert dns() == ["10.0.2.3"]
        # dnsmasq re-reads its options (SIGHUP): another DNS server, the same lease.  Not a
        # restart: a renewal sent while no server listened would only be retried after 60 s
        # (RFC 2131's floor), past this test's patience - a flake under load.
        assert "10.0.2.15" in leases.read_text()
        opts.write_text("option:dns-server,10.0.2.9\n")
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: dns() == ["10.0.2.9"], timeout=30, what="the renewal's DNS servers")
        # netd's resolver now asks 10.0.2.9, where a DNS server answers what 10.0.2.3
        # (no server there) never could.
        bed.ns(["ip", "addr", "add", "10.0.2.9/24", "dev", bed.tap])
        dnsmasq = require_binary("dnsmasq")
        bed.start([dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                   "--no-hosts", "--listen-address=10.0.2.9", "--bind-interfaces",
                   "--user=root", f"--pid-file={bed.workdir / 'dns.pid'}",
                   "--address=/renewed.test/192.0.2.99"])
        wait_for(lambda: bool(bed.ns(["ss", "-Hlun", "src 10.0.2.9:53"],
                                     check=False).stdout.strip()), what="DNS on 10.0.2.9")
        with netclient.connect(sock) as nc:
            assert nc.resolve("renewed.test", 10.0) == ["192.0.2.99"]
        assert proc.poll() is None
