"""UDP sockets: binding, ports, sending, receiving, limits, checksums, readiness."""

from __future__ import annotations

import errno

import pytest

from tests.stack.helpers import (
    IP_A,
    IP_PEER,
    eth,
    ip_packet,
    ipv4s,
    make_stack,
    parse_udp,
    teach_peer,
    udp_frame,
)
from vipernet.link.frame import Frame, Offload
from vipernet.stack import Stack
from vipernet.stack.socket_api import SocketKind
from vipernet.wire import build_udp


def _ready() -> Stack:
    stack = make_stack()
    teach_peer(stack)
    return stack


def _errno(excinfo: pytest.ExceptionInfo[OSError]) -> int | None:
    return excinfo.value.errno


def test_bind_port_zero_picks_a_random_free_ephemeral_port() -> None:
    stack = _ready()
    ports = set()
    for _ in range(20):
        sock = stack.udp_socket()
        sock.bind(("0.0.0.0", 0))
        ports.add(sock.getsockname()[1])
    assert len(ports) == 20
    assert all(49152 <= p <= 65535 for p in ports)
    assert stack.udp_socket().kind == SocketKind.UDP


def test_binding_a_used_port_is_eaddrinuse_and_close_releases_it() -> None:
    stack = _ready()
    first = stack.udp_socket()
    first.bind(("", 5353))
    with pytest.raises(OSError) as info:
        stack.udp_socket().bind(("", 5353))
    assert _errno(info) == errno.EADDRINUSE
    first.close(0.0)
    assert first.closed
    stack.udp_socket().bind(("10.0.2.15", 5353))


def test_bind_rejects_foreign_addresses_and_rebinding() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    with pytest.raises(OSError) as info:
        sock.bind(("10.0.2.99", 1))
    assert _errno(info) == errno.EADDRNOTAVAIL
    sock.bind(("", 0))
    with pytest.raises(OSError) as info:
        sock.bind(("", 0))
    assert _errno(info) == errno.EINVAL


def test_send_without_a_peer_is_edestaddrreq_and_oversize_is_emsgsize() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    with pytest.raises(OSError) as info:
        sock.send(b"x", 0.0)
    assert _errno(info) == errno.EDESTADDRREQ
    with pytest.raises(OSError) as info:
        sock.sendto(b"x" * 65508, ("10.0.2.2", 9), 0.0)
    assert _errno(info) == errno.EMSGSIZE


def test_largest_datagram_goes_out_as_45_fragments_with_a_valid_checksum() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    assert sock.sendto(b"m" * 65507, ("10.0.2.2", 9), 0.0) == 65507
    frames = ipv4s(stack.transmit())
    assert len(frames) == 45
    whole = b"".join(body for _ip, body in frames)
    header, data = parse_udp(whole, src=IP_A, dst=IP_PEER)  # verifies the checksum
    assert header.checksum != 0 and len(data) == 65507


def test_sendto_autobinds_and_the_datagram_carries_our_port_and_checksum() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.sendto(b"q", ("10.0.2.2", 53), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    header, data = parse_udp(body, src=ip.src, dst=ip.dst)
    assert (header.src_port, header.dst_port, bytes(data)) == (sock.getsockname()[1], 53, b"q")
    assert header.checksum != 0


def test_recv_on_an_empty_queue_would_block_and_a_short_buffer_truncates() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.bind(("", 53))
    assert not sock.readable and sock.writable
    with pytest.raises(BlockingIOError):
        sock.recv(10)
    stack.receive(udp_frame(b"0123456789"), 0.0)
    assert sock.readable and sock in stack.take_changed()
    assert sock.recvfrom(4) == (b"0123", ("10.0.2.2", 5000))
    assert not sock.readable  # the rest of the datagram is gone, as Linux


def test_receive_queue_is_bounded_and_overflow_is_counted() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.bind(("", 53))
    sock.setsockopt("SO_RCVBUF", 4096)
    for _ in range(10):
        stack.receive(udp_frame(b"z" * 1000), 0.0)
    assert stack.counters["udp.rx.queue_full"] > 0
    got = 0
    while sock.readable:
        sock.recv(2000)
        got += 1
    assert got + stack.counters["udp.rx.queue_full"] == 10 and got <= 4


def test_zero_checksum_is_accepted_and_a_bad_checksum_is_dropped() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.bind(("", 53))
    udp = bytearray(build_udp(5000, 53, b"nochecksum", src=IP_PEER, dst=IP_A))
    udp[6:8] = b"\0\0"
    stack.receive(eth(ip_packet(bytes(udp))), 0.0)
    assert sock.recv(100) == b"nochecksum"
    udp = bytearray(build_udp(5000, 53, b"corrupted", src=IP_PEER, dst=IP_A))
    udp[-1] ^= 0x40
    stack.receive(eth(ip_packet(bytes(udp))), 0.0)
    assert not sock.readable
    assert stack.counters["udp.rx.bad_checksum"] == 1


def test_partial_checksum_from_the_device_is_trusted() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.bind(("", 53))
    udp = bytearray(build_udp(5000, 53, b"offloaded", src=IP_PEER, dst=IP_A,
                              partial_checksum=True))
    frame = eth(ip_packet(bytes(udp)))
    stack.receive(Frame(frame.data, Offload(needs_csum=True, csum_start=34, csum_offset=6)),
                  0.0)
    assert sock.recv(100) == b"offloaded"


def test_connected_socket_only_accepts_datagrams_from_its_peer() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.bind(("", 53))
    sock.connect(("10.0.2.2", 5000), 0.0)
    stack.receive(udp_frame(b"stranger", sport=5001), 0.0)
    stack.receive(udp_frame(b"peer", sport=5000), 0.0)
    assert sock.recv(100) == b"peer"
    assert not sock.readable
    assert sock.getpeername() == ("10.0.2.2", 5000)


def test_closed_socket_refuses_calls_with_ebadf() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    sock.close(0.0)
    with pytest.raises(OSError) as info:
        sock.sendto(b"x", ("10.0.2.2", 9), 0.0)
    assert _errno(info) == errno.EBADF


def test_listen_and_accept_are_not_supported_on_udp() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    with pytest.raises(OSError) as info:
        sock.listen(1)
    assert _errno(info) == errno.EOPNOTSUPP


def test_bad_addresses_are_einval() -> None:
    stack = _ready()
    sock = stack.udp_socket()
    for address in [("example.test", 53), ("10.0.2.2", 70000), ("10.0.2.2", 0), "10.0.2.2"]:
        with pytest.raises(OSError) as info:
            sock.sendto(b"x", address, 0.0)  # type: ignore[arg-type]
        assert _errno(info) == errno.EINVAL
