"""The vhost-user device end to end against a fake front-end: real socket, memfd, eventfds.

:class:`FakeFrontEnd` plays QEMU on a socketpair: it shares a memfd as guest memory, sets up
both rings with :class:`FakeDriver` playing the guest's driver, and kicks and reads the
device's interrupts through eventfds — everything QEMU and the guest do, minus the VM.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.link.packets import gso_tcp, partial_tcp, tcp_frame
from tests.link.test_vhost_user_virtqueue import GPA, UVA, Buffer, FakeDriver
from vipernet.link.errors import DeviceClosed, LinkProtocolError, LinkUsageError
from vipernet.link.frame import Frame, GsoType, Offload
from vipernet.link.offload import complete_checksum
from vipernet.link.vhost_user import OFFERED, Feature, VhostUserDevice
from vipernet.link.vhost_user.protocol import (
    FLAG_NEED_REPLY,
    HEADER,
    VERSION,
    ProtocolFeature,
    RegionSpec,
    Request,
    address_payload,
    encode_message,
    memory_table_payload,
    state_payload,
    u64_payload,
)
from vipernet.link.virtio import build_vnet_hdr, parse_vnet_hdr
from vipernet.wire.checksum import internet_checksum

MEM_SIZE = 4 << 20
RX_SIZE, TX_SIZE = 64, 16
RX_RING, TX_RING = 0, 0x8000  # ring offsets in guest memory
RX_DATA, TX_DATA = 0x10000, 0x200000
GSO = Offload(needs_csum=True, csum_start=34, csum_offset=16, gso_type=GsoType.TCPV4,
              gso_size=1448, hdr_len=66)


class FakeFrontEnd:
    """QEMU's side of the control socket, plus the guest driver of both rings."""

    def __init__(self, sock: socket.socket, device: VhostUserDevice) -> None:
        self.sock = sock
        self.device = device
        sock.settimeout(5)
        self.memfd = os.memfd_create("guest-ram")
        os.ftruncate(self.memfd, MEM_SIZE)
        self.mem = mmap.mmap(self.memfd, MEM_SIZE)
        self.kicks = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.calls = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.rx = FakeDriver(self.mem, ring_offset=RX_RING, size=RX_SIZE, data_offset=RX_DATA)
        self.tx = FakeDriver(self.mem, ring_offset=TX_RING, size=TX_SIZE, data_offset=TX_DATA)

    def close(self) -> None:
        for fd in [*self.kicks, *self.calls, self.memfd]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.mem.close()
        self.sock.close()

    def send(self, request: int, payload: bytes = b"", fds: tuple[int, ...] = (), *,
             flags: int = VERSION) -> None:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.sock.sendmsg([encode_message(request, payload, flags=flags)], ancillary)
        self.device.receive(time.monotonic())

    def reply(self) -> tuple[int, bytes]:
        head = self.sock.recv(HEADER.size, socket.MSG_WAITALL)
        request, flags, size = HEADER.unpack(head)
        assert flags & 4, "a reply carries the REPLY flag"
        return request, self.sock.recv(size, socket.MSG_WAITALL) if size else b""

    def ask_u64(self, request: int, payload: bytes = b"", *, flags: int = VERSION) -> int:
        self.send(request, payload, flags=flags)
        got, body = self.reply()
        assert got == request
        return int(struct.unpack("=Q", body)[0])

    def bring_up(self, features: int = int(OFFERED), *, enable: bool = True) -> None:
        offered = self.ask_u64(Request.GET_FEATURES)
        assert offered == int(OFFERED)
        protocol = self.ask_u64(Request.GET_PROTOCOL_FEATURES)
        assert protocol & ProtocolFeature.REPLY_ACK
        self.send(Request.SET_PROTOCOL_FEATURES, u64_payload(protocol))
        assert self.ask_u64(Request.GET_QUEUE_NUM) == 1
        self.send(Request.SET_OWNER)
        assert self.ask_u64(Request.SET_FEATURES, u64_payload(features),
                            flags=VERSION | FLAG_NEED_REPLY) == 0
        table = memory_table_payload([RegionSpec(GPA, MEM_SIZE, UVA, 0)])
        self.send(Request.SET_MEM_TABLE, table, (self.memfd,), flags=VERSION | FLAG_NEED_REPLY)
        assert self.reply() == (Request.SET_MEM_TABLE, bytes(8))
        for index, driver in ((0, self.rx), (1, self.tx)):
            self.send(Request.SET_VRING_NUM, state_payload(index, driver.size))
            self.send(Request.SET_VRING_BASE, state_payload(index, driver.avail_idx))
            self.send(Request.SET_VRING_ADDR, address_payload(
                index, driver.desc_uva, driver.used_uva, driver.avail_uva))
            self.send(Request.SET_VRING_KICK, u64_payload(index), (self.kicks[index],))
            self.send(Request.SET_VRING_CALL, u64_payload(index), (self.calls[index],))
            if enable:
                self.send(Request.SET_VRING_ENABLE, state_payload(index, 1))

    def kick(self, index: int) -> None:
        os.eventfd_write(self.kicks[index], 1)

    def interrupted(self, index: int) -> bool:
        try:
            os.eventfd_read(self.calls[index])
        except BlockingIOError:
            return False
        return True

    def transmit(self, frame: bytes, offload: Offload | None = None, **kw: bool) -> None:
        self.tx.post([Buffer(build_vnet_hdr(offload, 12)), Buffer(frame)], **kw)

    def received(self) -> list[tuple[bytes, Offload | None, int]]:
        """Frames the device put into the RX ring: (frame, offload, num_buffers)."""
        out = []
        used = self.rx.take_used()
        i = 0
        while i < len(used):
            head, length = used[i]
            first = self.rx.written(head, length)
            count = struct.unpack_from("<H", first, 10)[0]
            data = first + b"".join(self.rx.written(h, n) for h, n in used[i + 1:i + count])
            out.append((data[12:], parse_vnet_hdr(data[:10]), count))
            i += count
        return out


@pytest.fixture
def rig() -> Iterator[FakeFrontEnd]:
    ours, theirs = socket.socketpair()
    device = VhostUserDevice(name="vhost-test", conn=ours, reconnect=False)
    front = FakeFrontEnd(theirs, device)
    yield front
    device.close()
    front.close()


def frame_of(size: int, fill: int = 0x41) -> bytes:
    return b"\x52\x54\x00\x12\x34\x56\x52\x54\x00\xab\xcd\xef\x08\x00" + bytes([fill]) * (size - 14)


def readable(fd: int | None, timeout: float = 0.0) -> bool:
    assert fd is not None
    return bool(select.select([fd], [], [], timeout)[0])


# -- bring-up and the data path -------------------------------------------------------------------


def test_negotiation_sets_capabilities_from_what_the_guest_accepted(rig: FakeFrontEnd) -> None:
    device = rig.device
    assert device.capabilities.tso and device.capabilities.tx_csum_offload  # offered, before
    rig.bring_up(int(OFFERED & ~Feature.GUEST_TSO4))
    assert device.negotiated == int(OFFERED & ~Feature.GUEST_TSO4)
    assert not device.capabilities.tso and device.capabilities.tx_csum_offload
    assert device.capabilities.max_frame == 1514
    assert device.wait_ready(1.0)


def test_guest_frames_come_out_with_their_offloads(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    device = rig.device
    frames = [frame_of(60, 1), frame_of(1514, 2), frame_of(30000, 3)]
    rig.transmit(frames[0])
    rig.transmit(frames[1], indirect=True)
    rig.transmit(frames[2], GSO)
    rig.kick(1)
    assert readable(device.fileno(), 1.0)
    got = device.receive(time.monotonic())
    assert [bytes(f.data) for f in got] == frames
    assert [f.offload for f in got] == [None, None, GSO]
    assert [n for _, n in rig.tx.take_used()] == [0, 0, 0]
    assert rig.interrupted(1)
    assert not readable(device.fileno())  # the kick was consumed
    assert device.counters.rx_frames == 3 and device.counters.rx_bytes == sum(map(len, frames))


def test_frames_to_the_guest_fill_mergeable_buffers_and_raise_an_interrupt(
        rig: FakeFrontEnd) -> None:
    rig.bring_up()
    for _ in range(40):
        rig.rx.post([Buffer(size=1526)])
    rig.kick(0)
    device = rig.device
    device.receive(time.monotonic())
    big = gso_tcp(b"z" * 20000, 1448)
    device.send(Frame(frame_of(100)), time.monotonic())
    assert rig.interrupted(0)
    device.send(big, time.monotonic())
    got = rig.received()
    assert got[0] == (frame_of(100), None, 1)
    data, offload, buffers = got[1]
    assert data == bytes(big.data) and offload == big.offload and buffers > 10
    assert device.counters.tx_frames == 2


def test_frames_wait_for_rx_buffers_and_go_when_the_guest_posts_some(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    device = rig.device
    frames = [frame_of(500, i) for i in range(5)]
    for frame in frames:
        device.send(Frame(bytearray(frame)), time.monotonic())
    assert rig.received() == [] and device.counters.backlogged == 5
    assert device.next_deadline() is not None  # a safety retry even without a kick
    for _ in range(8):
        rig.rx.post([Buffer(size=1526)])
    rig.kick(0)
    assert readable(device.fileno(), 1.0)
    device.receive(time.monotonic())
    assert [d for d, _, _ in rig.received()] == frames
    assert device.counters.tx_frames == 5 and device.counters.tx_drops == 0
    assert rig.interrupted(0)


def test_offloads_the_guest_declined_are_done_in_software(rig: FakeFrontEnd) -> None:
    rig.bring_up(int(OFFERED & ~(Feature.GUEST_TSO4 | Feature.GUEST_TSO6 | Feature.GUEST_CSUM)))
    for _ in range(40):
        rig.rx.post([Buffer(size=1526)])
    device = rig.device
    device.send(gso_tcp(b"q" * 5000, 1000), time.monotonic())
    device.send(partial_tcp(b"partial"), time.monotonic())
    got = rig.received()
    assert [len(d) for d, _, _ in got] == [54 + 1000] * 5 + [54 + 7]
    assert all(offload is None for _, offload, _ in got)
    for data, _, _ in got:
        ip_len = struct.unpack_from("!H", data, 16)[0]
        segment = data[34:14 + ip_len]
        pseudo = data[26:34] + b"\x00\x06" + len(segment).to_bytes(2, "big")
        assert internet_checksum(pseudo + segment) == 0  # a complete, valid TCP checksum
    assert got[-1][0] == complete_checksum(partial_tcp(b"partial"))


def test_tcp_over_ipv6_gso_to_a_guest_without_tso6_is_a_counted_drop(rig: FakeFrontEnd) -> None:
    rig.bring_up(int(OFFERED & ~Feature.GUEST_TSO6))
    rig.rx.post([Buffer(size=1526)])
    v6 = Offload(needs_csum=True, csum_start=54, csum_offset=16, gso_type=GsoType.TCPV6,
                 gso_size=1400, hdr_len=74)
    rig.device.send(Frame(tcp_frame(b"x" * 3000), v6), time.monotonic())
    assert rig.device.counters.tx_drops == 1 and rig.received() == []


def test_disabled_rings_discard_tx_and_take_no_rx(rig: FakeFrontEnd) -> None:
    rig.bring_up(enable=False)
    device = rig.device
    rig.rx.post([Buffer(size=1526)])
    device.send(Frame(frame_of(100)), time.monotonic())
    assert device.counters.tx_drops == 1 and rig.received() == []
    rig.transmit(frame_of(100))
    assert device.receive(time.monotonic()) == []
    assert device.counters.rx_disabled == 1 and rig.tx.take_used() == [(0, 0)]


def test_oversized_frames_from_the_stack_are_a_usage_error(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    with pytest.raises(LinkUsageError):
        rig.device.send(Frame(bytes(70000)), time.monotonic())


# -- guest mistakes ---------------------------------------------------------------------------


def test_descriptors_outside_guest_memory_are_counted_drops(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    device = rig.device
    tx = rig.tx
    head = tx.free.pop(0)
    tx.write_desc(tx.desc_off, head, GPA + MEM_SIZE - 16, 4096, 0, 0)
    tx.put_head(head)
    rig.transmit(frame_of(80))
    got = device.receive(time.monotonic())
    assert [bytes(f.data) for f in got] == [frame_of(80)]
    assert device.counters.bad_chains == 1


def test_a_ring_the_guest_overruns_is_stopped_not_crashed_on(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    device = rig.device
    rig.tx.avail_idx = TX_SIZE + 5
    rig.tx.publish()
    assert device.receive(time.monotonic()) == []
    session = device.session
    assert session is not None and session.rings[1].broken is not None
    assert device.receive(time.monotonic()) == []


# -- the control plane ----------------------------------------------------------------------


def test_refused_requests_get_a_failure_reply(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    assert rig.ask_u64(Request.SET_VRING_NUM, state_payload(0, 300),
                       flags=VERSION | FLAG_NEED_REPLY) == 1
    assert rig.ask_u64(Request.SET_VRING_NUM, state_payload(7, 256),
                       flags=VERSION | FLAG_NEED_REPLY) == 1
    assert rig.ask_u64(Request.SET_LOG_BASE, bytes(16), flags=VERSION | FLAG_NEED_REPLY) == 1
    assert rig.ask_u64(Request.SET_FEATURES, u64_payload(1 << 63),
                       flags=VERSION | FLAG_NEED_REPLY) == 1
    rig.send(55, b"unknown", flags=VERSION)  # no reply wanted: ignored
    assert rig.ask_u64(Request.GET_QUEUE_NUM) == 1  # and the session goes on


def test_a_memory_table_the_file_cannot_back_is_refused_and_the_old_one_kept(
        rig: FakeFrontEnd) -> None:
    rig.bring_up()
    too_big = memory_table_payload([RegionSpec(GPA, MEM_SIZE * 2, UVA, 0)])
    rig.send(Request.SET_MEM_TABLE, too_big, (rig.memfd,), flags=VERSION | FLAG_NEED_REPLY)
    assert rig.reply() == (Request.SET_MEM_TABLE, (1).to_bytes(8, "little"))
    rig.transmit(frame_of(64))
    assert [bytes(f.data) for f in rig.device.receive(time.monotonic())] == [frame_of(64)]


def test_stop_reports_the_position_and_a_reset_guest_starts_over_in_new_memory(
        rig: FakeFrontEnd) -> None:
    rig.bring_up()
    device = rig.device
    for i in range(3):
        rig.transmit(frame_of(100, i))
    assert len(device.receive(time.monotonic())) == 3
    rig.send(Request.GET_VRING_BASE, state_payload(1, 0))
    request, body = rig.reply()
    assert request == Request.GET_VRING_BASE and struct.unpack("=II", body) == (1, 3)
    rig.send(Request.GET_VRING_BASE, state_payload(0, 0))
    assert struct.unpack("=II", rig.reply()[1]) == (0, 0)
    rig.transmit(frame_of(100))
    assert device.receive(time.monotonic()) == []  # stopped: not looked at
    # the guest reboots: new memory, fresh rings
    rig.mem.close()
    os.close(rig.memfd)
    rig.memfd = os.memfd_create("guest-ram-2")
    os.ftruncate(rig.memfd, MEM_SIZE)
    rig.mem = mmap.mmap(rig.memfd, MEM_SIZE)
    rig.rx = FakeDriver(rig.mem, ring_offset=RX_RING, size=RX_SIZE, data_offset=RX_DATA)
    rig.tx = FakeDriver(rig.mem, ring_offset=TX_RING, size=TX_SIZE, data_offset=TX_DATA)
    rig.bring_up()
    rig.transmit(frame_of(99))
    assert [bytes(f.data) for f in device.receive(time.monotonic())] == [frame_of(99)]
    rig.rx.post([Buffer(size=1526)])
    device.send(Frame(frame_of(98)), time.monotonic())
    assert [d for d, _, _ in rig.received()] == [frame_of(98)]


def test_front_end_going_away_closes_a_connected_device(rig: FakeFrontEnd) -> None:
    rig.bring_up()
    rig.sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(DeviceClosed):
        rig.device.receive(time.monotonic())
    with pytest.raises(DeviceClosed):
        rig.device.send(Frame(frame_of(60)), time.monotonic())


def test_garbage_on_the_control_socket_is_a_protocol_error_then_closed(
        rig: FakeFrontEnd) -> None:
    rig.sock.sendall(HEADER.pack(1, 0x77, 0))
    with pytest.raises(LinkProtocolError):
        rig.device.receive(time.monotonic())
    with pytest.raises(DeviceClosed):
        rig.device.receive(time.monotonic())
    assert rig.device.counters.protocol_errors == 1


def test_a_listening_device_takes_the_next_front_end_after_a_disconnect(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "vu.sock")
    device = VhostUserDevice.listen(path)
    fronts: list[FakeFrontEnd] = []
    try:
        for round_ in range(2):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            front = FakeFrontEnd(sock, device)
            fronts.append(front)
            assert readable(device.fileno(), 1.0)
            device.receive(time.monotonic())
            assert device.connected
            front.bring_up()
            front.transmit(frame_of(70, round_))
            assert [bytes(f.data) for f in device.receive(time.monotonic())] == [
                frame_of(70, round_)]
            front.close()
            device.receive(time.monotonic())
            assert not device.connected
            assert device.receive(time.monotonic()) == []
            device.send(Frame(frame_of(60)), time.monotonic())  # nobody there: dropped
        assert device.counters.sessions == 2
    finally:
        device.close()
        for front in fronts:
            with contextlib.suppress(OSError, ValueError):
                front.close()
    assert not os.path.exists(path)
