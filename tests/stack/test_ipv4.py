"""IPv4 receive validation (each drop branch counted) and the send side (TTL, routing)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    MAC_PEER,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_icmp,
    teach_peer,
    udp_frame,
)
from vipernet.link.frame import DeviceCapabilities, Frame, GsoType, Offload
from vipernet.stack import Stack
from vipernet.wire import IcmpEcho, IcmpError, IcmpType, IpProto, build_icmp, build_udp


def _ready() -> Stack:
    stack = make_stack()
    teach_peer(stack)
    sock = stack.udp_socket()
    sock.bind(("", 53))
    return stack


def test_packet_with_a_bad_header_checksum_is_dropped_and_counted() -> None:
    stack = _ready()
    frame = bytearray(udp_frame(b"x").data)
    frame[14 + 10] ^= 0xFF
    stack.receive(Frame(bytes(frame)), 0.0)
    assert stack.counters["ipv4.rx.bad_checksum"] == 1
    assert stack.counters["udp.rx.datagrams"] == 0


def test_truncated_and_malformed_headers_are_counted_by_field() -> None:
    stack = _ready()
    good = udp_frame(b"hello").data
    stack.receive(Frame(good[:14 + 10]), 0.0)  # shorter than an IP header
    bad_version = bytearray(good)
    bad_version[14] = 0x65
    stack.receive(Frame(bytes(bad_version)), 0.0)
    long_total = bytearray(good)
    long_total[16:18] = (2000).to_bytes(2, "big")
    stack.receive(Frame(bytes(long_total)), 0.0)
    counts = stack.counters.snapshot()
    assert counts["ipv4.rx.bad_length"] == 1
    assert counts.get("ipv4.rx.bad_checksum", 0) + counts.get("ipv4.rx.bad_version", 0) == 1
    assert counts["ipv4.rx.bad_total_length"] == 1
    assert stack.counters["stack.rx.internal_error"] == 0


def test_packet_for_another_address_is_not_delivered() -> None:
    stack = _ready()
    stack.receive(udp_frame(b"x", dst=IPv4Address("10.0.2.99")), 0.0)
    assert stack.counters["ipv4.rx.not_for_us"] == 1
    assert stack.transmit() == []


def test_frame_for_another_mac_and_unknown_ethertype_are_dropped() -> None:
    stack = _ready()
    stack.receive(eth(b"x" * 46, dst=bytes.fromhex("020000000099")), 0.0)
    stack.receive(eth(b"x" * 46, ethertype=0x86DD), 0.0)
    stack.receive(Frame(b"short"), 0.0)
    assert stack.counters["eth.rx.not_for_us"] == 1
    assert stack.counters["eth.rx.unknown_ethertype"] == 1
    assert stack.counters["eth.rx.bad_length"] == 1


def test_broadcast_udp_is_delivered_but_never_answered_with_icmp() -> None:
    stack = _ready()
    stack.receive(udp_frame(b"b", dst=IPv4Address("10.0.2.255")), 0.0)
    stack.receive(udp_frame(b"c", dport=999, dst=IPv4Address("255.255.255.255")), 0.0)
    assert stack.counters["udp.rx.datagrams"] == 1
    assert stack.counters["udp.rx.no_socket"] == 1
    assert stack.transmit() == []


def test_unknown_protocol_gets_protocol_unreachable() -> None:
    stack = _ready()
    stack.receive(eth(ip_packet(b"\0" * 20, proto=47)), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    message = parse_icmp(body)
    assert isinstance(message, IcmpError)
    assert (message.type, message.code) == (IcmpType.DEST_UNREACHABLE, 2)
    assert ip.dst == IP_PEER and stack.counters["ipv4.rx.unknown_protocol"] == 1


def test_sent_packets_carry_ttl_64_our_source_and_fresh_identifications() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.sendto(b"a", ("10.0.2.2", 9), 0.0)
    sock.sendto(b"b", ("10.0.2.2", 9), 0.0)
    (ip1, _), (ip2, _) = ipv4s(stack.transmit())
    assert (ip1.ttl, ip1.src, ip1.dst) == (64, IP_A, IP_PEER)
    assert ip1.ident != ip2.ident
    assert not ip1.dont_fragment


def test_send_ip_shifts_l4_offload_offsets_by_the_ethernet_and_ip_headers() -> None:
    stack = _ready()
    segment = build_udp(1, 2, b"x" * 3000, src=IP_A, dst=IP_PEER)
    offload = Offload(needs_csum=True, csum_start=0, csum_offset=6, gso_type=GsoType.UDP,
                      gso_size=1472, hdr_len=8)
    stack.capabilities = stack.capabilities.__class__(tso=True, max_frame=65535 + 14)
    stack.send_ip(IP_PEER, IpProto.UDP, segment, offload_l4=offload, now=0.0)
    [frame] = stack.transmit()
    assert frame.offload is not None
    assert (frame.offload.csum_start, frame.offload.hdr_len) == (34, 42)
    assert len(frame.data) == 14 + 20 + len(segment)  # not fragmented
    assert bytes(frame.data[:6]) == MAC_PEER


def test_packets_to_our_own_address_loop_back_to_our_sockets() -> None:
    stack = _ready()
    server = stack.udp_socket()
    server.bind(("", 7))
    client = stack.udp_socket()
    client.sendto(b"self", ("10.0.2.15", 7), 0.0)
    assert stack.next_deadline() == 0.0
    assert stack.transmit() == []  # delivered locally, nothing on the wire
    assert server.recvfrom(10) == (b"self", ("10.0.2.15", client.getsockname()[1]))


def test_martian_sources_are_dropped_on_both_echo_paths() -> None:
    stack = _ready()
    for src in ("10.0.2.15", "224.0.0.1", "255.255.255.255", "10.0.2.255", "0.0.0.0"):
        stack.receive(udp_frame(b"x", src=IPv4Address(src)), 0.0)
        stack.receive(eth(ip_packet(build_icmp(IcmpEcho(
            type=IcmpType.ECHO_REQUEST, ident=1, seq=1)), proto=IpProto.ICMP,
            src=IPv4Address(src))), 0.0)
    assert stack.counters["ipv4.rx.martian_source"] == 10
    assert stack.transmit() == []


def test_the_devices_smaller_mtu_wins_over_the_configured_one() -> None:
    stack = Stack(make_stack().config, capabilities=DeviceCapabilities(mtu=576),
                  now=0.0, rng=random.Random(1))
    teach_peer(stack)
    stack.udp_socket().sendto(b"x" * 1000, ("10.0.2.2", 9), 0.0)
    frames = ipv4s(stack.transmit())
    assert len(frames) == 2 and all(20 + len(body) <= 576 for _ip, body in frames)
