"""TapDevice on a real TAP inside a TestBed namespace, against the kernel's ARP and ICMP."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.link.packets import (
    GATEWAY_IP,
    arp_request,
    gso_tcp,
    icmp_echo,
    partial_tcp,
    tcp_frame,
)
from tests.link.tapkit import (
    SYN_ACK,
    answer_arp,
    gateway_mac,
    nstat,
    parse_tcp_frame,
    payload_len,
    tcp_flags,
    wait_frame,
)
from tests.link.tshark import tshark_count, tshark_problems
from tests.testbed import TestBed
from vipernet.link.errors import DeviceBusy, DeviceClosed, LinkError, NoSuchInterface
from vipernet.link.frame import Frame, GsoType
from vipernet.link.netns import in_netns
from vipernet.link.offload import complete_checksum, segment_gso
from vipernet.link.pcap import CapturingDevice, PcapWriter
from vipernet.link.tap import TapDevice
from vipernet.wire.ethernet import EtherType, parse_ethernet
from vipernet.wire.icmp import IcmpEcho, IcmpType, parse_icmp
from vipernet.wire.ipv4 import IpProto, parse_ipv4
from vipernet.wire.tcp import TcpFlags, TcpOptions, parse_tcp

pytestmark = pytest.mark.testbed


@pytest.fixture
def bed() -> Iterator[TestBed]:
    with TestBed("lnk") as b:
        yield b


def test_kernel_answers_our_arp_request_for_the_gateway(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name) as tap:
        assert tap.capabilities.tso and tap.capabilities.max_frame == 65535 + 14
        mac = gateway_mac(tap)
        link = bed.ns(["ip", "-o", "link", "show", bed.tap]).stdout
        assert mac.hex(":") in link
        assert tap.counters.tx_frames == 1 and tap.counters.rx_frames >= 1


def test_kernel_answers_our_icmp_echo_request(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name) as tap:
        mac = gateway_mac(tap)
        payload = os.urandom(56)
        tap.send(Frame(icmp_echo(7, payload, dst_mac=mac)), time.monotonic())

        def is_reply(frame: Frame) -> bool:
            eth, ip_bytes = parse_ethernet(frame.data)
            if eth.ethertype != EtherType.IPV4:
                return False
            ip, _body = parse_ipv4(ip_bytes)
            return ip.proto == IpProto.ICMP and ip.src == GATEWAY_IP

        frame = wait_frame(tap, is_reply)
        _ip, body = parse_ipv4(parse_ethernet(frame.data)[1])
        echo = parse_icmp(body)
        assert isinstance(echo, IcmpEcho) and echo.type == IcmpType.ECHO_REPLY
        assert (echo.seq, echo.payload) == (7, payload)


def test_opening_outside_the_namespace_refuses_instead_of_creating_a_tap(bed: TestBed) -> None:
    with pytest.raises(NoSuchInterface, match=bed.tap):
        TapDevice.open(bed.tap)  # it lives in bed.name, not here
    assert not os.path.exists(f"/sys/class/net/{bed.tap}")
    with pytest.raises(NoSuchInterface, match="namespace"):
        TapDevice.open(bed.tap, netns=bed.name + "-missing")
    with pytest.raises(NoSuchInterface):
        TapDevice.open("nosuchtap0", netns=bed.name)


def test_a_non_tap_interface_is_refused_with_a_link_error(bed: TestBed) -> None:
    with pytest.raises(LinkError, match="not a TAP"):
        TapDevice.open("lo", netns=bed.name)


def test_opening_switches_back_to_the_original_namespace(bed: TestBed) -> None:
    before = os.stat("/proc/thread-self/ns/net").st_ino
    with in_netns(bed.name):
        assert os.stat("/proc/thread-self/ns/net").st_ino != before
    with TapDevice.open(bed.tap, netns=bed.name):
        pass
    assert os.stat("/proc/thread-self/ns/net").st_ino == before


def test_kernel_accepts_our_partial_checksums_and_a_64k_tso_frame(bed: TestBed) -> None:
    """A kernel TCP listener receives, intact, bytes we sent as one 60 KB GSO frame.

    We play a minimal TCP client by hand: SYN, the kernel's SYN-ACK, then one ACK+PSH GSO
    frame with a partial checksum that the kernel must segment and checksum itself.
    """
    with in_netns(bed.name):
        listener = socket.create_server((str(GATEWAY_IP), 0))
    with listener, TapDevice.open(bed.tap, netns=bed.name) as tap:
        port = listener.getsockname()[1]
        mac = gateway_mac(tap)
        iss = 1_000_000
        tap.send(partial_tcp(b"", dst_mac=mac, seq=iss, ack=0, flags=TcpFlags.SYN,
                             dport=port), time.monotonic())

        def is_syn_ack(frame: Frame) -> bool:
            eth, ip_bytes = parse_ethernet(frame.data)
            if eth.ethertype != EtherType.IPV4:
                return False
            ip, body = parse_ipv4(ip_bytes)
            if ip.proto != IpProto.TCP:
                return False
            tcp, _ = parse_tcp(body, src=ip.src, dst=ip.dst, verify_checksum=False)
            return tcp.flags & (TcpFlags.SYN | TcpFlags.ACK) == TcpFlags.SYN | TcpFlags.ACK

        syn_ack = wait_frame(tap, is_syn_ack)
        ip, body = parse_ipv4(parse_ethernet(syn_ack.data)[1])
        tcp, _ = parse_tcp(body, src=ip.src, dst=ip.dst, verify_checksum=False)
        payload = os.urandom(60000)
        tap.send(gso_tcp(payload, 1448, dst_mac=mac, seq=iss + 1, ack=tcp.seq + 1,
                         dport=port), time.monotonic())
        listener.settimeout(5)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            got = b""
            while len(got) < len(payload):
                chunk = conn.recv(65536)
                assert chunk, "connection closed early"
                got += chunk
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert nstat(bed).get("TcpInCsumErrors", 0) == 0


def test_kernel_sends_us_gso_frames_with_partial_checksums_we_can_complete(
        bed: TestBed) -> None:
    run_kernel_gso_flight(bed, None)


def test_a_capture_of_offloaded_traffic_both_ways_reads_clean_in_tshark(bed: TestBed) -> None:
    """GSO frames and partial checksums, ours and the kernel's, are recorded completed."""
    path = bed.workdir / "tap.pcap"
    with PcapWriter(path) as writer:
        run_kernel_gso_flight(bed, writer)
        assert writer.records >= 6
    assert tshark_problems(path) == []
    assert tshark_count(path) == writer.records


def run_kernel_gso_flight(bed: TestBed, writer: PcapWriter | None) -> None:
    """The kernel's TCP, writing to us over a TSO-enabled TAP, hands over frames beyond the
    MTU with partial checksums; completed and cut by vipernet.link.offload they carry
    exactly the bytes the kernel's socket sent."""
    with in_netns(bed.name):
        listener = socket.create_server((str(GATEWAY_IP), 0))
    with listener, TapDevice.open(bed.tap, netns=bed.name) as raw:
        tap: TapDevice | CapturingDevice = raw if writer is None else CapturingDevice(raw, writer)
        port = listener.getsockname()[1]
        mac = gateway_mac(tap)
        iss = 5_000_000
        tap.send(Frame(tcp_frame(b"", dst_mac=mac, seq=iss, ack=0, flags=TcpFlags.SYN,
                                 dport=port, options=TcpOptions(mss=1460))), time.monotonic())
        syn_ack = parse_tcp_frame(wait_frame(tap, lambda f: tcp_flags(f) == SYN_ACK))
        tap.send(Frame(tcp_frame(b"", dst_mac=mac, seq=iss + 1, ack=syn_ack.seq + 1,
                                 flags=TcpFlags.ACK, dport=port)), time.monotonic())
        listener.settimeout(5)
        conn, _ = listener.accept()
        data = os.urandom(40000)
        with conn:
            conn.sendall(data)  # fits the send buffer; the kernel pushes what cwnd allows
            segments: list[Frame] = []
            fd = tap.fileno()
            assert fd is not None
            quiet_until = time.monotonic() + 2.0
            # Collect the kernel's first flight: until 10 segments or it goes quiet (waiting
            # for ACKs we never send).
            while time.monotonic() < quiet_until and sum(map(payload_len, segments)) < 14600:
                select.select([fd], [], [], 0.05)
                for frame in tap.receive(time.monotonic()):
                    if tcp_flags(frame) & TcpFlags.ACK and payload_len(frame):
                        segments.append(frame)
                        quiet_until = time.monotonic() + 0.3
                    else:
                        answer_arp(tap, frame)
        assert any(len(f.data) > 1514 and f.offload is not None
                   and f.offload.gso_type == GsoType.TCPV4 for f in segments)
        received = b""
        for frame in segments:
            assert frame.offload is not None and frame.offload.needs_csum
            for piece in segment_gso(Frame(complete_checksum(frame), frame.offload)):
                ip, body = parse_ipv4(memoryview(piece.data)[14:])
                tcp, payload = parse_tcp(body, src=ip.src, dst=ip.dst)  # checksum verified
                assert len(payload) <= 1460
                offset = (tcp.seq - syn_ack.seq - 1) & 0xFFFFFFFF
                if offset == len(received):  # (we never ACK: retransmissions repeat data)
                    received += bytes(payload)
        assert received == data[:len(received)] and len(received) >= 2 * 1460


def test_without_vnet_header_offloads_are_reset_and_frames_are_plain(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name, vnet_hdr=False) as tap:
        assert not tap.capabilities.tso and tap.capabilities.max_frame == 1514
        mac = gateway_mac(tap)
        # A partial-checksum frame is completed in software before it goes out.
        tap.send(partial_tcp(b"c" * 10, dst_mac=mac), time.monotonic())
        assert tap.counters.tx_frames == 2


def test_a_second_open_of_an_attached_tap_is_device_busy(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name), pytest.raises(DeviceBusy, match="in use"):
        TapDevice.open(bed.tap, netns=bed.name)


def test_the_twelve_byte_header_layout_works_too(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=bed.name, vnet_hdr_len=12) as tap:
        assert tap.vnet_hdr_len == 12
        gateway_mac(tap)
    with pytest.raises(LinkError, match="10 or 12"):
        TapDevice.open(bed.tap, netns=bed.name, vnet_hdr_len=11)


def test_a_closed_device_refuses_use(bed: TestBed) -> None:
    tap = TapDevice.open(bed.tap, netns=bed.name)
    tap.close()
    tap.close()  # idempotent
    with pytest.raises(DeviceClosed):
        tap.receive(0.0)
    with pytest.raises(DeviceClosed):
        tap.send(Frame(arp_request()), 0.0)


def test_a_namespace_can_be_named_by_path(bed: TestBed) -> None:
    with TapDevice.open(bed.tap, netns=f"/run/netns/{bed.name}") as tap:
        gateway_mac(tap)
    with pytest.raises(NoSuchInterface, match="namespace"):
        TapDevice.open(bed.tap, netns="../etc")
