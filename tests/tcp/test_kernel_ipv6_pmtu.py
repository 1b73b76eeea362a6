"""Path MTU discovery over IPv6 with a real kernel router (RFC 8201).

Topology: the stack on the TAP (SLAAC from the bed's RAs, the kernel side as default
router) -- the bed namespace, forwarding IPv6, whose veth end has MTU 1280 -- a second
namespace holding a sink server at fd0a:3::2 (its own end 1500, so it offers a 1440-byte
MSS).  Our 1500-byte segments (64 KiB TSO6
frames, which the kernel cuts to our 1440-byte MSS) do not fit the veth, so the kernel
router answers Packet Too Big (MTU 1280); the stack must lower the path MTU, shrink the
connection's MSS and resend, and the upload must arrive sha256-equal."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network

import pytest

from tests.tcp.kernel_rig import SERVER, Rig
from tests.testbed import PREFIX6, TestBed, wait_for
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(300)]

FAR = "fd0a:3::2"  # the server, behind the 1280-byte link
ROUTER_FAR = "fd0a:3::1"
MB = 20


@pytest.fixture
def routed() -> Iterator[tuple[Rig, str]]:
    from vipernet.link.tap import TapDevice

    bed = TestBed("pm6")
    far = f"{bed.name}-far"
    closers = []
    try:
        bed.enable_ipv6()
        subprocess.run(["ip", "netns", "add", far], check=True)
        bed.ns(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        # Only the router's side is 1280: the server, on a 1500-byte link itself, offers
        # the full MSS, so only the router can tell us the path is narrower.
        bed.ns(["ip", "link", "add", "pm0", "mtu", "1280", "type", "veth", "peer", "name", "pm1",
                "mtu", "1500", "netns", far])
        bed.ns(["ip", "-6", "addr", "add", f"{ROUTER_FAR}/64", "dev", "pm0", "nodad"])
        bed.ns(["ip", "link", "set", "pm0", "up"])
        for argv in (["ip", "-6", "addr", "add", f"{FAR}/64", "dev", "pm1", "nodad"],
                     ["ip", "link", "set", "pm1", "up"], ["ip", "link", "set", "lo", "up"],
                     ["ip", "-6", "route", "add", f"{PREFIX6}/64", "via", ROUTER_FAR]):
            subprocess.run(["ip", "netns", "exec", far, *argv], check=True)
        tap = TapDevice.open(bed.tap, netns=bed.name)
        closers.append(tap.close)
        stack = Stack(StackConfig(ip6="auto"), capabilities=tap.capabilities,
                      now=time.monotonic(), rng=random.Random(8))
        runtime = Runtime(stack, tap)
        runtime.start_thread()
        closers.append(runtime.close)
        bed.start_router_advertisements()
        prefix = IPv6Network(f"{PREFIX6}/64")
        wait_for(lambda: runtime.call(lambda: stack.nd.addrconf.default_router(
            runtime.clock()) is not None and stack.nd.source_for(IPv6Address(FAR)) in prefix),
            timeout=30, what="SLAAC and a default router")
        yield Rig(bed, stack, runtime, closers, family=10), far
        assert stack.counters["stack.rx.internal_error"] == 0
    finally:
        for close in reversed(closers):
            close()
        subprocess.run(["ip", "netns", "del", far], check=False)
        bed.close()


def test_packet_too_big_from_a_kernel_router_lowers_the_mss_and_the_upload_completes(
        routed: tuple[Rig, str]) -> None:
    rig, far = routed
    env = {**os.environ, "RIG_HOST": FAR}
    sink = rig.bed.start(["ip", "netns", "exec", far, sys.executable, "-c", SERVER, "sink"],
                         inside=False, stdout=subprocess.PIPE, env=env)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    sock = rig.connect(FAR, port)
    conn = sock.connection
    assert conn.smss == 1500 - 60 - 12  # the link's MTU: nothing known about the path yet
    data = os.urandom(1 << 20)
    want = hashlib.sha256()
    for _ in range(MB):
        rig.sendall(sock, data)
        want.update(data)
    rig.shutdown_write(sock)
    answer = bytearray()
    rig.recv_all(sock, answer.extend, timeout=120)
    digest, length = answer.decode().split()
    assert (digest, int(length)) == (want.hexdigest(), MB << 20)
    counters = rig.stack.counters.snapshot()
    assert counters["icmp6.rx.packet_too_big"] >= 1
    assert counters["ipv6.pmtu.lowered"] >= 1
    assert counters["tcp.mss_lowered"] == 1
    assert conn.smss == 1280 - 60 - 12
    assert rig.call(lambda: rig.stack.ipv6.path_mtu(IPv6Address(FAR), rig.now())) == 1280
    rig.close(sock)
