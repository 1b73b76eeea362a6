"""Kernel mode on a real TAP: VIPER_KERNEL_ENABLE_NET=1 runs the stack inside the program."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.netd_rig import cli_env, start_udp_echo, vipernet_cli
from tests.testbed import GATEWAY, TestBed

pytestmark = pytest.mark.testbed

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
from vipernet.netclient.default import default_client
info = default_client().info()
print(info["mode"], info["ip"], info["pid"] == os.getpid())
"""


def test_kernel_mode_runs_the_same_socket_api_in_process() -> None:
    with TestBed("ndk") as bed:
        _, port = start_udp_echo(bed)
        env = cli_env(VIPER_KERNEL_ENABLE_NET="1", VIPERNET_LINK=f"tap:{bed.tap}@{bed.name}")
        env.pop("VIPERNET_SOCKET", None)
        result = subprocess.run([sys.executable, "-c", PROGRAM, str(port)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"10 True {GATEWAY}", f"8000 True {GATEWAY}",
                                              "kernel 10.0.2.15 True"]
        ping = vipernet_cli("ping", GATEWAY, "-c", "2", "-i", "0.2", env=env)
        assert ping.returncode == 0, ping.stderr
        assert "2 packets transmitted, 2 received, 0% packet loss" in ping.stdout
