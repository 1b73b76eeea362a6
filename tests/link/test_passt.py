"""StreamDevice against passt, a real peer speaking the QEMU stream protocol."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from tests.link.packets import GATEWAY_IP, STACK_MAC, arp_request, icmp_echo
from tests.testbed import TestBed, require_binary, wait_for
from vipernet.link.frame import Frame
from vipernet.link.qemu import StreamDevice
from vipernet.wire.arp import ArpOp, parse_arp
from vipernet.wire.ethernet import EtherType, parse_ethernet
from vipernet.wire.icmp import IcmpEcho, IcmpType, parse_icmp
from vipernet.wire.ipv4 import IpProto, parse_ipv4

pytestmark = pytest.mark.testbed


@pytest.fixture
def passt() -> Iterator[StreamDevice]:
    binary = require_binary("passt")
    with TestBed("lnk") as bed:
        # passt copies its addresses from an interface with a default route, and answers
        # pings through ping sockets, which the namespace must allow.
        bed.ns(["ip", "route", "add", "default", "dev", bed.tap])
        bed.ns(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        path = str(bed.workdir / "passt.sock")
        bed.start([binary, "-f", "-e", "-4", "-1", "--runas", "0:0", "-s", path,
                   "-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2", "-D", "10.0.2.3"])
        wait_for(lambda: os.path.exists(path), what="passt's socket")
        device = StreamDevice.connect(path)
        try:
            yield device
        finally:
            device.close()


def wait_frame(device: StreamDevice, match: Callable[[Frame], bool],
               timeout: float = 5.0) -> Frame:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in device.receive(time.monotonic()):
            if match(frame):
                return frame
        time.sleep(0.002)
    pytest.fail("no matching frame from passt")


def test_passt_answers_arp_and_ping_over_the_stream_protocol(passt: StreamDevice) -> None:
    passt.send(Frame(arp_request(GATEWAY_IP)), 0.0)

    def is_arp_reply(frame: Frame) -> bool:
        eth, body = parse_ethernet(frame.data)
        return eth.ethertype == EtherType.ARP and parse_arp(body).op == ArpOp.REPLY

    reply = parse_arp(parse_ethernet(wait_frame(passt, is_arp_reply).data)[1])
    assert reply.sender_ip == GATEWAY_IP and reply.target_mac == STACK_MAC

    payload = os.urandom(56)
    passt.send(Frame(icmp_echo(3, payload, dst_mac=reply.sender_mac)), 0.0)

    def is_echo_reply(frame: Frame) -> bool:
        eth, body = parse_ethernet(frame.data)
        if eth.ethertype != EtherType.IPV4:
            return False
        ip, _l4 = parse_ipv4(body)
        return ip.proto == IpProto.ICMP and ip.src == GATEWAY_IP

    _, l4 = parse_ipv4(parse_ethernet(wait_frame(passt, is_echo_reply).data)[1])
    echo = parse_icmp(l4)
    assert isinstance(echo, IcmpEcho) and echo.type == IcmpType.ECHO_REPLY
    assert echo.payload == payload
    assert passt.counters.tx_frames == 2 and passt.counters.rx_frames >= 2
