"""PcapWriter and CapturingDevice: files tshark reads without complaint."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from tests.link.packets import (
    arp_request,
    gso_tcp,
    icmp_echo,
    partial_tcp,
    tcp_frame,
    udp_frame,
)
from tests.link.tshark import tshark_count, tshark_problems
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.link.memory import MemoryLink
from vipernet.link.pcap import CapturingDevice, PcapWriter

TSO = DeviceCapabilities(mtu=1500, tx_csum_offload=True, tso=True, max_frame=65535 + 14)


def read_pcap(raw: bytes) -> tuple[tuple[int, ...], list[tuple[int, int, int, bytes]]]:
    header = struct.unpack_from("<IHHiIII", raw)
    records = []
    pos = 24
    while pos < len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, pos)
        records.append((sec, usec, orig, raw[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return header, records


def capture_traffic(path: Path, *extra: Frame) -> int:
    """Frames both ways across a capturing TSO-capable memory pair; returns frames captured."""
    a, b = MemoryLink.pair(TSO)
    frames = [Frame(arp_request()), Frame(icmp_echo(1, b"p" * 56)), partial_tcp(b"abc"),
              gso_tcp(bytes(range(256)) * 234, 1448, seq=10), Frame(udp_frame(b"hi")), *extra]
    with PcapWriter(path) as writer:
        cap = CapturingDevice(a, writer)
        for frame in frames:
            cap.send(frame, 0.0)
            b.send(frame, 0.0)  # the same, arriving: partial checksums on the receive side
        received = cap.receive(0.0)
        assert len(received) == len(frames)
        assert any(f.offload is not None and f.offload.needs_csum for f in received)
        cap.close()
    return 2 * len(frames)


@pytest.mark.testbed
def test_tshark_reads_our_capture_with_no_malformed_packet_or_bad_checksum(
        tmp_path: Path) -> None:
    path = tmp_path / "clean.pcap"
    count = capture_traffic(path)
    assert tshark_problems(path) == []
    assert tshark_count(path) == count


@pytest.mark.testbed
def test_tshark_check_does_flag_a_really_bad_checksum(tmp_path: Path) -> None:
    bad = bytearray(tcp_frame(b"abcdef"))
    bad[-1] ^= 0x01
    path = tmp_path / "bad.pcap"
    capture_traffic(path, Frame(bytes(bad)))
    problems = tshark_problems(path)
    assert len(problems) == 1 and "Bad checksum" in problems[0]


@pytest.mark.testbed
def test_random_payloads_that_look_like_rtcp_or_sit_on_a_guessed_port_are_no_problem(
        tmp_path: Path) -> None:
    """Random test data is not misread as broken RTCP (0x80, 200..204 ...) or EtherNet/IP
    (port 44818): only our own layers are judged.  The old check failed on these frames."""
    rtcp_like = bytes([0x81, 201, 0, 7]) + bytes(28) + bytes([0x81, 202, 0, 50])
    path = tmp_path / "guesses.pcap"
    capture_traffic(path, Frame(udp_frame(rtcp_like, sport=50000, dport=41000)),
                    Frame(udp_frame(b"\xff" * 30, sport=44818, dport=50000, ident=2)))
    assert tshark_problems(path) == []


def test_records_carry_wall_clock_microseconds_and_the_frame_bytes() -> None:
    buf = io.BytesIO()
    times = iter([1000.0, 1700000000.123456, 50.9999999])
    writer = PcapWriter(buf, clock=lambda: next(times))
    writer.write(b"\x01" * 60)
    writer.write(b"\x02" * 70)
    writer.close()
    header, records = read_pcap(buf.getvalue())
    assert header == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    assert records == [(1700000000, 123456, 60, b"\x01" * 60),
                       (50, 999999, 70, b"\x02" * 70)]


def test_frames_longer_than_snaplen_are_cut_but_keep_their_length() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=100) as writer:
        writer.write(bytes(150), timestamp=5.5)
    _, [(sec, usec, orig, data)] = read_pcap(buf.getvalue())
    assert (sec, usec, orig, len(data)) == (5, 500000, 150, 100)


def test_a_failing_file_stops_the_capture_without_breaking_the_link() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    writer = PcapWriter(Full())
    a, b = MemoryLink.pair()
    cap = CapturingDevice(a, writer)
    cap.send(Frame(arp_request()), 0.0)
    assert len(b.receive(0.0)) == 1
    assert writer.write_errors == 1 and writer.records == 0


def test_the_writer_flushes_on_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "flush.pcap"
    clock = [100.0]
    writer = PcapWriter(path, clock=lambda: clock[0], flush_interval=1.0)
    writer.write(bytes(60))
    size_before = path.stat().st_size
    clock[0] = 101.5
    writer.write(bytes(60))
    assert path.stat().st_size == 24 + 2 * (16 + 60) > size_before
    writer.close()


def test_a_quiet_capturing_device_asks_to_be_woken_to_flush(tmp_path: Path) -> None:
    path = tmp_path / "quiet.pcap"
    a, _ = MemoryLink.pair()
    with PcapWriter(path, flush_interval=1.0, clock=lambda: 0.0) as writer:
        cap = CapturingDevice(a, writer)
        cap.send(Frame(arp_request()), 10.0)
        assert cap.next_deadline() == 11.0
        assert path.stat().st_size == 0  # still in the buffer
        cap.receive(11.0)
        assert path.stat().st_size == 24 + 16 + 42
        assert cap.next_deadline() is None
