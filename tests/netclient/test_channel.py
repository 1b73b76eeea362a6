"""The AF_UNIX channel: clear errors when netd is absent or dies, replies matched by id."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipernet.netclient import default
from vipernet.netclient.channel import UnixChannel
from vipernet.netd import protocol as p


def test_missing_socket_says_netd_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="netd is not running"):
        UnixChannel(str(tmp_path / "nope.sock"))


def test_socket_nobody_listens_on_is_connection_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(ConnectionRefusedError, match="netd is not running"):
        UnixChannel(path)


def test_default_client_follows_vipernet_socket(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPERNET_SOCKET", str(tmp_path / "x.sock"))
    monkeypatch.delenv("VIPER_KERNEL_ENABLE_NET", raising=False)
    default.reset_default_client()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "x.sock")):
        default.default_client()


class FakeNetd:
    """Answers requests out of order, then can die mid-request."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn: socket.socket | None = None
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.conn, _ = self.listener.accept()
        self.accepted.set()

    def read_requests(self, n: int) -> list[p.Message]:
        assert self.conn is not None
        decoder = p.FrameDecoder()
        out: list[p.Message] = []
        while len(out) < n:
            out += decoder.feed(self.conn.recv(65536))
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def fake_and_channel(tmp_path: Path) -> Iterator[tuple[FakeNetd, UnixChannel]]:
    """A FakeNetd and a UnixChannel connected to it; both closed afterwards."""
    path = str(tmp_path / "fake.sock")
    fake = FakeNetd(path)
    channel = UnixChannel(path)
    fake.accepted.wait(5)
    yield fake, channel
    channel.close()
    fake.close()


def call_in_thread(channel: UnixChannel, code: int, timeout: float | None
                   ) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``channel.call(code)`` in a thread; the OSError it raises lands in the list."""
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            channel.call(code, b"", timeout)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, errors


def test_replies_out_of_order_reach_the_right_threads(
        fake_and_channel: tuple[FakeNetd, UnixChannel]) -> None:
    fake, channel = fake_and_channel
    results: dict[int, bytes] = {}

    def ask(n: int) -> None:
        results[n] = channel.call(0x29, bytes([n]), 5).body

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    requests = fake.read_requests(3)
    assert fake.conn is not None
    for req in reversed(requests):
        fake.conn.sendall(p.reply_to(req, b"answer" + req.body).encode())
    for t in threads:
        t.join(5)
    assert results == {n: b"answer" + bytes([n]) for n in range(3)}


def test_error_status_becomes_the_matching_oserror_subclass(
        fake_and_channel: tuple[FakeNetd, UnixChannel]) -> None:
    fake, channel = fake_and_channel
    thread, errors = call_in_thread(channel, 0x07, 5)
    request = fake.read_requests(1)[0]
    assert fake.conn is not None
    fake.conn.sendall(p.error_reply(request, 111, "Connection refused by peer").encode())
    thread.join(5)
    assert isinstance(errors[0], ConnectionRefusedError)
    assert "refused by peer" in str(errors[0])


def test_netd_dying_mid_request_fails_the_waiter_instead_of_hanging(
        fake_and_channel: tuple[FakeNetd, UnixChannel]) -> None:
    fake, channel = fake_and_channel
    thread, errors = call_in_thread(channel, 0x07, None)
    fake.read_requests(1)
    fake.close()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(errors[0], ConnectionResetError)
    with pytest.raises(OSError):
        channel.call(0x29, b"", 1)
