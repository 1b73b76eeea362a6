"""Kernel mode on a real TAP: VIPER_KERNEL_ENABLE_NET=1 runs the stack inside the program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import GATEWAY, TestBed, stop_process

pytestmark = pytest.mark.testbed
SRC = str(Path(__file__).resolve().parents[2] / "src")

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.2", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""

PROGRAM = """
import hashlib, os, sys
from vipernet import socket as vs
port = int(sys.argv[1])
with vs.socket(vs.AF_INET, vs.SOCK_DGRAM) as s:
    s.settimeout(5)
    for size in (10, 8000):
        payload = os.urandom(size)
        s.sendto(payload, ("10.0.2.2", port))
        data, peer = s.recvfrom(65535)
        print(size, data == payload, peer[0])
from vipernet.netclient.client import default_client
info = default_client().info()
print(info["mode"], info["ip"], info["pid"] == os.getpid())
"""


def test_kernel_mode_runs_the_same_socket_api_in_process() -> None:
    with TestBed("ndk") as bed:
        echo = bed.start([sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE)
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        env = {**os.environ, "PYTHONPATH": SRC, "VIPER_KERNEL_ENABLE_NET": "1",
               "VIPERNET_LINK": f"tap:{bed.tap}@{bed.name}"}
        env.pop("VIPERNET_SOCKET", None)
        result = subprocess.run([sys.executable, "-c", PROGRAM, str(port)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"10 True {GATEWAY}", f"8000 True {GATEWAY}",
                                              "kernel 10.0.2.15 True"]
        ping = subprocess.run([sys.executable, "-m", "vipernet.cli.main", "ping", GATEWAY,
                               "-c", "2", "-i", "0.2"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert ping.returncode == 0, ping.stderr
        assert "2 packets transmitted, 2 received, 0% packet loss" in ping.stdout
        stop_process(echo)
