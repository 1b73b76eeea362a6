"""ICMP: echo replies, errors we send (rate limited), errors we receive and route to sockets."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address

import pytest

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    echo_request_frame,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_icmp,
    teach_peer,
    udp_frame,
)
from vipernet.link.frame import Frame
from vipernet.stack import IcmpErrorEvent, Stack
from vipernet.wire import (
    IcmpEcho,
    IcmpError,
    IcmpType,
    IpProto,
    build_icmp,
    build_ipv4_header,
    build_udp,
)
from vipernet.wire.ipv4 import IPv4Header


def _ready() -> Stack:
    stack = make_stack()
    teach_peer(stack)
    return stack


def test_echo_request_gets_an_echo_reply_with_the_same_ident_seq_and_payload() -> None:
    stack = _ready()
    payload = bytes(range(56))
    stack.receive(echo_request_frame(ident=0x1234, seq=7, payload=payload), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    reply = parse_icmp(body)  # verifies the checksum
    assert isinstance(reply, IcmpEcho)
    assert (reply.type, reply.ident, reply.seq, reply.payload) == (
        IcmpType.ECHO_REPLY, 0x1234, 7, payload)
    assert (ip.src, ip.dst, ip.proto) == (IP_A, IP_PEER, IpProto.ICMP)


def test_large_echo_request_in_fragments_gets_a_fragmented_reply() -> None:
    stack = _ready()
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=1, seq=1, payload=b"p" * 8000))
    for off in range(0, len(icmp), 1480):
        stack.receive(eth(ip_packet(icmp[off:off + 1480], proto=IpProto.ICMP, offset=off,
                                    mf=off + 1480 < len(icmp))), 0.0)
    replies = ipv4s(stack.transmit())
    assert len(replies) == 6
    assert all(len(body) <= 1480 for _ip, body in replies)
    assert b"".join(body for _ip, body in replies)[8:] == b"p" * 8000


def test_ping_to_a_broadcast_address_is_ignored() -> None:
    stack = _ready()
    stack.receive(echo_request_frame(dst=IPv4Address("10.0.2.255")), 0.0)
    assert stack.transmit() == []
    assert stack.counters["icmp.rx.echo_broadcast_ignored"] == 1


def test_echo_request_with_a_bad_checksum_is_dropped() -> None:
    stack = _ready()
    frame = bytearray(echo_request_frame().data)
    frame[-1] ^= 1
    stack.receive(Frame(bytes(frame)), 0.0)
    assert stack.transmit() == []
    assert stack.counters["icmp.rx.bad_checksum"] == 1


def test_udp_to_a_closed_port_gets_port_unreachable_quoting_the_datagram() -> None:
    stack = _ready()
    stack.receive(udp_frame(b"anyone?", sport=4444, dport=9999), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    error = parse_icmp(body)
    assert isinstance(error, IcmpError)
    assert (error.type, error.code, ip.dst) == (IcmpType.DEST_UNREACHABLE, 3, IP_PEER)
    quoted, quoted_payload = error.quoted_ipv4()
    assert (quoted.src, quoted.dst) == (IP_PEER, IP_A)
    assert bytes(quoted_payload[:4]) == (4444).to_bytes(2, "big") + (9999).to_bytes(2, "big")


def test_port_unreachable_is_rate_limited() -> None:
    stack = make_stack(icmp_error_burst=5, icmp_error_rate=10.0)
    teach_peer(stack)
    for _ in range(20):
        stack.receive(udp_frame(b"x", dport=9999), 0.0)
    assert len(stack.transmit()) == 5
    assert stack.counters["icmp.tx.rate_limited"] == 15
    for _ in range(5):
        stack.receive(udp_frame(b"x", dport=9999), 0.5)  # 0.5 s refills 5 tokens
    assert len(stack.transmit()) == 5


def _port_unreachable_about(sport: int, dport: int, dst: IPv4Address = IP_PEER,
                            src: IPv4Address = IP_A, code: int = 3) -> bytes:
    udp = build_udp(sport, dport, b"data", src=src, dst=dst)
    quote = build_ipv4_header(IPv4Header(src=src, dst=dst, proto=IpProto.UDP), len(udp)) + udp
    return build_icmp(IcmpError(type=IcmpType.DEST_UNREACHABLE, code=code, quoted=quote))


def test_port_unreachable_makes_the_connected_udp_socket_raise_econnrefused_once() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.connect(("10.0.2.2", 7777), 0.0)
    sock.send(b"data", 0.0)
    stack.transmit()
    port = sock.getsockname()[1]
    stack.receive(eth(ip_packet(_port_unreachable_about(port, 7777), proto=IpProto.ICMP)), 0.0)
    assert sock in stack.take_changed()
    assert sock.readable
    with pytest.raises(ConnectionRefusedError):
        sock.recv(100)
    with pytest.raises(BlockingIOError):
        sock.recv(100)  # reported once, like Linux


def test_port_unreachable_is_readable_through_take_error_too() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.connect(("10.0.2.2", 7777), 0.0)
    port = sock.getsockname()[1]
    stack.receive(eth(ip_packet(_port_unreachable_about(port, 7777), proto=IpProto.ICMP)), 0.0)
    assert sock.take_error() == errno.ECONNREFUSED
    assert sock.take_error() is None
    sock.send(b"fine again", 0.0)


def test_unconnected_udp_socket_does_not_hear_icmp_errors_as_linux() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.sendto(b"data", ("10.0.2.2", 7777), 0.0)
    port = sock.getsockname()[1]
    stack.receive(eth(ip_packet(_port_unreachable_about(port, 7777), proto=IpProto.ICMP)), 0.0)
    assert sock.take_error() is None
    assert stack.counters["udp.rx.icmp_error_ignored"] == 1


def test_icmp_error_about_someone_elses_packet_is_dropped() -> None:
    stack = _ready()
    listener_calls: list[IcmpErrorEvent] = []
    stack.icmp_error_listeners.append(lambda event, now: listener_calls.append(event))
    message = _port_unreachable_about(1, 2, src=IPv4Address("10.0.2.50"))
    stack.receive(eth(ip_packet(message, proto=IpProto.ICMP)), 0.0)
    assert stack.counters["icmp.rx.error_not_ours"] == 1
    assert listener_calls == []


def test_icmp_errors_reach_the_transport_listeners_with_errno_and_quote() -> None:
    stack = _ready()
    events: list[tuple[IcmpErrorEvent, float]] = []
    stack.icmp_error_listeners.append(lambda event, now: events.append((event, now)))
    stack.receive(eth(ip_packet(_port_unreachable_about(1234, 80, code=1), proto=IpProto.ICMP)),
                  4.0)
    [(event, now)] = events
    assert now == 4.0
    assert (event.errno, event.hard, event.reporter) == (errno.EHOSTUNREACH, True, IP_PEER)
    assert event.quoted.dst == IP_PEER and event.quoted_payload[:2] == (1234).to_bytes(2, "big")
