"""The stack on a real TAP against the Linux kernel's own ICMP, ARP and UDP (test bed)."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.link.tshark import quiet_guess_args
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary
from vipernet.link.pcap import CapturingDevice, PcapWriter
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig, UdpSocket
from vipernet.wire import mac_to_str

pytestmark = pytest.mark.testbed

ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""

ECHO_CLIENT = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("10.0.2.15", int(sys.argv[1])))
for size in (1, 1472, 1473, 8000, 8192):
    data = bytes((i * 7 + size) % 256 for i in range(size))
    s.send(data)
    back = s.recv(65535)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data[::-1]).digest(), size
print("ok", flush=True)
"""


@dataclass
class Rig:
    bed: TestBed
    stack: Stack
    runtime: Runtime
    pcap: Path
    writer: PcapWriter


@pytest.fixture
def rig() -> Iterator[Rig]:
    from vipernet.link.tap import TapDevice

    bed = TestBed("stk")
    try:
        pcap = bed.workdir / "stack.pcap"
        writer = PcapWriter(pcap)
        device = CapturingDevice(TapDevice.open(bed.tap, netns=bed.name), writer)
        try:
            stack = Stack(StackConfig(), capabilities=device.capabilities, now=time.monotonic(),
                          rng=random.Random())
            runtime = Runtime(stack, device)
            runtime.start_thread()
            try:
                yield Rig(bed, stack, runtime, pcap, writer)
            finally:
                runtime.close()
                assert stack.counters["stack.rx.internal_error"] == 0
        finally:
            device.close()
            writer.close()
    finally:
        bed.close()


def _ping(bed: TestBed, *args: str) -> subprocess.CompletedProcess[str]:
    return bed.ns(["ping", "-n", *args, STACK_IP], check=False, timeout=60)


def test_kernel_ping_gets_twenty_replies(rig: Rig) -> None:
    result = _ping(rig.bed, "-c", "20", "-i", "0.05", "-W", "2")
    assert "20 packets transmitted, 20 received" in result.stdout, result.stdout


def test_kernel_ping_with_8000_byte_payload_is_answered(rig: Rig) -> None:
    result = _ping(rig.bed, "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000")
    assert "3 received" in result.stdout, result.stdout
    assert "8008 bytes from 10.0.2.15" in result.stdout
    assert rig.stack.counters["ipv4.reasm.complete"] == 3


def test_kernel_neighbour_table_learns_the_stacks_mac(rig: Rig) -> None:
    _ping(rig.bed, "-c", "1", "-W", "2")
    neigh = rig.bed.ns(["ip", "neigh", "show", STACK_IP]).stdout
    assert mac_to_str(rig.stack.config.mac) in neigh.lower(), neigh
    assert re.search(r"REACHABLE|STALE|DELAY", neigh), neigh


def _start_echo_server(bed: TestBed) -> int:
    proc = bed.start([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def _exchange(rig: Rig, sock: UdpSocket, data: bytes) -> bytes:
    runtime = rig.runtime
    runtime.call(lambda: sock.send(data, runtime.clock()))
    assert runtime.wait_until(lambda: sock.readable, timeout=5.0), "no echo"
    return runtime.call(lambda: sock.recv(65536))


def test_udp_echo_with_a_kernel_server_including_8k_datagrams(rig: Rig) -> None:
    port = _start_echo_server(rig.bed)
    sock = rig.runtime.call(rig.stack.udp_socket)
    rig.runtime.call(lambda: sock.connect((GATEWAY, port), rig.runtime.clock()))
    for size in (1, 100, 1472, 1473, 8000, 8192, 30000):
        data = random.randbytes(size)
        back = _exchange(rig, sock, data)
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), size
    assert rig.stack.counters["ipv4.reasm.complete"] >= 4  # the big echoes came in pieces


def test_kernel_client_exchanges_8k_datagrams_with_a_stack_udp_server(rig: Rig) -> None:
    runtime = rig.runtime
    server = runtime.call(rig.stack.udp_socket)
    runtime.call(lambda: server.bind(("", 7)))

    def echo_reversed(now: float) -> None:
        while server.readable:
            data, peer = server.recvfrom(65536)
            server.sendto(data[::-1], peer, now)

    runtime.add_hook(lambda now: echo_reversed(now))  # type: ignore[func-returns-value]
    result = rig.bed.ns([sys.executable, "-c", ECHO_CLIENT, "7"], check=False, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_datagram_to_a_closed_kernel_port_makes_the_next_call_raise_econnrefused(rig: Rig
                                                                                 ) -> None:
    runtime = rig.runtime
    sock = runtime.call(rig.stack.udp_socket)
    runtime.call(lambda: sock.connect((GATEWAY, 9), runtime.clock()))  # discard: nobody there
    runtime.call(lambda: sock.send(b"anyone?", runtime.clock()))
    assert runtime.wait_until(lambda: sock.readable, timeout=5.0)
    with pytest.raises(ConnectionRefusedError):
        runtime.call(lambda: sock.recv(100))


def test_stack_pings_the_kernel_and_measures_the_round_trip(rig: Rig) -> None:
    runtime = rig.runtime
    ping = runtime.call(rig.stack.ping_socket)
    for seq in range(5):
        sent = runtime.clock()
        runtime.call(lambda seq=seq: ping.send_echo(GATEWAY, seq, b"v" * 56, runtime.clock()))  # type: ignore[misc]
        assert runtime.wait_until(lambda: ping.readable, timeout=5.0)
        reply = runtime.call(ping.recv_reply)
        assert reply.seq == seq and reply.payload == b"v" * 56
        assert 0 < reply.received_at - sent < 2.0


CLOSED_PORT_PROBE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.0.2.15", 9))
s.send(b"nobody home?")
s.settimeout(5)
try:
    s.recv(100)
except ConnectionRefusedError:
    print("refused", flush=True)
"""


def test_capture_of_fragments_pings_and_icmp_errors_is_clean_for_tshark(rig: Rig) -> None:
    tshark = require_binary("tshark")
    assert "3 received" in _ping(rig.bed, "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000").stdout
    port = _start_echo_server(rig.bed)
    sock = rig.runtime.call(rig.stack.udp_socket)
    rig.runtime.call(lambda: sock.connect((GATEWAY, port), rig.runtime.clock()))
    assert _exchange(rig, sock, b"f" * 8192) == b"f" * 8192
    probe = rig.bed.ns([sys.executable, "-c", CLOSED_PORT_PROBE], check=False, timeout=30)
    assert probe.stdout.strip() == "refused"  # the kernel heard our ICMP port unreachable
    rig.runtime.call(rig.writer.flush)
    out = subprocess.run([tshark, "-r", str(rig.pcap), *quiet_guess_args(),
                          "-o", "ip.check_checksum:TRUE",
                          "-o", "udp.check_checksum:TRUE", "-z", "expert", "-q"],
                         capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert out.returncode == 0 and "unknown preference" not in report, report
    assert "alformed" not in report, report
    assert not re.search(r"[Bb]ad checksum|incorrect", report), report
    listing = subprocess.run([tshark, "-r", str(rig.pcap)], capture_output=True, text=True,
                             timeout=60).stdout
    assert "Fragmented IP protocol" in listing and "Destination unreachable" in listing
    assert "Echo (ping) reply" in listing and "ARP" in listing
