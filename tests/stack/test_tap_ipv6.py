"""IPv6 on a real TAP against the Linux kernel (test bed with IPv6 on the kernel's side).

The kernel side has fd0a:2::2 and ::3 and dnsmasq sends Router Advertisements for
fd0a:2::/64 with RDNSS; the stack (in-process, ``ip6="auto"``) must pass DAD, form its
link-local and SLAAC addresses, be learned in the kernel's neighbour table, answer the
kernel's pings (8,000-byte ones fragmented both ways), ping the kernel itself, and leave a
capture tshark finds nothing wrong with.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import subprocess
import sys
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
AF_INET6 = int(socket.AF_INET6)


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


UDP6_ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
# A specific address: bound to ::, the kernel may answer from fd0a:2::3, which a
# connected socket (ours as Linux's) rightly refuses.
s.bind(("fd0a:2::2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
"""

UDP6_CLIENT = """
import hashlib, random, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], 7))
for size in (1, 1232, 1233, 8192, 30000):
    data = random.randbytes(size)
    s.send(data)
    if s.recv(65536) != data[::-1]:
        sys.exit("wrong echo of %d bytes" % size)
s.connect((sys.argv[1], 9))
s.send(b"nobody home?")
try:
    s.recv(100)
except ConnectionRefusedError:
    print("ok refused", flush=True)
"""


def test_udp_echo_with_a_kernel_ipv6_server_including_fragmented_datagrams(rig: Rig) -> None:
    runtime = rig.runtime
    proc = rig.bed.start([sys.executable, "-c", UDP6_ECHO_SERVER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    sock = runtime.call(lambda: rig.stack.udp_socket(AF_INET6))
    runtime.call(lambda: sock.connect((GATEWAY6, port), runtime.clock()))
    before = rig.stack.counters["ipv6.reasm.complete"]
    for size in (1, 100, 1232, 1233, 8192, 30000):
        data = random.randbytes(size)
        runtime.call(lambda data=data: sock.send(data, runtime.clock()))  # type: ignore[misc]
        assert runtime.wait_until(lambda: sock.readable, timeout=5.0), f"no echo of {size}"
        back = runtime.call(lambda: sock.recv(65536))
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), size
    assert rig.stack.counters["ipv6.reasm.complete"] - before >= 2  # 8192 and 30000
    assert runtime.call(sock.getpeername) == (GATEWAY6, port, 0, 0)


def test_kernel_ipv6_client_exchanges_datagrams_with_a_stack_server_and_hears_refusal(
        rig: Rig) -> None:
    runtime = rig.runtime
    server = runtime.call(lambda: rig.stack.udp_socket(AF_INET6))
    runtime.call(lambda: server.bind(("::", 7)))

    def echo_reversed(now: float) -> None:
        while server.readable:
            data, peer = server.recvfrom(65536)
            server.sendto(data[::-1], peer, now)

    runtime.add_hook(lambda now: echo_reversed(now))  # type: ignore[func-returns-value]
    result = rig.bed.ns([sys.executable, "-c", UDP6_CLIENT, str(rig.global_address)],
                        check=False, timeout=60)
    assert result.stdout.strip() == "ok refused", result.stderr
    assert rig.stack.counters["udp.rx.no_socket"] >= 1


def test_a_connected_stack_socket_hears_the_kernels_port_unreachable(rig: Rig) -> None:
    runtime = rig.runtime
    sock = runtime.call(lambda: rig.stack.udp_socket(AF_INET6))
    runtime.call(lambda: sock.connect((GATEWAY6, 9), runtime.clock()))
    runtime.call(lambda: sock.send(b"anyone?", runtime.clock()))
    assert runtime.wait_until(lambda: sock.readable, timeout=5.0)
    with pytest.raises(ConnectionRefusedError):
        runtime.call(lambda: sock.recv(100))


def test_capture_is_clean_for_tshark(rig: Rig) -> None:
    tshark = require_binary("tshark")
    _ping6(rig.bed, str(rig.global_address), "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000")
    rig.writer.flush()
    out = subprocess.run(
        [tshark, "-r", str(rig.pcap), *quiet_guess_args(),
         "-o", "udp.check_checksum:TRUE",
         "-Y", "_ws.malformed || _ws.expert.severity >= error || icmpv6.checksum.status == 0"
               " || udp.checksum.status == 0"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout
    ours = subprocess.run(
        [tshark, "-r", str(rig.pcap), "-Y",
         f"eth.src == {mac_to_str(rig.stack.config.mac)} && icmpv6", "-T", "fields",
         "-e", "icmpv6.type"], capture_output=True, text=True, timeout=120).stdout.split()
    for kind in ("135", "143", "133", "129", "128"):  # NS (DAD), MLDv2, RS, echo both ways
        assert kind in ours, (kind, sorted(set(ours)))
