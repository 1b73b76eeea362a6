"""Kernel mode on the user link: the whole stack and gateway inside one unprivileged process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.slirp.nsrig import SRC
from tests.slirp.rig import HostServer


def test_vipernet_socket_in_kernel_mode_reaches_host_loopback_over_the_user_link() -> None:
    payload = os.urandom(2 * 1024 * 1024)
    server = HostServer(lambda conn: conn.sendall(payload))
    try:
        env = dict(os.environ)
        env.update(PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""),
                   VIPER_KERNEL_ENABLE_NET="1", VIPERNET_LINK="user")
        env.pop("VIPERNET_SOCKET", None)
        code = ("import hashlib, vipernet.socket as s\n"
                f"c = s.create_connection(('10.0.2.2', {server.port}), timeout=30)\n"
                "h = hashlib.sha256()\n"
                "while data := c.recv(1 << 20):\n"
                "    h.update(data)\n"
                "print(h.hexdigest())\n")
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        import hashlib

        assert result.stdout.strip() == hashlib.sha256(payload).hexdigest()
    finally:
        server.close()
