"""A bare namespace for user-mode link tests: lo, and a veth pair with a default route.

passt needs an interface with a default route to use as its template; traffic never
leaves the namespace (the route points at an address nobody has).  Processes started with
:meth:`Namespace.start` and the namespace itself are removed by :meth:`Namespace.close`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.testbed import require_root, stop_process

_counter = itertools.count()
SRC = str(Path(__file__).resolve().parents[2] / "src")


class Namespace:
    __test__ = False

    def __init__(self, tag: str) -> None:
        require_root()
        self.name = f"vn-{tag}-{os.getpid()}-{next(_counter)}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"vipernet-{tag}-"))
        os.chmod(self.workdir, 0o755)
        self.processes: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            for argv in (["ip", "link", "set", "lo", "up"],
                         ["ip", "link", "add", "uv0", "type", "veth", "peer", "name", "uv1"],
                         ["ip", "addr", "add", "192.0.2.10/24", "dev", "uv0"],
                         ["ip", "link", "set", "uv0", "up"], ["ip", "link", "set", "uv1", "up"],
                         ["ip", "route", "add", "default", "via", "192.0.2.1"]):
                self.run(argv)
        except BaseException:
            self.close()
            raise

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra)
        return env

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), check=check, capture_output=True, text=True,
                              timeout=timeout, **kwargs)

    def vipernet(self, *args: str, check: bool = False, timeout: float = 120,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "vipernet.cli.main", *args], check=check,
                        timeout=timeout, env=env or self.env())

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.argv(argv), start_new_session=True,
                                                         **kwargs)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
