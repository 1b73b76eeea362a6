"""The hook between the IP layer and stack/tcp: segments both ways, ICMP errors to TCP."""

from __future__ import annotations

import errno

import pytest

from tests.stack.helpers import make_pair, make_stack
from vipernet.stack import Stack


def _require_tcp(stack: Stack) -> None:
    if stack.tcp is None:
        pytest.skip("vipernet.stack.tcp is not in this build yet")


def test_two_stacks_complete_a_tcp_handshake_and_move_bytes_through_send_ip() -> None:
    pair = make_pair()
    _require_tcp(pair.a)
    listener = pair.b.tcp_socket()
    listener.bind(("", 80))
    listener.listen(4)
    client = pair.a.tcp_socket()
    with pytest.raises(BlockingIOError):
        client.connect(("10.0.2.2", 80), pair.now)
    pair.advance(0.5)
    server = listener.accept()
    assert client.send(b"GET / HTTP/1.0\r\n\r\n", pair.now) == 18
    pair.advance(0.5)
    assert server.recv(100) == b"GET / HTTP/1.0\r\n\r\n"
    assert pair.a.counters["stack.rx.internal_error"] == 0


def test_tcp_connect_to_an_unresolvable_neighbour_fails_with_ehostunreach() -> None:
    stack = make_stack()
    _require_tcp(stack)
    stack.transmit()
    sock = stack.tcp_socket()
    with pytest.raises(BlockingIOError):
        sock.connect(("10.0.2.77", 80), 0.0)
    now = 0.0
    while now < 4.0:
        now += 0.25
        stack.poll(now)
        stack.transmit()
    assert stack.counters["arp.resolve.failed"] >= 1
    assert sock.take_error() == errno.EHOSTUNREACH
