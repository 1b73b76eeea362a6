"""100 MB each way through netd (the daemon on a TAP, our client over its IPC socket),
sha256-equal on both sides (``VIPERNET_TCP_NETD_MB`` to change the size)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tcp.kernel_rig import CLIENT, SERVER, pseudo_random_sha256
from tests.testbed import GATEWAY, TestBed, stop_process, wait_for

pytestmark = pytest.mark.testbed

MB = int(os.environ.get("VIPERNET_TCP_NETD_MB", "100"))
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _accepting(path: str) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


@pytest.fixture
def netd(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestBed]:
    from vipernet.netclient import default

    bed = TestBed("tcn")
    proc: Any = None
    try:
        path = str(bed.workdir / "netd.sock")
        env = {**os.environ, "PYTHONPATH": SRC, "VIPERNET_SOCKET": path}
        env.pop("VIPER_KERNEL_ENABLE_NET", None)
        proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env)
        # the socket file appears at bind(); wait until netd really accepts on it
        wait_for(lambda: _accepting(path) or proc.poll() is not None, what="netd socket",
                 timeout=30)
        assert proc.poll() is None, "netd exited"
        monkeypatch.setenv("VIPERNET_SOCKET", path)
        monkeypatch.delenv("VIPER_KERNEL_ENABLE_NET", raising=False)
        default.reset_default_client()
        yield bed
    finally:
        default.reset_default_client()
        if proc is not None:
            stop_process(proc)
        bed.close()


def test_upload_through_netd_arrives_sha256_equal(netd: TestBed) -> None:
    from vipernet import socket as vsocket

    proc = netd.start([sys.executable, "-c", SERVER, "sink"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    block = os.urandom(1 << 20)
    want = hashlib.sha256()
    with vsocket.create_connection((GATEWAY, port), timeout=60) as s:
        for _ in range(MB):
            s.sendall(block)
            want.update(block)
        s.shutdown(vsocket.SHUT_WR)
        answer = b""
        while chunk := s.recv(1024):
            answer += chunk
    digest, length = answer.decode().split()
    assert (digest, int(length)) == (want.hexdigest(), MB << 20)


def test_download_through_netd_arrives_sha256_equal(netd: TestBed) -> None:
    from vipernet import socket as vsocket

    size = MB << 20
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_STREAM) as lst:
        lst.bind(("0.0.0.0", 5003))
        lst.listen(4)
        lst.settimeout(30)
        proc = netd.start([sys.executable, "-c", CLIENT, "5003", str(size), "3"],
                          stdout=subprocess.PIPE)
        conn, _peer = lst.accept()
        conn.settimeout(60)
        got = hashlib.sha256()
        n = 0
        buf = bytearray(1 << 20)
        while k := conn.recv_into(buf):
            got.update(memoryview(buf)[:k])
            n += k
        conn.close()
    assert proc.stdout is not None
    kernel_digest = proc.stdout.readline().decode().strip()
    assert n == size
    assert got.hexdigest() == kernel_digest == pseudo_random_sha256(size, 3)
