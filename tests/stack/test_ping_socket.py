"""Ping sockets: Linux-style raw echo calls and the ping command's convenience calls."""

from __future__ import annotations

import errno

import pytest

from tests.stack.helpers import IP_PEER, eth, ip_packet, ipv4s, make_stack, parse_icmp, teach_peer
from vipernet.stack import Stack
from vipernet.stack.socket_api import SocketKind
from vipernet.wire import (
    IcmpEcho,
    IcmpError,
    IcmpType,
    IpProto,
    IPv4Header,
    build_icmp,
    build_ipv4_header,
)
from vipernet.wire.ipv4 import IPv4Address


def _ready() -> Stack:
    stack = make_stack()
    teach_peer(stack)
    return stack


def test_sendto_takes_an_echo_request_and_fills_in_our_identifier_and_checksum() -> None:
    stack = _ready()
    sock = stack.ping_socket()
    assert sock.kind == SocketKind.ICMP
    raw = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=1, seq=42, payload=b"hi"))
    assert sock.sendto(raw, ("10.0.2.2", 0), 0.0) == len(raw)
    [(ip, body)] = ipv4s(stack.transmit())
    echo = parse_icmp(body)
    assert isinstance(echo, IcmpEcho)
    assert (echo.ident, echo.seq, echo.payload, ip.dst) == (sock.ident, 42, b"hi", IP_PEER)


def test_recvfrom_returns_the_reply_message_and_recv_reply_its_details() -> None:
    stack = _ready()
    sock = stack.ping_socket()
    sock.send_echo("10.0.2.2", 5, b"abc", 0.0)
    for seq in (5, 6):
        reply = build_icmp(IcmpEcho(type=IcmpType.ECHO_REPLY, ident=sock.ident, seq=seq,
                                    payload=b"abc"))
        stack.receive(eth(ip_packet(reply, proto=IpProto.ICMP, ttl=61)), 2.5)
    data, address = sock.recvfrom(100)
    assert address == ("10.0.2.2", 0)
    echo = parse_icmp(data)
    assert isinstance(echo, IcmpEcho) and echo.seq == 5
    second = sock.recv_reply()
    assert (second.seq, second.ttl, second.received_at) == (6, 61, 2.5)
    with pytest.raises(BlockingIOError):
        sock.recv_reply()


def test_reply_for_another_identifier_is_not_delivered() -> None:
    stack = _ready()
    sock = stack.ping_socket()
    reply = build_icmp(IcmpEcho(type=IcmpType.ECHO_REPLY, ident=(sock.ident + 1) & 0xFFFF,
                                seq=1))
    stack.receive(eth(ip_packet(reply, proto=IpProto.ICMP)), 0.0)
    assert not sock.readable
    assert stack.counters["icmp.rx.echo_reply_no_socket"] == 1


def test_host_unreachable_about_our_echo_becomes_the_sockets_error() -> None:
    stack = _ready()
    sock = stack.ping_socket()
    echo = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=sock.ident, seq=1))
    quote = build_ipv4_header(IPv4Header(src=IPv4Address("10.0.2.15"), dst=IPv4Address(
        "192.0.2.9"), proto=IpProto.ICMP), len(echo)) + echo
    error = build_icmp(IcmpError(type=IcmpType.DEST_UNREACHABLE, code=1, quoted=quote))
    stack.receive(eth(ip_packet(error, proto=IpProto.ICMP)), 0.0)
    assert sock.readable
    with pytest.raises(OSError) as info:
        sock.recv_reply()
    assert info.value.errno == errno.EHOSTUNREACH


def test_ping_sockets_only_send_echo_requests() -> None:
    stack = _ready()
    sock = stack.ping_socket()
    raw = build_icmp(IcmpEcho(type=IcmpType.ECHO_REPLY, ident=1, seq=1))
    with pytest.raises(OSError) as info:
        sock.sendto(raw, ("10.0.2.2", 0), 0.0)
    assert info.value.errno == errno.EINVAL


def test_two_ping_sockets_get_distinct_identifiers_and_binding_a_used_one_fails() -> None:
    stack = _ready()
    a, b = stack.ping_socket(), stack.ping_socket()
    assert a.ident != b.ident
    c = stack.ping_socket()
    with pytest.raises(OSError) as info:
        c.bind(("", a.ident))
    assert info.value.errno == errno.EADDRINUSE
    a.close(0.0)
    c.bind(("", a.ident))
