"""``vipernet gateway`` as a process, and the QEMU arguments that put a guest's NIC on it.

:class:`GatewayProcess` starts the gateway with one guest port of a given backend
(``stream``, ``dgram`` or ``vhost-user``) in a work directory, waits until it serves, and
knows the matching :class:`~tests.vm.guest.Guest` arguments (:meth:`guest_args`).  The
benchmark (benchmarks/vm_gateway.py) and the tests share it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.testbed import stop_process, wait_for
from tests.vm.guest import accelerator

SRC = str(Path(__file__).resolve().parents[2] / "src")
BACKENDS = ("stream", "dgram", "vhost-user")


class GatewayProcess:
    __test__ = False

    def __init__(self, backend: str, workdir: Path, *options: str, mtu: int = 1500) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.mtu = mtu
        self._workdir = workdir
        port = self._port_option()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vipernet.cli.main", "gateway", *port, "--mtu", str(mtu),
             *options],
            env={**os.environ, "PYTHONPATH": SRC}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(self._serving, timeout=30, what=f"vipernet gateway --{port[0][2:]}")
        except BaseException:
            self.close()
            raise

    def _port_option(self) -> list[str]:
        work = self._workdir
        if self.backend == "stream":
            return ["--qemu-stream", str(work / "gateway.sock")]
        if self.backend == "dgram":
            return ["--qemu-dgram", f"{work / 'gateway.dgram'},{work / 'qemu.dgram'}"]
        return ["--vhost-user", str(work / "vhost.sock")]

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise AssertionError(f"vipernet gateway exited: {err.strip()}")
        path = {"stream": "gateway.sock", "dgram": "gateway.dgram",
                "vhost-user": "vhost.sock"}[self.backend]
        return (self._workdir / path).exists()

    def guest_args(self) -> dict[str, Any]:
        """``netdev`` and the keyword arguments of :class:`~tests.vm.guest.Guest` for it."""
        work = self._workdir
        device = [f"host_mtu={self.mtu}"] if self.mtu != 1500 else []
        if self.backend == "stream":
            netdev = f"stream,server=off,addr.type=unix,addr.path={work / 'gateway.sock'}"
            return {"netdev": netdev, "device_args": ",".join(device)}
        if self.backend == "dgram":
            netdev = (f"dgram,local.type=unix,local.path={work / 'qemu.dgram'},"
                      f"remote.type=unix,remote.path={work / 'gateway.dgram'}")
            return {"netdev": netdev, "device_args": ",".join(device)}
        # QEMU 7.2 under TCG crashes wiring MSI-X vectors to a vhost-user NIC's call
        # eventfds (tests/link/test_vhost_user_qemu.py): legacy interrupts there.
        if accelerator() == "tcg":
            device.append("vectors=0")
        return {"netdev": "vhost-user,chardev=vu0", "device_args": ",".join(device),
                "shared_memory": True,
                "extra_qemu": ["-chardev", f"socket,id=vu0,path={work / 'vhost.sock'}"]}

    def close(self) -> None:
        stop_process(self.process)
        if self.process.stderr is not None:
            self.process.stderr.close()
