"""IPv6 on a real TAP against the Linux kernel (test bed with IPv6 on the kernel's side).

The kernel side has fd0a:2::2 and ::3 and dnsmasq sends Router Advertisements for
fd0a:2::/64 with RDNSS; the stack (in-process, ``ip6="auto"``) must pass DAD, form its
link-local and SLAAC addresses, be learned in the kernel's neighbour table, answer the
kernel's pings (8,000-byte ones fragmented both ways), ping the kernel itself, and leave a
capture tshark finds nothing wrong with.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from tests.link.tshark import quiet_guess_args
from tests.testbed import DNS_SERVER6, GATEWAY6, PREFIX6, TestBed, require_binary, wait_for
from vipernet.link.pcap import CapturingDevice, PcapWriter
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig
from vipernet.wire import mac_to_str

pytestmark = pytest.mark.testbed

PREFIX = IPv6Network(f"{PREFIX6}/64")


@dataclass
class Rig:
    bed: TestBed
    stack: Stack
    runtime: Runtime
    pcap: Path
    writer: PcapWriter
    link_local: IPv6Address
    global_address: IPv6Address


def _ready_addresses(stack: Stack, now: float) -> list[IPv6Address]:
    return [a.address for a in stack.nd.addrconf.addresses(now) if a.state == "preferred"]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    from vipernet.link.tap import TapDevice

    bed = TestBed("v6")
    try:
        bed.enable_ipv6()
        pcap = bed.workdir / "stack6.pcap"
        writer = PcapWriter(pcap)
        device = CapturingDevice(TapDevice.open(bed.tap, netns=bed.name), writer)
        try:
            stack = Stack(StackConfig(ip6="auto"), capabilities=device.capabilities,
                          now=time.monotonic(), rng=random.Random())
            runtime = Runtime(stack, device)
            runtime.start_thread()
            try:
                bed.start_router_advertisements()

                def addresses() -> list[IPv6Address]:
                    return runtime.call(lambda: _ready_addresses(stack, runtime.clock()))

                wait_for(lambda: any(a in PREFIX for a in addresses())
                         and any(a.is_link_local for a in addresses()),
                         timeout=30, what="DAD and SLAAC on the stack")
                ready = addresses()
                link_local = next(a for a in ready if a.is_link_local)
                global_address = next(a for a in ready if a in PREFIX)
                yield Rig(bed, stack, runtime, pcap, writer, link_local, global_address)
            finally:
                runtime.close()
                assert stack.counters["stack.rx.internal_error"] == 0
                assert stack.counters["stack.poll.internal_error"] == 0
        finally:
            device.close()
            writer.close()
    finally:
        bed.close()


def _ping6(bed: TestBed, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return bed.ns(["ping", "-6", "-n", *args, target], check=False, timeout=60)


def test_the_stack_forms_its_addresses_after_dad(rig: Rig) -> None:
    counters = rig.stack.counters
    assert counters["nd.tx.ns"] >= 2  # a DAD probe for each address
    assert counters["ip6.addr.ready"] >= 2
    assert counters["ip6.addr.duplicate"] == 0
    assert rig.global_address in PREFIX
    assert rig.link_local.is_link_local


def test_kernel_pings_the_link_local_and_global_addresses(rig: Rig) -> None:
    tap = rig.bed.tap
    for target in (f"{rig.link_local}%{tap}", str(rig.global_address)):
        result = _ping6(rig.bed, target, "-c", "10", "-i", "0.05", "-W", "2")
        assert "10 packets transmitted, 10 received" in result.stdout, result.stdout


def test_kernel_neighbour_table_learns_the_stack(rig: Rig) -> None:
    _ping6(rig.bed, str(rig.global_address), "-c", "1", "-W", "2")
    neigh = rig.bed.ns(["ip", "-6", "neigh", "show", str(rig.global_address)]).stdout
    assert mac_to_str(rig.stack.config.mac) in neigh.lower(), neigh
    assert re.search(r"REACHABLE|STALE|DELAY|PROBE", neigh), neigh


def test_kernel_pings_with_8000_byte_payloads_fragmented_both_ways(rig: Rig) -> None:
    before = rig.stack.counters["ipv6.reasm.complete"]
    sent = rig.stack.counters["ipv6.tx.fragments"]
    result = _ping6(rig.bed, str(rig.global_address), "-c", "5", "-i", "0.2", "-W", "2",
                    "-s", "8000")
    assert "5 packets transmitted, 5 received" in result.stdout, result.stdout
    assert f"8008 bytes from {rig.global_address}" in result.stdout
    assert rig.stack.counters["ipv6.reasm.complete"] - before == 5
    assert rig.stack.counters["ipv6.tx.fragments"] - sent >= 5 * 6  # 8048 bytes / 1448


def test_stack_pings_the_kernel(rig: Rig) -> None:
    runtime = rig.runtime
    ping = runtime.call(rig.stack.pings6.open_socket)

    def send(target: str, seq: int, payload: bytes) -> None:
        runtime.call(lambda: ping.send_echo(target, seq, payload, runtime.clock()))

    for target in (GATEWAY6, DNS_SERVER6):
        for seq, size in enumerate((56, 3000)):
            payload = random.randbytes(size)
            send(target, seq, payload)
            assert runtime.wait_until(lambda: ping.readable, timeout=5.0), target
            reply = runtime.call(ping.recv_reply)
            assert (str(reply.src), reply.seq, reply.payload) == (target, seq, payload)
            assert reply.ttl == 64


def test_rdnss_from_the_advertisement_is_known(rig: Rig) -> None:
    servers = rig.runtime.call(lambda: rig.stack.nd.addrconf.dns_servers(rig.runtime.clock()))
    assert IPv6Address(DNS_SERVER6) in servers


def test_capture_is_clean_for_tshark(rig: Rig) -> None:
    tshark = require_binary("tshark")
    _ping6(rig.bed, str(rig.global_address), "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000")
    rig.writer.flush()
    out = subprocess.run(
        [tshark, "-r", str(rig.pcap), *quiet_guess_args(),
         "-Y", "_ws.malformed || _ws.expert.severity >= error || icmpv6.checksum.status == 0"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout
    ours = subprocess.run(
        [tshark, "-r", str(rig.pcap), "-Y",
         f"eth.src == {mac_to_str(rig.stack.config.mac)} && icmpv6", "-T", "fields",
         "-e", "icmpv6.type"], capture_output=True, text=True, timeout=120).stdout.split()
    for kind in ("135", "143", "133", "129", "128"):  # NS (DAD), MLDv2, RS, echo both ways
        assert kind in ours, (kind, sorted(set(ours)))
