"""Hostile guests on one gateway do not hurt the others.

A gateway serves a well-behaved guest (the kernel of a namespace, on a TAP) and a QEMU
stream listener that hostile "guests" connect to: one sends malformed frames and then
breaks the stream framing, one floods SYNs and UDP datagrams, one (a vipernet stack)
vanishes in the middle of a download.  Each drop is counted on the hostile wire, every
flood stays within the flow limit, a vanished guest's host sockets are closed, and the
kernel guest's download (sha256 checked) works before, during and after.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from tests.gateway.kernel_guest import KernelGuest
from tests.testbed import wait_for
from tests.vm.hostserver import PayloadHttpServer, payload_sha256
from vipernet.gateway import Gateway, GatewayConfig
from vipernet.gateway.ports import StreamListener
from vipernet.link.frame import Frame
from vipernet.link.qemu import StreamDevice, encode_stream_frame
from vipernet.link.tap import TapDevice
from vipernet.slirp import SlirpConfig
from vipernet.stack import Stack, StackConfig
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4
from vipernet.wire.tcp import TcpFlags, TcpHeader, build_tcp
from vipernet.wire.udp import build_udp

pytestmark = pytest.mark.testbed

SIZE = 8 * 1024 * 1024
MAX_FLOWS = 200
GUEST_MAC = bytes.fromhex("525400aabbcc")
GATEWAY_MAC = bytes.fromhex("525400123502")
GUEST, GATEWAY = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")


class Served:
    """A gateway in a thread with the kernel guest and a stream listener."""

    def __init__(self, tmp: Path) -> None:
        self.kernel = KernelGuest("hostile")
        self.http = PayloadHttpServer()
        self.path = str(tmp / "guests.sock")
        self.gateway = Gateway(GatewayConfig(slirp=SlirpConfig(ipv6=False, max_flows=MAX_FLOWS)))
        self.gateway.add_listener(StreamListener(self.path, mtu=1500))
        self.gateway.add_device(TapDevice.open(self.kernel.tap, netns=self.kernel.name))
        self._stop = False
        self._thread = threading.Thread(target=self.gateway.run, args=(lambda: self._stop,),
                                        daemon=True)
        self._thread.start()

    def kernel_downloads(self) -> None:
        out = self.kernel.run(["sh", "-c", f"curl -sf '{self.http.url(SIZE)}' | sha256sum"],
                              timeout=120)
        assert out.stdout.split()[0].decode() == payload_sha256(SIZE)

    def stream_guest(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock

    def ended(self) -> list[tuple[str, str, dict[str, int]]]:
        return list(self.gateway.ended)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=10)
        self.gateway.close()
        self.http.close()
        self.kernel.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bed = Served(tmp_path)
    try:
        yield bed
    finally:
        bed.close()


def _ether(payload: bytes, ethertype: int = EtherType.IPV4) -> bytes:
    return build_ethernet(EthernetHeader(dst=GATEWAY_MAC, src=GUEST_MAC, ethertype=ethertype),
                          payload)


def _syn(sport: int, dport: int) -> bytes:
    tcp = build_tcp(TcpHeader(src_port=sport, dst_port=dport, seq=random.getrandbits(32), ack=0,
                              flags=TcpFlags.SYN, window=65535), b"", src=GUEST, dst=GATEWAY)
    return _ether(build_ipv4(IPv4Header(src=GUEST, dst=GATEWAY, proto=IpProto.TCP), tcp))


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    udp = build_udp(sport, dport, payload, src=GUEST, dst=GATEWAY)
    return _ether(build_ipv4(IPv4Header(src=GUEST, dst=GATEWAY, proto=IpProto.UDP), udp))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_malformed_frames_are_counted_and_a_broken_stream_ends_only_that_guest(
        served: Served) -> None:
    served.kernel_downloads()
    junk = [b"\x00" * 5,  # a runt
            _ether(b"\x00" * 40, ethertype=0x88B5),  # not IP
            _ether(b"\x45" + os.urandom(60)),  # an IPv4 header of noise
            _ether(os.urandom(28), ethertype=EtherType.ARP),
            _ether(b"\x46\x00\x00\x14" + os.urandom(16)),  # options past the header
            *(_ether(os.urandom(random.randrange(1, 1400))) for _ in range(200))]
    hostile = served.stream_guest()
    try:
        hostile.sendall(b"".join(encode_stream_frame(frame) for frame in junk))
        hostile.sendall(struct.pack("!I", 0x7FFFFFFF) + b"garbage")  # framing is gone
        wait_for(lambda: len(served.ended()) == 1, timeout=20, what="the broken guest to end")
    finally:
        hostile.close()
    name, why, counters = served.ended()[0]
    assert "stream" in name and why
    dropped = sum(v for k, v in counters.items() if k.startswith("gateway.guest."))
    assert counters.get("gateway.guest.runt", 0) == 0  # runts are the decoder's to skip
    assert dropped + counters.get("gateway.guest.unrelayed", 0) > 0
    served.kernel_downloads()  # the other guest never noticed
    assert served.gateway.counters["guests_gone"] == 1


def test_syn_and_udp_floods_stay_within_the_flow_limit(served: Served) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    baseline = _open_fds()
    hostile = served.stream_guest()
    try:
        frames = [_syn(10000 + i, served.http.port) for i in range(1000)]
        frames += [_udp(30000 + i, sink.getsockname()[1], b"flood") for i in range(1000)]
        flooding = threading.Thread(target=served.kernel_downloads)
        flooding.start()
        for start in range(0, len(frames), 100):
            hostile.sendall(b"".join(encode_stream_frame(f) for f in frames[start:start + 100]))
        flooding.join(timeout=120)
        wait_for(lambda: len(served.gateway.wires) == 2, what="the flooding guest's wire")
        wire = next(w for w in served.gateway.wires if "stream" in w.name)

        def settled() -> bool:
            counters = wire.snapshot()
            return counters.get("gateway.nat.full", 0) > 0
        wait_for(settled, timeout=30, what="the flow table to fill")
        assert len(wire.slirp.flows) <= MAX_FLOWS
        # Each flow holds at most one host socket, and the HTTP server in this process
        # the other end of each: the fds stay bounded by the flow limit.
        assert _open_fds() - baseline <= 2 * MAX_FLOWS + 16
        served.kernel_downloads()  # still served while the flood's flows are held
    finally:
        hostile.close()
        sink.close()
    wait_for(lambda: len(served.gateway.wires) == 1, what="the flooding guest's wire to end")
    wait_for(lambda: _open_fds() - baseline <= 2, what="its host sockets to close")


def test_a_guest_that_vanishes_mid_download_frees_its_host_socket(served: Served) -> None:
    baseline = _open_fds()
    device = StreamDevice(served.stream_guest(), mtu=1500)
    now = time.monotonic()
    stack = Stack(StackConfig(mac=GUEST_MAC, ip=IPv4Interface("10.0.2.15/24"), gateway=GATEWAY,
                              dns=()), capabilities=device.capabilities, now=now,
                  rng=random.Random(3))
    conn = stack.tcp_socket()
    with contextlib.suppress(BlockingIOError):
        conn.connect((str(GATEWAY), served.http.port), now)
    received = 0
    request = f"GET /data/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    deadline = time.monotonic() + 30
    while received < SIZE // 4:
        assert time.monotonic() < deadline, f"only {received} bytes arrived"
        now = time.monotonic()
        for frame in device.receive(now):
            stack.receive(frame, now)
        stack.poll(now)
        if request and conn.writable:
            request = request[conn.send(request, now):]
        with contextlib.suppress(BlockingIOError):
            received += len(conn.recv(1 << 20))
        for frame in stack.transmit():
            device.send(Frame(frame.data, frame.offload), now)
        time.sleep(0.0005)
    assert _open_fds() > baseline  # the stream and the gateway's host socket
    device.close()  # the guest is gone, its download half done
    wait_for(lambda: len(served.ended()) == 1, what="the vanished guest's wire to end")
    wait_for(lambda: _open_fds() <= baseline, what="its host socket to close")
    served.kernel_downloads()
