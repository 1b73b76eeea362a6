"""``vipernet run``: an unmodified urllib program goes through netd (user link, no root)."""

from __future__ import annotations

import errno
import functools
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed import stop_process, wait_for
from vipernet.cli.cmd_run import child_environment
from vipernet.runhook import ENV_FLAG, SHIM_DIR, patch

SRC = str(Path(__file__).resolve().parents[2] / "src")


def vipernet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vipernet.cli.main", *args]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = SRC + os.pathsep + out.get("PYTHONPATH", "")
    return out


@pytest.fixture
def web(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.html").write_text("hello through the stack\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def netd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    sock = str(tmp_path / "netd.sock")
    pcap = tmp_path / "netd.pcap"
    proc = subprocess.Popen(vipernet_argv("netd", "--link", "user", "--socket", sock,
                                          "--pcap", str(pcap)),
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=20,
                 what="netd's socket")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield sock, pcap
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


def syns_in(pcap: Path, dst: str, port: int) -> list[str]:
    """Sources of TCP SYNs to dst:port in a pcap file (little- or big-endian)."""
    data = pcap.read_bytes()
    order = "<" if data[:4] == bytes.fromhex("d4c3b2a1") else ">"
    at = 24
    found = []
    while at + 16 <= len(data):
        incl = struct.unpack_from(order + "I", data, at + 8)[0]
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        l4 = 14 + (frame[14] & 0x0F) * 4
        if (socket.inet_ntoa(frame[30:34]) == dst
                and struct.unpack_from("!H", frame, l4 + 2)[0] == port
                and frame[l4 + 13] & 0x02 and not frame[l4 + 13] & 0x10):
            found.append(socket.inet_ntoa(frame[26:30]))
    return found


def test_urllib_in_an_unmodified_program_fetches_through_netd(
        web: int, netd: tuple[str, Path]) -> None:
    sock, _pcap = netd
    code = ("import urllib.request, socket; r = urllib.request.urlopen("
            f"'http://10.0.2.2:{web}/'); print(r.status, r.read().decode().strip(), "
            "type(socket.create_connection(('10.0.2.2', %d))).__module__)" % web)
    result = subprocess.run(vipernet_argv("run", "--socket", sock, "--", sys.executable, "-c",
                                          code), env=env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "hello", "through", "the", "stack",
                                     "vipernet.netclient.sockets"]


def test_the_capture_shows_the_program_s_connection_came_from_the_stack(
        web: int, netd: tuple[str, Path], tmp_path: Path) -> None:
    sock, pcap = netd
    code = f"import urllib.request; urllib.request.urlopen('http://10.0.2.2:{web}/').read()"
    result = subprocess.run(vipernet_argv("run", "--socket", sock, "--", sys.executable, "-c",
                                          code), env=env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: pcap.exists() and bool(syns_in(pcap, "10.0.2.2", web)), timeout=10,
             what="the SYN in the capture")
    assert set(syns_in(pcap, "10.0.2.2", web)) == {"10.0.2.15"}


def test_the_program_s_exit_status_is_returned_and_a_missing_program_is_127(
        netd: tuple[str, Path]) -> None:
    sock, _ = netd
    status = subprocess.run(vipernet_argv("run", "--socket", sock, "--", sys.executable, "-c",
                                          "raise SystemExit(7)"), env=env(), timeout=60)
    assert status.returncode == 7
    missing = subprocess.run(vipernet_argv("run", "--", "/nonexistent/prog"), env=env(),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 127 and "nonexistent" in missing.stderr


def test_without_the_flag_the_shim_changes_nothing() -> None:
    code = "import socket; print(socket.socket.__module__, socket.create_connection.__module__)"
    plain = dict(env())
    plain["PYTHONPATH"] = SHIM_DIR + os.pathsep + plain["PYTHONPATH"]
    plain.pop(ENV_FLAG, None)
    result = subprocess.run([sys.executable, "-c", code], env=plain, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["socket", "socket"]
    assert "vipernet" not in result.stdout


def test_child_environment_puts_the_shim_first_and_sets_the_flag() -> None:
    out = child_environment({"PYTHONPATH": "/a:/b"}, "/tmp/x.sock")
    parts = out["PYTHONPATH"].split(os.pathsep)
    assert parts[0] == SHIM_DIR and parts[-2:] == ["/a", "/b"]
    assert out[ENV_FLAG] == "1" and out["VIPERNET_SOCKET"] == "/tmp/x.sock"


def test_other_families_stay_stdlib_and_raw_sockets_are_refused() -> None:
    patch.install()
    try:
        a, b = socket.socketpair()  # AF_UNIX: never routed
        with a, b:
            assert isinstance(a, socket.socket)
            a.sendall(b"x")
            assert b.recv(1) == b"x"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            assert type(unix).__module__ == "socket"
        # Never the host's raw sockets, of either family: they would go around the stack.
        for family in (socket.AF_INET, socket.AF_INET6):
            with pytest.raises(OSError) as raw:
                socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            assert raw.value.errno == errno.ESOCKTNOSUPPORT
        assert patch.installed()
    finally:
        patch.uninstall()
    assert not patch.installed() and socket.socket.__module__ == "socket"
    assert socket.socket is not None and socket.create_connection.__module__ == "socket"


def test_requests_and_urllib3_are_routed_too(web: int, netd: tuple[str, Path]) -> None:
    pytest.importorskip("requests")
    sock, pcap = netd
    code = ("import requests, urllib3; "
            f"print(requests.get('http://10.0.2.2:{web}/').status_code, "
            f"urllib3.PoolManager().request('GET', 'http://10.0.2.2:{web}/').status)")
    result = subprocess.run(vipernet_argv("run", "--socket", sock, "--", sys.executable, "-c",
                                          code), env=env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200"]
    wait_for(lambda: pcap.exists() and len(syns_in(pcap, "10.0.2.2", web)) >= 2, timeout=10,
             what="both SYNs in the capture")
