"""Netd's loop: survives a transient loop error, gives up on a persistent one, shuts down."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from vipernet.link.errors import DeviceClosed
from vipernet.link.frame import Frame
from vipernet.link.memory import MemoryLink
from vipernet.netclient.client import connect
from vipernet.netd.daemon import Netd, NetdConfig
from vipernet.netd.links import LinkSpec, LinkSpecError, parse_link


class FlakyDevice:
    """A memory device whose receive() fails ``failures`` times."""

    def __init__(self, inner: Any, failures: int,
                 error: Exception | None = None) -> None:
        self.inner = inner
        self.failures = failures
        self.error = error if error is not None else OSError(5, "device hiccup")
        self.calls = 0
        self.name = inner.name
        self.capabilities = inner.capabilities

    def fileno(self) -> int | None:
        return None

    def receive(self, now: float) -> list[Frame]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        frames: list[Frame] = self.inner.receive(now)
        return frames

    def send(self, frame: Frame, now: float) -> None:
        self.inner.send(frame, now)

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        self.inner.close()


def make(tmp_path: Path, failures: int, **kwargs: Any) -> Netd:
    ours, _theirs = MemoryLink.pair()
    return Netd(NetdConfig(link=LinkSpec(kind="tap", argument="mem"),
                           socket_path=str(tmp_path / "netd.sock"), dns=()),
                device=FlakyDevice(ours, failures, **kwargs))


def test_a_transient_loop_error_does_not_stop_netd(tmp_path: Path) -> None:
    netd = make(tmp_path, failures=2)
    thread = threading.Thread(target=netd.run, daemon=True)
    thread.start()
    try:
        with connect(netd.config.socket_path) as client:
            assert client.info()["ip"] == "10.0.2.15"
    finally:
        netd.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(netd.config.socket_path)


def test_a_persistent_loop_error_ends_run_with_the_error(tmp_path: Path) -> None:
    netd = make(tmp_path, failures=1000)
    with pytest.raises(OSError, match="hiccup"):
        netd.run()
    assert not os.path.exists(netd.config.socket_path)


def test_a_closed_device_ends_run_at_once_without_retrying(tmp_path: Path) -> None:
    netd = make(tmp_path, failures=1000, error=DeviceClosed("stream: peer closed the connection"))
    with pytest.raises(DeviceClosed, match="peer closed"):
        netd.run()
    assert netd.device.calls == 1
    assert not os.path.exists(netd.config.socket_path)


def test_a_second_netd_on_a_live_socket_is_refused(tmp_path: Path) -> None:
    first = make(tmp_path, failures=0)
    try:
        with pytest.raises(OSError, match="another netd"):
            make(tmp_path, failures=0)
    finally:
        first.close()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    import socket

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "netd.sock"))
    stale.close()
    make(tmp_path, failures=0).close()


@pytest.mark.parametrize(("text", "netns", "expected"), [
    ("tap:vt0", None, LinkSpec(kind="tap", argument="vt0")),
    ("tap:vt0@ns1", None, LinkSpec(kind="tap", argument="vt0", netns="ns1")),
    ("tap:vt0", "ns2", LinkSpec(kind="tap", argument="vt0", netns="ns2")),
    ("qemu-stream:/run/passt.sock", None,
     LinkSpec(kind="qemu-stream", argument="/run/passt.sock")),
    ("qemu-stream:127.0.0.1:5000,server", None,
     LinkSpec(kind="qemu-stream", argument="127.0.0.1:5000,server")),
    ("qemu-dgram:/a.sock,/b.sock", None, LinkSpec(kind="qemu-dgram", argument="/a.sock,/b.sock")),
])
def test_link_specs_parse(text: str, netns: str | None, expected: LinkSpec) -> None:
    assert parse_link(text, netns=netns) == expected


@pytest.mark.parametrize("text", ["tap", "tap:", "warp:x", ":x", "tap:a@n1"])
def test_bad_link_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(LinkSpecError):
        parse_link(text, netns="n2" if "@" in text else None)


def test_link_specs_print_as_given() -> None:
    assert str(parse_link("tap:vt0@ns1")) == "tap:vt0@ns1"
    assert str(LinkSpec(kind="user", argument="")) == "user"
