"""Hostile IPv6 frames: random and mutated IPv6/ICMPv6/NDP/UDP/TCP input never escapes
Stack.receive (or a poll after it) as an exception, with a UDP socket and a TCP listener
open for the datagrams and SYNs among them, and the stack still answers an IPv6 ping
afterwards."""

from __future__ import annotations

import random
import socket
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stack.helpers import MAC_A
from vipernet.link.frame import Frame, GsoType, Offload
from vipernet.stack import Stack, StackConfig
from vipernet.wire.checksum import internet_checksum, pseudo_header_sum_v6
from vipernet.wire.icmpv6 import Icmpv6Type, build_echo_request, build_icmpv6_error
from vipernet.wire.ipv6 import IPv6Header, build_ipv6_packet, parse_ipv6
from vipernet.wire.ipv6_ext import build_fragment_header, build_options_header
from vipernet.wire.ndp import (
    RouterAdvertisement,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_router_advertisement,
)
from vipernet.wire.ndp_options import (
    PrefixInformation,
    RecursiveDnsServer,
    SourceLinkLayerAddress,
)
from vipernet.wire.udp import build_udp

OURS = IPv6Address("fd00::a")
PEER = IPv6Address("fd00::b")
ROUTER = IPv6Address("fe80::1")
PEER_MAC = bytes.fromhex("02000000000b")
AF_INET6 = int(socket.AF_INET6)


def _frame(packet: bytes, dst_mac: bytes = MAC_A) -> bytes:
    return dst_mac + PEER_MAC + b"\x86\xdd" + packet


def _ip(next_header: int, payload: bytes, src: IPv6Address = PEER,
        dst: IPv6Address = OURS, hops: int = 64) -> bytes:
    return build_ipv6_packet(IPv6Header(src=src, dst=dst, next_header=next_header,
                                        hop_limit=hops), payload)


def _tcp_syn(port: int) -> bytes:
    """A bare SYN (20-byte header, checksum right) from PEER:40000 to ``port``."""
    head = bytearray((40000).to_bytes(2, "big") + port.to_bytes(2, "big") + bytes(8)
                     + b"\x50\x02\xff\xff" + bytes(4))
    csum = internet_checksum(bytes(head), pseudo_header_sum_v6(PEER, OURS, 6, len(head)))
    head[16:18] = csum.to_bytes(2, "big")
    return bytes(head)


_ECHO = build_echo_request(9, 1, b"ping" * 10, PEER, OURS)
_SEEDS = [
    _frame(_ip(58, _ECHO)),
    _frame(_ip(17, build_udp(5000, 5353, b"datagram" * 8, src=PEER, dst=OURS))),
    _frame(_ip(6, _tcp_syn(8080))),
    _frame(_ip(58, build_neighbor_solicitation(OURS, PEER, PEER_MAC, dst=OURS), hops=255)),
    _frame(_ip(58, build_neighbor_advertisement(PEER, PEER, OURS, PEER_MAC), hops=255)),
    _frame(_ip(58, build_router_advertisement(RouterAdvertisement(
        cur_hop_limit=64, router_lifetime=1800, options=(
            SourceLinkLayerAddress(address=PEER_MAC),
            PrefixInformation(prefix_length=64, on_link=True, autonomous=True,
                              valid_lifetime=3600, preferred_lifetime=1800,
                              prefix=IPv6Address("fd00::")),
            RecursiveDnsServer(lifetime=600, servers=(PEER,)))), ROUTER), src=ROUTER,
        dst=IPv6Address("ff02::1"), hops=255), b"\x33\x33\x00\x00\x00\x01"),
    _frame(_ip(44, build_fragment_header(58, 0, True, 7) + _ECHO[:16])),
    _frame(_ip(0, build_options_header(58, [(0x05, b"\0\0")]) + _ECHO)),
    _frame(_ip(58, build_icmpv6_error(Icmpv6Type.PACKET_TOO_BIG, 0, _ip(
        17, build_udp(5353, 5000, b"x" * 40, src=OURS, dst=PEER), src=OURS, dst=PEER),
        PEER, OURS, mtu=1280))),
]

_offloads = st.one_of(st.none(), st.builds(
    Offload, needs_csum=st.booleans(), data_valid=st.booleans(),
    csum_start=st.integers(0, 70000), csum_offset=st.integers(0, 70000),
    gso_type=st.sampled_from(list(GsoType)), gso_size=st.integers(0, 70000),
    hdr_len=st.integers(0, 70000)))


def _stack() -> Stack:
    config = StackConfig(mac=MAC_A, ip=IPv4Interface("10.0.2.15/24"), gateway=None,
                         ip6="static", ip6_address=IPv6Interface(f"{OURS}/64"),
                         ip6_dad_transmits=0)
    stack = Stack(config, now=0.0, rng=random.Random(4))
    stack.poll(1.0)
    stack.transmit()
    return stack


def _still_answers_ping6(stack: Stack) -> None:
    assert stack.counters["stack.rx.internal_error"] == 0
    stack.poll(100.0)
    stack.transmit()
    # The peer's NS first (its link-layer address makes a STALE entry, so the reply needs
    # no resolution), then a fresh echo request.
    stack.receive(Frame(_frame(_ip(58, build_neighbor_solicitation(OURS, PEER, PEER_MAC, dst=OURS),
                                   hops=255))), 100.0)
    stack.receive(Frame(_frame(_ip(58, build_echo_request(77, 5, b"alive", PEER, OURS)))),
                  100.0)
    replies = []
    for frame in stack.transmit():
        data = bytes(frame.data)
        if data[12:14] == b"\x86\xdd":
            header, payload = parse_ipv6(data[14:])
            if header.next_header == 58 and payload[0] == 129:
                replies.append(bytes(payload[8:]))
    assert b"alive" in replies
    assert stack.counters["stack.poll.internal_error"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=1600), offload=_offloads)
def test_random_ipv6_packets_never_raise_and_the_stack_still_answers(
        body: bytes, offload: Offload | None) -> None:
    stack = _stack()
    # A valid fixed header in front half the time, so the bytes reach the upper layers.
    packet = _ip(body[0] if body else 59, body[1:]) if len(body) % 2 else body
    stack.receive(Frame(_frame(packet), offload), 2.0)
    stack.transmit()
    _still_answers_ping6(stack)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_ipv6_frames_never_raise_and_the_stack_still_answers(
        data: st.DataObject) -> None:
    stack = _stack()
    udp = stack.udp_socket(AF_INET6)
    udp.bind(("::", 5353))
    listener = stack.tcp_socket(AF_INET6)
    listener.bind(("::", 8080))
    listener.listen(8)
    for _ in range(data.draw(st.integers(1, 4))):
        frame = bytearray(data.draw(st.sampled_from(_SEEDS)))
        for _ in range(data.draw(st.integers(0, 6))):
            pos = data.draw(st.integers(14, len(frame) - 1))
            frame[pos] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            frame = frame[:max(data.draw(st.integers(0, len(frame))), 14)]
        stack.receive(Frame(bytes(frame), data.draw(_offloads)), 2.0)
        stack.poll(2.0)
    stack.transmit()
    while udp.readable:
        udp.recvfrom(65536)
    _still_answers_ping6(stack)


def test_the_seeds_are_valid_and_reach_their_handlers() -> None:
    stack = _stack()
    udp = stack.udp_socket(AF_INET6)
    udp.bind(("::", 5353))
    for seed in _SEEDS:
        stack.receive(Frame(seed), 2.0)
    assert udp.recvfrom(100)[0] == b"datagram" * 8
    assert stack.counters["ipv6.rx.delivered"] >= 6
    assert stack.counters["udp.rx.bad_checksum"] == 0
    assert stack.tcp.counters["tcp_segments_received"] == 1  # the SYN (refused: no listener)
