"""The runtime loop, driven with a socketpair standing in for a TAP device."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.stack.helpers import (
    MAC_A,
    MAC_PEER,
    arp_frame,
    echo_request_frame,
    ipv4s,
    make_stack,
    parse_icmp,
    parse_udp,
    udp_frame,
)
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.runtime import Runtime
from vipernet.stack import Stack
from vipernet.wire import ArpOp, IcmpEcho, IcmpType


class SocketpairDevice:
    """A Device whose far end is a datagram socket the test reads and writes frames on."""

    name = "pair"
    capabilities = DeviceCapabilities()

    def __init__(self) -> None:
        self.near, self.far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.near.setblocking(False)
        self.far.settimeout(5.0)

    def fileno(self) -> int | None:
        return self.near.fileno()

    def receive(self, now: float) -> list[Frame]:
        frames = []
        while True:
            try:
                frames.append(Frame(self.near.recv(65536)))
            except BlockingIOError:
                return frames

    def send(self, frame: Frame, now: float) -> None:
        self.near.send(bytes(frame.data))

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        self.near.close()
        self.far.close()

    def peer_send(self, frame: Frame) -> None:
        self.far.send(bytes(frame.data))

    def peer_recv(self) -> Frame:
        return Frame(self.far.recv(65536))


@pytest.fixture
def rig() -> Iterator[tuple[Stack, SocketpairDevice, Runtime]]:
    stack = make_stack(now=time.monotonic())
    device = SocketpairDevice()
    runtime = Runtime(stack, device)
    runtime.run_once(0)  # sends the gratuitous ARP
    assert device.peer_recv().data[12:14] == b"\x08\x06"
    yield stack, device, runtime
    runtime.close()
    device.close()


def _learn_peer(device: SocketpairDevice, runtime: Runtime) -> None:
    device.peer_send(arp_frame(ArpOp.REQUEST))
    runtime.run_once(1.0)
    device.peer_recv()  # our ARP reply


Rig = tuple[Stack, SocketpairDevice, Runtime]


def test_runtime_answers_a_ping_arriving_on_the_device(rig: Rig) -> None:
    _stack, device, runtime = rig
    _learn_peer(device, runtime)
    device.peer_send(echo_request_frame(ident=9, seq=3, payload=b"abc"))
    runtime.run_once(1.0)
    reply = device.peer_recv()
    assert bytes(reply.data[0:6]) == MAC_PEER and bytes(reply.data[6:12]) == MAC_A
    [(_ip, body)] = ipv4s([reply])
    echo = parse_icmp(body)
    assert isinstance(echo, IcmpEcho)
    assert (echo.type, echo.ident, echo.seq, echo.payload) == (IcmpType.ECHO_REPLY, 9, 3, b"abc")


def test_runtime_fires_arp_retries_at_the_stack_deadline(rig: Rig) -> None:
    stack, device, runtime = rig
    sock = stack.udp_socket()
    runtime.call(lambda: sock.sendto(b"x", ("10.0.2.77", 9), runtime.clock()))
    assert device.peer_recv().data[12:14] == b"\x08\x06"  # first request, sent by call()
    started = time.monotonic()
    runtime.run_once(5.0)  # sleeps until the retry is due, then sends it
    assert 0.5 < time.monotonic() - started < 4.0
    assert device.peer_recv().data[12:14] == b"\x08\x06"
    assert stack.counters["arp.tx.request"] == 2


def test_runtime_runs_registered_fd_callbacks_hooks_and_timers(rig: Rig) -> None:
    _stack, _device, runtime = rig
    a, b = socket.socketpair()
    seen: list[str] = []
    try:
        runtime.register(a, lambda mask: seen.append(f"fd:{a.recv(10)!r}"))
        runtime.add_hook(lambda now: seen.append("hook") or None)  # type: ignore[func-returns-value]
        runtime.call_later(0.05, lambda: seen.append("timer"))
        cancelled = runtime.call_later(0.01, lambda: seen.append("cancelled"))
        cancelled.cancel()
        b.send(b"hi")
        runtime.run_once(1.0)
        assert "fd:b'hi'" in seen and "hook" in seen
        deadline = time.monotonic() + 2
        while "timer" not in seen and time.monotonic() < deadline:
            runtime.run_once(1.0)
        assert "timer" in seen and "cancelled" not in seen
        runtime.unregister(a)
    finally:
        a.close()
        b.close()


def test_runtime_thread_mode_serves_a_udp_socket_for_a_client_thread(rig: Rig) -> None:
    stack, device, runtime = rig
    _learn_peer(device, runtime)
    runtime.start_thread()
    try:
        sock = runtime.call(stack.udp_socket)
        runtime.call(lambda: sock.bind(("", 4000)))
        results: list[bytes] = []

        def client() -> None:
            assert runtime.wait_until(lambda: sock.readable, timeout=5.0)
            results.append(runtime.call(lambda: sock.recv(100)))

        thread = threading.Thread(target=client)
        thread.start()
        device.peer_send(udp_frame(b"to the app", dport=4000))
        thread.join(5.0)
        assert results == [b"to the app"]
        runtime.call(lambda: sock.sendto(b"from the app", ("10.0.2.2", 5000), runtime.clock()))
        [(_ip, body)] = ipv4s([device.peer_recv()])
        header, data = parse_udp(body, src=_ip.src, dst=_ip.dst)
        assert (header.src_port, bytes(data)) == (4000, b"from the app")
    finally:
        runtime.stop()
    assert not runtime.in_loop_thread


def test_runtime_call_propagates_the_callers_exception(rig: Rig) -> None:
    _stack, _device, runtime = rig
    with pytest.raises(ZeroDivisionError):
        runtime.call(lambda: 1 // 0)


def test_a_failing_device_stops_the_loop_thread_and_wakes_waiters(rig: Rig) -> None:
    _stack, device, runtime = rig

    def broken(now: float) -> list[Frame]:
        raise OSError(5, "device unplugged")

    device.receive = broken  # type: ignore[method-assign]
    runtime.start_thread()
    device.peer_send(echo_request_frame())
    assert runtime.wait_until(lambda: False, timeout=5.0) is False
    assert isinstance(runtime.error, OSError)
    runtime.stop()


def test_client_threads_exchange_datagrams_over_loopback_in_thread_mode(rig: Rig) -> None:
    stack, _device, runtime = rig
    runtime.start_thread()
    try:
        server = runtime.call(stack.udp_socket)
        runtime.call(lambda: server.bind(("", 7)))
        errors: list[BaseException] = []

        def echo() -> None:
            try:
                for _ in range(400):
                    assert runtime.wait_until(lambda: server.readable, timeout=5.0)
                    data, peer = runtime.call(lambda: server.recvfrom(65536))
                    runtime.call(lambda d=data, p=peer: server.sendto(  # type: ignore[misc]
                        d, p, runtime.clock()))
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)

        def client(tag: int) -> None:
            try:
                sock = runtime.call(stack.udp_socket)
                runtime.call(lambda: sock.connect(("10.0.2.15", 7), runtime.clock()))
                for i in range(200):
                    message = b"%d:%d" % (tag, i)
                    runtime.call(lambda m=message: sock.send(m, runtime.clock()))  # type: ignore[misc]
                    assert runtime.wait_until(lambda: sock.readable, timeout=5.0)
                    assert runtime.call(lambda: sock.recv(100)) == message
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=echo)] + [
            threading.Thread(target=client, args=(t,)) for t in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)
        assert errors == []
        assert stack.counters["ipv4.tx.loopback"] == 800
    finally:
        runtime.stop()


def test_datagram_to_ourselves_from_an_fd_callback_is_seen_by_hooks_in_the_same_iteration(
        rig: Rig) -> None:
    stack, _device, runtime = rig
    server = stack.udp_socket()
    server.bind(("", 7))
    client = stack.udp_socket()
    seen: list[set[object]] = []
    runtime.add_hook(lambda now: seen.append(stack.take_changed()) or None)  # type: ignore[func-returns-value]
    a, b = socket.socketpair()
    try:
        def on_ready(mask: int) -> None:
            a.recv(10)
            client.sendto(b"self", ("10.0.2.15", 7), runtime.clock())

        runtime.register(a, on_ready)
        runtime.run_once(0)
        seen.clear()
        b.send(b"go")
        runtime.run_once(1.0)
        assert any(server in changed for changed in seen)
        assert server.recv(10) == b"self"
        runtime.unregister(a)
    finally:
        a.close()
        b.close()
