"""Start-up time of the ``vipernet`` command, next to what any Python tool pays to start.

    python benchmarks/startup.py [-n RUNS]

Times ``vipernet --help``, ``ping --help``, ``dig --help`` and ``info`` (against a netd this
script starts on the built-in user-mode link, no root needed) as child processes, RUNS
times each (15), interleaved so that a change in machine load hits every row alike.  The
references come from the same run: ``python3 -c pass`` and ``python3 -c "import socket,
ssl"`` (the floor of any Python tool), and ``curl --version`` when curl is installed.
Wall milliseconds, median and min; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}
PYTHON = sys.executable
VIPERNET = [PYTHON, "-m", "vipernet.cli.main"]


@contextmanager
def running_netd() -> Iterator[str]:
    """A netd on the user link (no root) for ``vipernet info``; yields its socket path."""
    with tempfile.TemporaryDirectory(prefix="vipernet-startup-") as workdir:
        sock = os.path.join(workdir, "netd.sock")
        log = open(os.path.join(workdir, "netd.log"), "w+b")  # noqa: SIM115
        proc = subprocess.Popen([*VIPERNET, "netd", "--link", "user", "--restrict",
                                 "--socket", sock], env=ENV, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while not _answers(sock):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit("netd did not start:\n" + log.read().decode(errors="replace"))
                time.sleep(0.05)
            yield sock
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _answers(sock: str) -> bool:
    if not os.path.exists(sock):
        return False
    probe = subprocess.run([*VIPERNET, "info", "--socket", sock], env=ENV,
                           capture_output=True)
    return probe.returncode == 0


def wall_ms(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                         + proc.stderr.decode(errors="replace"))
    return elapsed


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="runs of each command (15)")
    args = parser.parse_args()
    with running_netd() as sock:
        cases: list[tuple[str, list[str]]] = [
            ("python3 -c pass", [PYTHON, "-c", "pass"]),
            ('python3 -c "import socket, ssl"', [PYTHON, "-c", "import socket, ssl"]),
        ]
        curl = shutil.which("curl")
        if curl is not None:
            cases.append(("curl --version", [curl, "--version"]))
        cases += [
            ("vipernet --help", [*VIPERNET, "--help"]),
            ("vipernet ping --help", [*VIPERNET, "ping", "--help"]),
            ("vipernet dig --help", [*VIPERNET, "dig", "--help"]),
            ("vipernet info (running netd)", [*VIPERNET, "info", "--socket", sock]),
        ]
        print(f"load average before: {load()}  ({os.cpu_count()} CPUs, {args.runs} runs each, "
              f"{PYTHON})")
        for _, argv in cases:  # warm the page cache and the .pyc files
            wall_ms(argv)
        times: dict[str, list[float]] = {label: [] for label, _ in cases}
        for _ in range(args.runs):
            for label, argv in cases:
                times[label].append(wall_ms(argv))
    floor = statistics.median(times["python3 -c pass"])
    print(f"{'command':<34}{'median ms':>10}{'min ms':>9}{'over pass':>11}")
    for label, _ in cases:
        median = statistics.median(times[label])
        print(f"{label:<34}{median:>10.1f}{min(times[label]):>9.1f}{median - floor:>+11.1f}")
    print(f"load average after:  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
