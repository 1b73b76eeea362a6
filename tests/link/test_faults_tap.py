"""FaultInjector over a real TAP: the kernel sees exactly the impairment we report."""

from __future__ import annotations

import random
import select
import time
from collections.abc import Iterator

import pytest

from tests.link.packets import GATEWAY_IP, icmp_echo
from tests.link.tapkit import gateway_mac, nstat
from tests.testbed import TestBed
from vipernet.link.faults import Direction, FaultConfig, FaultInjector
from vipernet.link.frame import Frame
from vipernet.link.tap import TapDevice
from vipernet.wire.ethernet import EtherType, parse_ethernet
from vipernet.wire.icmp import IcmpEcho, IcmpType, parse_icmp
from vipernet.wire.ipv4 import IpProto, parse_ipv4

pytestmark = pytest.mark.testbed


@pytest.fixture
def bed() -> Iterator[TestBed]:
    with TestBed("lnk") as b:
        yield b


def echo_replies(device: FaultInjector, expected: int, timeout: float = 3.0) -> set[int]:
    """Sequence numbers of the echo replies that arrive (until `expected` or quiet)."""
    seqs: set[int] = set()
    fd = device.fileno()
    assert fd is not None
    deadline = time.monotonic() + timeout
    while len(seqs) < expected and time.monotonic() < deadline:
        select.select([fd], [], [], 0.05)
        for frame in device.receive(time.monotonic()):
            eth, body = parse_ethernet(frame.data)
            if eth.ethertype != EtherType.IPV4:
                continue
            ip, l4 = parse_ipv4(body)
            if ip.proto == IpProto.ICMP and ip.src == GATEWAY_IP:
                echo = parse_icmp(l4)
                if isinstance(echo, IcmpEcho) and echo.type == IcmpType.ECHO_REPLY:
                    seqs.add(echo.seq)
    return seqs


def test_dropped_pings_are_exactly_the_ones_the_kernel_never_answers(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name) as tap:
        mac = gateway_mac(tap)
        lossy = FaultInjector(tap, FaultConfig(drop=0.3, direction=Direction.TX),
                              random.Random(7))
        for seq in range(200):
            lossy.send(Frame(icmp_echo(seq, b"d" * 32, dst_mac=mac)), time.monotonic())
        expected = 200 - lossy.tx_stats.dropped
        assert 30 <= lossy.tx_stats.dropped <= 90
        assert len(echo_replies(lossy, expected)) == expected


def test_corrupted_pings_are_caught_by_the_kernels_checksums(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name) as tap:
        mac = gateway_mac(tap)
        lossy = FaultInjector(tap, FaultConfig(corrupt=1.0, direction=Direction.TX),
                              random.Random(11))
        before = nstat(bed)
        for seq in range(50):
            lossy.send(Frame(icmp_echo(seq, b"c" * 32, dst_mac=mac)), time.monotonic())
        assert lossy.tx_stats.corrupted == 50
        assert echo_replies(lossy, 1, timeout=1.0) == set()
        after = nstat(bed)
        caught = sum(after.get(k, 0) - before.get(k, 0)
                     for k in ("IpInHdrErrors", "IcmpInCsumErrors", "IpInAddrErrors",
                               "IpInUnknownProtos", "IpInTruncatedPkts", "IpInDiscards"))
        assert caught == 50  # each one counted by the kernel as a header or checksum error


def test_delayed_pings_arrive_after_their_delay(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name) as tap:
        mac = gateway_mac(tap)
        lossy = FaultInjector(tap, FaultConfig(delay=(0.2, 0.2), direction=Direction.TX),
                              random.Random(1))
        start = time.monotonic()
        lossy.send(Frame(icmp_echo(1, b"x", dst_mac=mac)), start)
        deadline = lossy.next_deadline()
        assert deadline is not None and deadline == pytest.approx(start + 0.2)
        assert echo_replies(lossy, 1, timeout=10.0) == {1}  # returns at the reply
        assert time.monotonic() - start >= 0.2
