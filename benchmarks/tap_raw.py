"""Raw TAP frame rates: vipernet.link.tap.TapDevice against a bare os.read/os.write loop.

On a throw-away namespace with a TAP (kernel side 10.0.2.2, static neighbour 10.0.2.15), it
measures, for 1514-byte frames with the virtio-net header:

* read  - frames/s draining the TAP queue after the kernel filled it (each 64 KB UDP datagram
          sent from the namespace becomes ~45 IP fragments = 45 frames, so the fill is cheap
          and the timed drain runs alone);
* write - frames/s sending frames addressed to a MAC nobody owns (the kernel drops them at
          once, so this is the cost of our write path plus the kernel's intake);
* write 64 KiB TCPV4 GSO frames (MB/s of payload handed to the kernel, which segments them).

The reference in the same run is the bare loop the device must not be much slower than:
``os.readv`` into a reused buffer, and ``os.writev`` of a fixed header plus the frame.
Needs root (CAP_NET_ADMIN); prints why and exits 0 otherwise.

    PYTHONPATH=src python benchmarks/tap_raw.py [--frames 200000]

Measured on the shared 2-core test machine (Nov 2026; figures halve when it is busy):
read 520-560k frames/s (bare loop 0.9-1.06M, ratio ~0.5), write 0.7-1.4M frames/s (bare
0.94-2.0M, ratio ~0.7), 64 KiB TSO frames 7-15 GB/s of payload handed to the kernel (bare
17-23 GB/s), every GSO frame accepted by the kernel with no checksum error.  The device is
not the bottleneck of the stack: one Python-level TCP segment costs more than one frame here.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vipernet.link.frame import Frame, GsoType, Offload
from vipernet.link.netns import in_netns
from vipernet.link.tap import TapDevice
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4_header
from vipernet.wire.tcp import TcpFlags, TcpHeader, build_tcp

NS = f"vn-bench-lnk-{os.getpid()}"
TAP = f"vtb{os.getpid() % 100000}"
STACK_MAC = "52:54:00:12:34:56"
QUEUE = 20000  # tx queue length of the TAP: frames the kernel may queue for us


def sh(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, capture_output=True)


def ns(*argv: str) -> None:
    sh("ip", "netns", "exec", NS, *argv)


def setup() -> None:
    sh("ip", "netns", "add", NS)
    ns("ip", "link", "set", "lo", "up")
    ns("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
    ns("sysctl", "-qw", f"net.ipv6.conf.{TAP}.disable_ipv6=1")
    ns("ip", "addr", "add", "10.0.2.2/24", "dev", TAP)
    ns("ip", "link", "set", TAP, "txqueuelen", str(QUEUE), "up")
    ns("ip", "neigh", "replace", "10.0.2.15", "lladdr", STACK_MAC, "dev", TAP)


def teardown() -> None:
    sh("ip", "netns", "del", NS, check=False)


def fill(sender: socket.socket, frames: int) -> None:
    """Have the kernel queue about ``frames`` 1514-byte frames toward the TAP."""
    datagram = bytes(64000)  # 64008 bytes of IP payload -> 44 fragments of 1480 + 1 tail
    for _ in range(max(1, frames // 44)):
        sender.sendto(datagram, ("10.0.2.15", 9))


def drain_rate(drain: Callable[[], int], sender: socket.socket, total: int) -> float:
    """Frames/s spent reading, over rounds of fill-then-drain (the fill is not timed)."""
    got = 0
    spent = 0.0
    while got < total:
        fill(sender, QUEUE // 2)
        time.sleep(0.02)  # let the kernel finish queueing
        start = time.perf_counter()
        n = drain()
        spent += time.perf_counter() - start
        if n == 0:
            break
        got += n
    return got / spent if spent else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("tap_raw: needs root and /dev/net/tun; skipped")
        return 0
    setup()
    try:
        return run(args.frames)
    finally:
        teardown()


def run(total: int) -> int:
    with in_netns(NS):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    tap = TapDevice.open(TAP, netns=NS)
    fd = tap.fileno()
    assert fd is not None
    results: list[tuple[str, float, float]] = []

    def device_drain() -> int:
        n = 0
        while True:
            frames = tap.receive(0.0)
            if not frames:
                return n
            n += len(frames)

    buf = bytearray(65536 + 4096)

    def bare_drain() -> int:
        n = 0
        while True:
            try:
                os.readv(fd, (buf,))
            except BlockingIOError:
                return n
            n += 1

    read_dev = drain_rate(device_drain, sender, total)
    read_bare = drain_rate(bare_drain, sender, total)
    results.append(("read 1514 B frames/s", read_dev, read_bare))

    frame = bytes.fromhex("02aabbccddee") + bytes.fromhex("525400123456") + b"\x08\x00"
    frame += bytes(1500)
    f = Frame(frame)
    start = time.perf_counter()
    for _ in range(total):
        tap.send(f, 0.0)
    write_dev = total / (time.perf_counter() - start)
    header = bytes(10)
    start = time.perf_counter()
    for _ in range(total):
        os.writev(fd, (header, frame))
    write_bare = total / (time.perf_counter() - start)
    results.append(("write 1514 B frames/s", write_dev, write_bare))

    # 64 KiB TSO: a TCP segment to a MAC nobody owns is dropped before segmentation, so use
    # the gateway's MAC and a port nobody listens on: the kernel segments nothing (GRO-style
    # receive) but checks and answers with one RST per frame -- the realistic intake path.
    payload_len = 65535 - 20 - 20
    gso = _gso_frame(payload_len)
    rounds = max(200, total // 100)
    start = time.perf_counter()
    for _ in range(rounds):
        tap.send(gso, 0.0)
    gso_dev = rounds * payload_len / (time.perf_counter() - start) / 1e6
    hdr = bytes([1, GsoType.TCPV4]) + (54).to_bytes(2, "little") + (1448).to_bytes(2, "little")
    hdr += (34).to_bytes(2, "little") + (16).to_bytes(2, "little")
    start = time.perf_counter()
    for _ in range(rounds):
        os.writev(fd, (hdr, gso.data))
    gso_bare = rounds * payload_len / (time.perf_counter() - start) / 1e6
    results.append(("write 64 KiB TSO frames, MB/s", gso_dev, gso_bare))
    tap.close()
    sender.close()

    print(f"TAP raw rates ({TAP}, virtio-net header, {total} frames per figure)")
    print(f"{'':34}{'TapDevice':>14}{'bare loop':>14}{'ratio':>8}")
    for label, dev, bare in results:
        ratio = dev / bare if bare else 0.0
        print(f"{label:34}{dev:14,.0f}{bare:14,.0f}{ratio:8.2f}")
    print(f"counters: {tap.counters.as_dict()}")
    kernel = subprocess.run(["ip", "netns", "exec", NS, "nstat", "-az", "TcpInSegs",
                             "TcpOutRsts", "TcpInCsumErrors"],
                            capture_output=True, text=True, check=False).stdout.splitlines()
    print("kernel side (GSO frames it accepted and answered):",
          " ".join("=".join(line.split()[:2]) for line in kernel if line.startswith("Tcp")))
    return 0


def _gso_frame(payload_len: int) -> Frame:
    src, dst = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")
    header = TcpHeader(src_port=40000, dst_port=9, seq=1, ack=1,
                       flags=TcpFlags.PSH | TcpFlags.ACK, window=65535)
    segment = build_tcp(header, bytes(payload_len), src=src, dst=dst, partial_checksum=True)
    ip = build_ipv4_header(IPv4Header(src=src, dst=dst, proto=IpProto.TCP, dont_fragment=True),
                           len(segment))
    eth = _gateway_mac() + bytes.fromhex("525400123456") + b"\x08\x00"
    return Frame(eth + ip + segment, Offload(needs_csum=True, csum_start=34, csum_offset=16,
                                             gso_type=GsoType.TCPV4, gso_size=1448, hdr_len=54))


def _gateway_mac() -> bytes:
    out = subprocess.run(["ip", "netns", "exec", NS, "cat", f"/sys/class/net/{TAP}/address"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return bytes.fromhex(out.replace(":", ""))


if __name__ == "__main__":
    sys.exit(main())
