"""Hostile and broken servers: a tampered packet, garbage, a stall, a hang-up.  Each ends
in a clear typed error within its timeout, never a hang."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ssh.sshd import Sshd
from vipernet.ssh.algorithms import Preferences
from vipernet.ssh.client import SSHClient
from vipernet.ssh.errors import ConnectionLost, MACError, SSHError, SSHProtocolError, SSHTimeout


@contextlib.contextmanager
def fake_server(behaviour: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection TCP server on loopback running ``behaviour`` on the accepted socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            with contextlib.suppress(OSError):
                behaviour(conn)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        listener.close()
        thread.join(5)


def _connect(port: int, timeout: float = 2.0) -> SSHClient:
    return SSHClient.connect("127.0.0.1", port, username="u", verify_host_key=lambda k: None,
                             timeout=timeout)


def _timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def test_server_sending_binary_garbage_is_refused_quickly() -> None:
    with fake_server(lambda s: s.sendall(bytes(range(256)) * 64)) as port:
        start = time.monotonic()
        with pytest.raises(SSHProtocolError, match="invalid characters"):
            _connect(port, timeout=30.0)
        assert time.monotonic() - start < 10.0  # refused at once, not at the timeout


def test_server_sending_an_endless_line_is_refused() -> None:
    with fake_server(lambda s: s.sendall(b"x" * 100_000)) as port, \
            pytest.raises(SSHProtocolError, match="line of more than"):
        _connect(port)


def test_garbage_after_a_valid_version_is_a_protocol_error() -> None:
    def behaviour(s: socket.socket) -> None:
        s.sendall(b"SSH-2.0-Fake\r\n" + b"\xff" * 64)

    with fake_server(behaviour) as port, pytest.raises(SSHProtocolError, match="packet length"):
        _connect(port)


def test_server_that_says_nothing_times_out() -> None:
    with fake_server(lambda s: None) as port:
        start = time.monotonic()
        with pytest.raises(SSHTimeout):
            _connect(port, timeout=1.0)
        assert time.monotonic() - start < 5.0


def test_server_stalling_after_its_version_times_out() -> None:
    with fake_server(lambda s: s.sendall(b"SSH-2.0-Stall\r\n")) as port:
        start = time.monotonic()
        with pytest.raises(SSHTimeout):
            _connect(port, timeout=1.0)
        assert time.monotonic() - start < 5.0


def test_server_hanging_up_mid_handshake_is_connection_lost() -> None:
    def behaviour(s: socket.socket) -> None:
        s.sendall(b"SSH-2.0-Bye\r\n")
        s.recv(100)
        s.shutdown(socket.SHUT_RDWR)

    with fake_server(behaviour) as port, pytest.raises(ConnectionLost, match="handshake"):
        _connect(port)


class TamperProxy:
    """Forwards loopback TCP to sshd, flipping one bit of the server's stream at ``offset``."""

    def __init__(self, target_port: int, offset: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.offset = offset
        self.flipped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        up = threading.Thread(target=self._pipe, args=(client, server, False), daemon=True)
        up.start()
        self._pipe(server, client, True)
        up.join(5)
        client.close()
        server.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, tamper: bool) -> None:
        seen = 0
        try:
            while data := src.recv(65536):
                if tamper and not self.flipped and seen + len(data) > self.offset:
                    buf = bytearray(data)
                    buf[self.offset - seen] ^= 0x04
                    data = bytes(buf)
                    self.flipped = True
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.mark.testbed
@pytest.mark.parametrize("mac", ["hmac-sha2-256", "hmac-sha2-256-etm@openssh.com"])
def test_a_flipped_bit_from_the_server_ends_the_connection_with_a_mac_error(
        sshd: Sshd, tmp_path: Path, mac: str) -> None:
    proxy = TamperProxy(sshd.port, offset=300_000)
    try:
        with SSHClient.connect("127.0.0.1", proxy.port, username="root",
                               key_filename=str(sshd.user_keys["ed25519"]),
                               known_hosts=str(tmp_path / "kh"), timeout=10,
                               prefs=Preferences.pinned(mac=mac)) as client:
            with pytest.raises(SSHError) as info:
                client.exec("head -c 3000000 /dev/zero", timeout=20)
            assert proxy.flipped
            # Under encrypt-and-MAC a flip in a length field shows as a bad length first;
            # with a 300 kB offset into 32 kB packets that is a ~0.05% case.
            assert isinstance(info.value, MACError), info.value
            assert "MAC check failed" in str(info.value)
            assert client.conn.closed
    finally:
        proxy.close()
