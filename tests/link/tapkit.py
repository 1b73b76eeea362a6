"""Helpers for tests on a real TAP: read until a frame matches, play ARP, read nstat."""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import pytest

from tests.link.packets import GATEWAY_IP, STACK_IP, STACK_MAC, arp_request, ether
from tests.testbed import TestBed
from vipernet.link.frame import Device, Frame
from vipernet.wire.arp import ArpOp, ArpPacket, build_arp, parse_arp
from vipernet.wire.ethernet import EtherType, parse_ethernet
from vipernet.wire.ipv4 import IpProto, parse_ipv4
from vipernet.wire.tcp import TcpFlags, TcpHeader, parse_tcp


def wait_frame(tap: Device, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
    """Read frames until one matches, answering the kernel's ARP requests for STACK_IP."""
    deadline = time.monotonic() + timeout
    fd = tap.fileno()
    assert fd is not None
    while time.monotonic() < deadline:
        select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        for frame in tap.receive(time.monotonic()):
            if match(frame):
                return frame
            answer_arp(tap, frame)
    pytest.fail("no matching frame from the kernel")


def answer_arp(tap: Device, frame: Frame) -> None:
    """Play the stack's ARP part: the kernel may ask who 10.0.2.15 is before it replies."""
    eth, payload = parse_ethernet(frame.data)
    if eth.ethertype != EtherType.ARP:
        return
    arp = parse_arp(payload)
    if arp.op == ArpOp.REQUEST and arp.target_ip == STACK_IP:
        reply = ArpPacket(op=ArpOp.REPLY, sender_mac=STACK_MAC, sender_ip=STACK_IP,
                          target_mac=arp.sender_mac, target_ip=arp.sender_ip)
        tap.send(Frame(ether(build_arp(reply), EtherType.ARP, dst=arp.sender_mac)),
                 time.monotonic())


def is_arp_reply(frame: Frame) -> bool:
    eth, payload = parse_ethernet(frame.data)
    return eth.ethertype == EtherType.ARP and parse_arp(payload).op == ArpOp.REPLY


def gateway_mac(tap: Device) -> bytes:
    tap.send(Frame(arp_request(GATEWAY_IP)), time.monotonic())
    reply = parse_arp(parse_ethernet(wait_frame(tap, is_arp_reply).data)[1])
    assert reply.sender_ip == GATEWAY_IP and reply.target_mac == STACK_MAC
    return reply.sender_mac


SYN_ACK = TcpFlags.SYN | TcpFlags.ACK


def tcp_of(frame: Frame) -> tuple[TcpHeader, memoryview] | None:
    eth, ip_bytes = parse_ethernet(frame.data)
    if eth.ethertype != EtherType.IPV4:
        return None
    ip, body = parse_ipv4(ip_bytes)
    if ip.proto != IpProto.TCP:
        return None
    return parse_tcp(body, src=ip.src, dst=ip.dst, verify_checksum=False)


def tcp_flags(frame: Frame) -> int:
    parsed = tcp_of(frame)
    return 0 if parsed is None else int(parsed[0].flags)


def payload_len(frame: Frame) -> int:
    parsed = tcp_of(frame)
    return 0 if parsed is None else len(parsed[1])


def parse_tcp_frame(frame: Frame) -> TcpHeader:
    parsed = tcp_of(frame)
    assert parsed is not None
    return parsed[0]


def nstat(bed: TestBed) -> dict[str, int]:
    out = bed.ns(["nstat", "-asz"]).stdout
    counters: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            counters[parts[0]] = int(parts[1])
    return counters
