"""MemoryLink: two devices back to back."""

from __future__ import annotations

import pytest

from tests.link.packets import gso_tcp, partial_tcp, tcp_frame
from vipernet.link.errors import DeviceClosed, LinkUsageError
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.link.memory import MemoryLink

TSO = DeviceCapabilities(mtu=1500, tx_csum_offload=True, tso=True, max_frame=65535 + 14)


def test_what_a_sends_b_receives_in_order_and_vice_versa() -> None:
    a, b = MemoryLink.pair()
    assert a.fileno() is None and b.next_deadline() is None
    for i in range(3):
        a.send(Frame(bytes([i]) * 60), 0.0)
    b.send(Frame(b"\x09" * 60), 0.0)
    assert [f.data[0] for f in b.receive(0.0)] == [0, 1, 2]
    assert b.receive(0.0) == []
    assert [f.data[0] for f in a.receive(0.0)] == [9]
    assert a.counters.tx_frames == 3 and b.counters.rx_frames == 3
    assert b.counters.rx_bytes == 180


def test_a_reused_send_buffer_does_not_change_the_delivered_frame() -> None:
    a, b = MemoryLink.pair()
    buf = bytearray(b"\x01" * 60)
    a.send(Frame(buf), 0.0)
    buf[:] = b"\x02" * 60
    assert b.receive(0.0)[0].data == b"\x01" * 60


def test_offloads_pass_through_when_the_capabilities_allow_them() -> None:
    a, b = MemoryLink.pair(TSO)
    frame = gso_tcp(b"q" * 9000, 1448)
    a.send(frame, 0.0)
    [got] = b.receive(0.0)
    assert got.offload == frame.offload and got.data == frame.data


def test_without_offloads_partial_checksums_are_completed_and_gso_is_cut() -> None:
    a, b = MemoryLink.pair(DeviceCapabilities(max_frame=65535 + 14))
    a.send(partial_tcp(b"abc"), 0.0)
    a.send(gso_tcp(b"q" * 3000, 1000), 0.0)
    got = b.receive(0.0)
    assert got[0].offload is None and got[0].data == tcp_frame(b"abc")
    assert len(got) == 4 and all(len(f.data) == 14 + 40 + 1000 for f in got[1:])


def test_a_full_queue_drops_and_counts() -> None:
    a, b = MemoryLink.pair(queue_limit=2)
    for _ in range(5):
        a.send(Frame(bytes(60)), 0.0)
    assert len(b.receive(0.0)) == 2
    assert a.counters.tx_drops == 3


def test_oversized_frames_are_a_usage_error() -> None:
    a, _ = MemoryLink.pair()
    with pytest.raises(LinkUsageError):
        a.send(Frame(bytes(1515)), 0.0)


def test_frames_to_a_closed_peer_are_lost_and_a_closed_device_refuses_use() -> None:
    a, b = MemoryLink.pair()
    b.close()
    a.send(Frame(bytes(60)), 0.0)
    assert a.counters.tx_drops == 1
    with pytest.raises(DeviceClosed):
        b.receive(0.0)
    with pytest.raises(DeviceClosed):
        b.send(Frame(bytes(60)), 0.0)


def test_waiting_frames_make_the_receiver_due_at_the_time_they_were_sent() -> None:
    a, b = MemoryLink.pair()
    a.send(Frame(bytes(60)), 5.0)
    a.send(Frame(bytes(60)), 6.0)
    assert b.next_deadline() == 5.0 and a.next_deadline() is None
    b.receive(7.0)
    assert b.next_deadline() is None
