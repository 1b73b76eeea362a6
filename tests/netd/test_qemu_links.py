"""``vipernet netd --link qemu-stream:... / qemu-dgram:...``: the QEMU socket protocols as links.

netd runs as a child process (so exit codes and stderr are the real ones); the test is the
other end of the link, a :class:`~tests.netd_rig.PeerEcho` stack at 10.0.2.2 on a
:class:`~vipernet.link.qemu.StreamDevice` or :class:`~vipernet.link.qemu.DgramDevice`.  No
root needed: everything is UNIX sockets and loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netd_rig import PEER, PeerEcho, cli_env
from tests.testbed import stop_process, wait_for
from vipernet import socket as vsocket
from vipernet.link.qemu import DgramDevice, StreamDevice
from vipernet.netclient.client import connect
from vipernet.netd.links import LinkSpecError, open_link, parse_link, socket_address


class NetdProcess:
    """``vipernet netd --link LINK`` in a child process, its stderr kept in a file."""

    def __init__(self, tmp_path: Path, link: str) -> None:
        self.socket_path = tmp_path / "netd.sock"
        self.err_path = tmp_path / "netd.err"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vipernet.cli.main", "netd", "--link", link,
                 "--socket", str(self.socket_path), "--seed", "1"],
                env=cli_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def wait_serving(self) -> None:
        wait_for(lambda: self.socket_path.exists() or self.proc.poll() is not None,
                 timeout=20, what="netd's IPC socket")
        assert self.proc.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def netd_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[NetdProcess] = []

    def start(link: str) -> NetdProcess:
        netd = NetdProcess(tmp_path, link)
        started.append(netd)
        return netd

    yield start
    for netd in started:
        netd.stop()


def exchange_through(netd: NetdProcess) -> None:
    """A UDP echo (small and fragmented) and a ping to the peer, through netd's IPC."""
    with connect(str(netd.socket_path)) as client:
        with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM, client=client) as sock:
            sock.settimeout(10)
            for size in (1, 1472, 8192):
                payload = os.urandom(size)
                sock.sendto(payload, (PEER, 7))
                assert sock.recvfrom(65535) == (payload, (PEER, 7))
        reply = client.ping(PEER, 1, b"x" * 56, 5)
        assert reply.source == PEER


def test_netd_listens_for_a_stream_peer_then_stops_in_one_line_when_it_hangs_up(
        netd_factory: Any, tmp_path: Path) -> None:
    link_path = tmp_path / "link.sock"
    netd = netd_factory(f"qemu-stream:{link_path},server")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def connected() -> bool:  # the path appears at bind(), a moment before listen()
        assert netd.proc.poll() is None, netd.stderr()
        try:
            sock.connect(str(link_path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        return True

    wait_for(connected, timeout=20, what="netd listening for its stream peer")
    device = StreamDevice(sock, name="peer")
    peer = PeerEcho(device)
    try:
        netd.wait_serving()
        assert not link_path.exists(), "the listening path is removed once the peer is in"
        exchange_through(netd)
    finally:
        peer.close()
        device.close()  # netd sees EOF: the link is gone for good
    assert netd.proc.wait(timeout=20) == 1
    err = netd.stderr()
    last = err.strip().splitlines()[-1]
    assert last.startswith("vipernet netd: the link went away: "), err
    assert "peer closed the connection" in last
    assert "Traceback" not in err
    assert not netd.socket_path.exists(), "socket file left behind"


def test_sigterm_while_waiting_for_a_stream_peer_ends_netd_cleanly(netd_factory: Any,
                                                                    tmp_path: Path) -> None:
    link_path = tmp_path / "link.sock"
    netd = netd_factory(f"qemu-stream:{link_path},server")
    wait_for(lambda: link_path.exists() or netd.proc.poll() is not None, timeout=20,
             what="netd listening for its stream peer")
    netd.proc.send_signal(signal.SIGTERM)
    assert netd.proc.wait(timeout=20) == 130
    assert netd.stderr().strip().splitlines()[-1] == (
        "vipernet netd: interrupted before it started")
    assert not link_path.exists() and not netd.socket_path.exists()


def test_netd_connects_to_a_stream_peer_over_tcp(netd_factory: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    netd = netd_factory(f"qemu-stream:127.0.0.1:{port}")
    listener.settimeout(20)
    conn, _ = listener.accept()
    listener.close()
    device = StreamDevice(conn, name="peer")
    peer = PeerEcho(device)
    try:
        netd.wait_serving()
        exchange_through(netd)
        netd.proc.send_signal(signal.SIGTERM)
        assert netd.proc.wait(timeout=20) == 0, netd.stderr()
    finally:
        peer.close()
        device.close()


def test_netd_exchanges_frames_over_qemu_dgram_unix_sockets(netd_factory: Any,
                                                            tmp_path: Path) -> None:
    ours, theirs = str(tmp_path / "netd.dgram"), str(tmp_path / "peer.dgram")
    device = DgramDevice.open(theirs, ours)
    peer = PeerEcho(device)
    try:
        netd = netd_factory(f"qemu-dgram:{ours},{theirs}")
        netd.wait_serving()
        exchange_through(netd)
        netd.proc.send_signal(signal.SIGTERM)
        assert netd.proc.wait(timeout=20) == 0, netd.stderr()
        assert not os.path.exists(ours), "netd's datagram socket file left behind"
    finally:
        peer.close()
        device.close()


def test_netd_says_in_one_line_when_no_stream_peer_listens(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
         f"qemu-stream:{tmp_path / 'nobody.sock'}", "--socket", str(tmp_path / "netd.sock")],
        env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vipernet netd: "), result.stderr
    assert "nobody.sock" in lines[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("/run/passt.sock", "/run/passt.sock"),
    ("relative.sock", "relative.sock"),
    ("./dir:with:colons/x.sock", "./dir:with:colons/x.sock"),
    ("127.0.0.1:5000", ("127.0.0.1", 5000)),
    ("localhost:1", ("localhost", 1)),
])
def test_socket_addresses_are_paths_or_host_and_port(text: str,
                                                     expected: str | tuple[str, int]) -> None:
    assert socket_address(text) == expected


@pytest.mark.parametrize("link", ["qemu-stream:127.0.0.1:99999", "qemu-stream:host:http",
                                  "qemu-stream:/x.sock,client", "qemu-dgram:/only-one",
                                  "qemu-dgram:,/b"])
def test_bad_qemu_link_arguments_are_usage_errors(link: str) -> None:
    with pytest.raises(LinkSpecError):
        open_link(parse_link(link))
