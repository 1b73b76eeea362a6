"""FaultInjector: seeded impairment statistics over a memory pair with a virtual clock."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.link.packets import ETH_LEN, gso_tcp, partial_tcp, tcp_frame
from vipernet.link.errors import LinkUsageError
from vipernet.link.faults import Direction, FaultConfig, FaultInjector
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.link.memory import MemoryDevice, MemoryLink
from vipernet.wire.errors import WireError
from vipernet.wire.ipv4 import parse_ipv4
from vipernet.wire.tcp import parse_tcp

TSO = DeviceCapabilities(mtu=1500, tx_csum_offload=True, tso=True, max_frame=65535 + 14)
N = 10_000


def numbered(i: int) -> Frame:
    return Frame(tcp_frame(i.to_bytes(4, "big") * 8, seq=i * 32, ident=i & 0xFFFF))


def number_of(frame: Frame) -> int:
    return int.from_bytes(frame.data[-32:-28], "big")


def checksums_ok(data: bytes | bytearray | memoryview) -> bool:
    try:
        ip, l4 = parse_ipv4(memoryview(data)[ETH_LEN:])
        parse_tcp(l4, src=ip.src, dst=ip.dst)
    except WireError:
        return False
    return True


def run(config: FaultConfig, seed: int = 1, n: int = N,
        step: float = 0.001) -> tuple[FaultInjector, list[Frame]]:
    """Send n numbered frames one per `step` of virtual time; collect everything b gets."""
    a, b = MemoryLink.pair()
    lossy = FaultInjector(a, config, random.Random(seed))
    got: list[Frame] = []
    now = 0.0
    for i in range(n):
        lossy.send(numbered(i), now)
        lossy.receive(now)  # flushes held outbound frames that are due
        got.extend(b.receive(now))
        now += step
    while lossy.held():
        deadline = lossy.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        lossy.receive(now)
        got.extend(b.receive(now))
    return lossy, got


def test_drop_five_percent_loses_about_five_percent_of_ten_thousand_frames() -> None:
    lossy, got = run(FaultConfig(drop=0.05))
    assert 400 <= N - len(got) <= 600
    assert lossy.tx_stats.dropped == N - len(got)
    assert lossy.tx_stats.frames == N
    assert [number_of(f) for f in got] == sorted(number_of(f) for f in got)


def test_duplicates_arrive_twice_and_are_counted() -> None:
    lossy, got = run(FaultConfig(duplicate=0.03))
    numbers = [number_of(f) for f in got]
    doubled = len(numbers) - len(set(numbers))
    assert 200 <= doubled <= 400
    assert doubled == lossy.tx_stats.duplicated
    assert set(numbers) == set(range(N))


def test_reordering_lets_later_frames_overtake_and_loses_nothing() -> None:
    lossy, got = run(FaultConfig(reorder=0.02, reorder_hold=0.005))
    numbers = [number_of(f) for f in got]
    overtaken = sum(1 for x, y in itertools.pairwise(numbers) if y < x)
    assert sorted(numbers) == list(range(N))
    assert 150 <= lossy.tx_stats.reordered <= 250
    assert overtaken >= lossy.tx_stats.reordered * 0.9


def test_every_corrupted_frame_is_caught_by_a_checksum() -> None:
    lossy, got = run(FaultConfig(corrupt=0.02))
    bad = [f for f in got if not checksums_ok(f.data)]
    assert 150 <= len(bad) <= 250
    assert len(bad) == lossy.tx_stats.corrupted
    for frame in got:
        if checksums_ok(frame.data):
            assert frame.data == numbered(number_of(frame)).data


def test_a_partial_checksum_frame_is_completed_before_it_is_corrupted() -> None:
    a, b = MemoryLink.pair(TSO)
    lossy = FaultInjector(a, FaultConfig(corrupt=1.0), random.Random(3))
    for i in range(50):
        lossy.send(partial_tcp(bytes([i]) * 100), 0.0)
    got = b.receive(0.0)
    assert len(got) == 50
    assert all(f.offload is None and not checksums_ok(f.data) for f in got)


def test_delay_holds_frames_until_their_time() -> None:
    a, b = MemoryLink.pair()
    lossy = FaultInjector(a, FaultConfig(delay=(0.010, 0.020)), random.Random(5))
    lossy.send(numbered(1), 0.0)
    assert b.receive(0.0) == []
    deadline = lossy.next_deadline()
    assert deadline is not None and 0.010 <= deadline <= 0.020
    lossy.receive(deadline - 1e-6)
    assert b.receive(deadline) == []
    lossy.receive(deadline)
    assert [number_of(f) for f in b.receive(deadline)] == [1]
    assert lossy.next_deadline() is None


def test_inbound_impairment_applies_to_received_frames_only() -> None:
    a, b = MemoryLink.pair()
    lossy = FaultInjector(b, FaultConfig(drop=1.0, direction=Direction.RX), random.Random(0))
    lossy.send(numbered(1), 0.0)
    assert len(a.receive(0.0)) == 1  # outbound untouched
    a.send(numbered(2), 0.0)
    assert lossy.receive(0.0) == []
    assert lossy.rx_stats.dropped == 1 and lossy.tx_stats.frames == 0


def test_inbound_delay_is_released_by_a_later_receive() -> None:
    a, b = MemoryLink.pair()
    lossy = FaultInjector(b, FaultConfig(delay=(0.5, 0.5), direction=Direction.RX),
                          random.Random(0))
    a.send(numbered(7), 0.0)
    assert lossy.receive(0.0) == []
    assert lossy.next_deadline() == 0.5
    assert [number_of(f) for f in lossy.receive(0.5)] == [7]


def test_tso_is_hidden_and_gso_frames_are_impaired_per_segment() -> None:
    a, b = MemoryLink.pair(TSO)
    lossy = FaultInjector(b, FaultConfig(drop=0.0, direction=Direction.RX), random.Random(0))
    assert not lossy.capabilities.tso and lossy.capabilities.max_frame == 1514
    assert lossy.capabilities.tx_csum_offload
    a.send(gso_tcp(b"s" * 14480, 1448), 0.0)
    got = lossy.receive(0.0)
    assert len(got) == 10 and lossy.rx_stats.frames == 10
    assert all(checksums_ok(f.data) for f in got)


def test_the_same_seed_replays_the_same_impairments() -> None:
    config = FaultConfig(drop=0.1, duplicate=0.05, reorder=0.05, corrupt=0.05,
                         delay=(0.0, 0.003))
    first = [bytes(f.data) for f in run(config, seed=42, n=2000)[1]]
    second = [bytes(f.data) for f in run(config, seed=42, n=2000)[1]]
    third = [bytes(f.data) for f in run(config, seed=43, n=2000)[1]]
    assert first == second
    assert first != third


@pytest.mark.parametrize("bad", [dict(drop=1.5), dict(corrupt=-0.1), dict(delay=(0.2, 0.1)),
                                 dict(reorder_hold=-1.0)])
def test_nonsense_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(LinkUsageError):
        FaultConfig(**bad)  # type: ignore[arg-type]


def test_held_frames_beyond_the_cap_are_dropped_and_counted() -> None:
    a, _ = MemoryLink.pair()
    lossy = FaultInjector(a, FaultConfig(delay=(1.0, 1.0), max_held=3), random.Random(0))
    for i in range(5):
        lossy.send(numbered(i), 0.0)
    assert lossy.held() == 3 and lossy.tx_stats.overflow == 2


def test_close_closes_the_inner_device() -> None:
    a, _ = MemoryLink.pair()
    lossy = FaultInjector(a, FaultConfig(), random.Random(0))
    lossy.close()
    assert isinstance(lossy.inner, MemoryDevice)
    with pytest.raises(Exception, match="closed"):
        a.send(numbered(1), 0.0)
