"""``vipernet netd`` as a child process for the user-mode and DHCP tests, and the CLI beside it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tests.slirp.nsrig import SRC
from tests.testbed import wait_for

CLI = [sys.executable, "-m", "vipernet.cli.main"]
Starter = Callable[..., "subprocess.Popen[bytes]"]


def cli_env() -> dict[str, str]:
    """This environment with our sources first on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(list(argv), start_new_session=True, **kwargs)


def start_netd(sock: str, *args: str, start: Starter = _popen) -> subprocess.Popen[bytes]:
    """``vipernet netd ARGS --socket SOCK`` started by ``start`` (e.g. a TestBed's, which
    stops it on close; else the caller stops it), once its socket is there."""
    proc = start([*CLI, "netd", *args, "--socket", sock], env=cli_env())
    wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=30,
             what="netd's socket")
    assert proc.poll() is None, f"netd exited with {proc.returncode}"
    return proc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_netd_on_a_free_port(
        sock: str, args: Callable[[int], Sequence[str]]) -> tuple[subprocess.Popen[bytes], int]:
    """``start_netd(sock, *args(PORT))`` for a free host PORT (e.g. to forward), and PORT.
    free_port() lets the port go before netd binds it: under load another socket can take
    it in between and netd exits (address in use); then it is tried on another port."""
    for _attempt in range(4):
        port = free_port()
        proc = _popen([*CLI, "netd", *args(port), "--socket", sock], env=cli_env())

        def settled(proc: subprocess.Popen[bytes] = proc) -> bool:
            return os.path.exists(sock) or proc.poll() is not None

        wait_for(settled, timeout=30, what="netd's socket")
        if proc.poll() is None:
            return proc, port
    port = free_port()
    return start_netd(sock, *args(port)), port  # the last try: fails with netd's status


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def info(sock: str) -> dict[str, Any]:
    """``vipernet info --json`` of the netd at ``sock``."""
    result = cli("info", "--json", "--socket", sock)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report
