"""netd on a test bed's TAP, for the tests that run TLS and HTTP clients over our own stack."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.testbed import TestBed, wait_for

SRC = str(Path(__file__).resolve().parents[2] / "src")


def start_netd(bed: TestBed) -> dict[str, str]:
    """Start ``vipernet netd`` on the bed's TAP; return the environment for its clients.

    In that environment a ``vipernet`` program reaches the namespace through netd's IPC
    socket: kernel mode and the OS-socket transport are switched off.  The bed stops netd
    and removes its socket when it closes.
    """
    path = str(bed.workdir / "netd.sock")
    env = {**os.environ, "PYTHONPATH": SRC, "VIPERNET_SOCKET": path}
    env.pop("VIPERNET_TRANSPORT", None)
    env.pop("VIPER_KERNEL_ENABLE_NET", None)
    errors = bed.workdir / "netd.err"
    with errors.open("wb") as err:  # the child keeps its own copy of the descriptor
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env, stderr=err)
    wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
    if netd.poll() is not None:
        pytest.fail(f"netd exited: {errors.read_text()}")
    return env
