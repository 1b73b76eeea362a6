"""The netd chaos rig: many bidirectional transfers, random deaths, then an audit.

One netd on the test bed's TAP, a kernel echo server in the namespace (the peer), and a
client zygote (:mod:`tests.netd.chaos_worker`).  :meth:`ChaosRig.round` draws, from one
seed, 6-10 clients with random roles and sizes, starts them together, SIGKILLs the
victims at random moments, and checks:

* every survivor finished within :data:`SURVIVOR_BOUND` seconds with the echo's sha256
  equal to what it sent;
* afterwards netd's tables hold nothing of the dead or the finished: no sockets, no
  client but the auditor, nothing parked (within :data:`CLEANUP_BOUND` seconds);
* netd is still running.

A failed round raises :class:`RoundFailed` with the seed and a dump (netd's socket table
with TCP details, the kernel's ``ss -tin``) to reproduce and diagnose it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, TestBed, wait_for
from vipernet.netclient import client as netclient

SURVIVOR_BOUND = 90.0  # seconds for a survivor to finish, however loaded the machine
CLEANUP_BOUND = 10.0  # seconds for netd to forget the dead
ECHO_PORT = 19000
VICTIM_BYTES = 1 << 30  # more than a victim can move before its SIGKILL
WORKER = str(Path(__file__).with_name("chaos_worker.py"))

ECHO_SERVER = """
import asyncio, sys

async def echo(reader, writer):
    try:
        while data := await reader.read(262144):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(echo, "10.0.2.2", int(sys.argv[1]), backlog=128)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

ROLES = ("half", "exact", "slow", "victim", "abort", "exit")
WEIGHTS = (30, 15, 10, 25, 10, 10)


class RoundFailed(AssertionError):
    pass


@dataclass
class Client:
    id: int
    role: str
    bytes: int
    kill_at: float | None = None
    pid: int | None = None
    result: dict[str, Any] | None = None
    killed: bool = False

    @property
    def survivor(self) -> bool:
        return self.role in ("half", "exact", "slow")


@dataclass
class RoundReport:
    seed: int
    clients: list[Client] = field(default_factory=list)
    seconds: float = 0.0
    moved: int = 0  # bytes each way, survivors only


def plan(seed: int, port: int = ECHO_PORT) -> list[Client]:
    """The clients of one round, all drawn from ``seed`` (a round replays exactly)."""
    rng = random.Random(seed)
    clients = []
    for i in range(rng.randint(6, 10)):
        role = rng.choices(ROLES, WEIGHTS)[0]
        # Survivors move enough to be mid-transfer while the others die around them.
        size = rng.randint(512 * 1024, 16 * 1024 * 1024)
        client = Client(id=seed * 100 + i, role=role, bytes=size)
        if role == "victim":
            client.kill_at = rng.uniform(0.05, 1.0)
            client.bytes = VICTIM_BYTES
        elif role == "slow":  # enough to fill our window, the kernel's and both buffers
            client.bytes = rng.randint(24, 40) * 1024 * 1024
        clients.append(client)
    if not any(c.survivor for c in clients):  # every round needs someone to check
        clients[0].role, clients[0].kill_at = "half", None
        clients[0].bytes = rng.randint(512 * 1024, 16 * 1024 * 1024)
    return clients


class ChaosRig:
    def __init__(self, bed: TestBed, load: int = 0) -> None:
        self.bed = bed
        self.path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=self.path)
        self.netd_err = bed.workdir / "netd.err"
        argv = [sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                f"tap:{bed.tap}", "--socket", self.path]
        self.netd = bed.start(argv, env=env, stderr=open(self.netd_err, "wb"))  # noqa: SIM115
        echo = bed.start([sys.executable, "-c", ECHO_SERVER, str(ECHO_PORT)],
                         stdout=subprocess.PIPE)
        assert echo.stdout is not None
        assert echo.stdout.readline().strip() == b"ready", "echo server did not start"
        wait_for(lambda: os.path.exists(self.path) or self.netd.poll() is not None,
                 what="netd socket")
        if self.netd.poll() is not None:
            raise RuntimeError(f"netd exited: {self.netd_err.read_text()}")
        self.zygote = bed.start([sys.executable, WORKER], inside=False, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # CPU hogs, for runs that must show the stack holds on a loaded machine.
        self.hogs = [bed.start([sys.executable, "-c", "while True: pass"], inside=False)
                     for _ in range(load)]

    def _read(self) -> None:
        assert self.zygote.stdout is not None
        for line in self.zygote.stdout:
            self.lines.put(json.loads(line))

    def _tell(self, request: dict[str, Any]) -> None:
        assert self.zygote.stdin is not None
        self.zygote.stdin.write((json.dumps(request) + "\n").encode())
        self.zygote.stdin.flush()

    def _spawn(self, client: Client, seed: int) -> None:
        self._tell({"id": client.id, "role": client.role, "bytes": client.bytes,
                    "seed": seed ^ client.id, "port": ECHO_PORT,
                    "abort_after": client.bytes // 3})

    def round(self, seed: int) -> RoundReport:
        clients = plan(seed)
        report = RoundReport(seed, clients)
        try:
            self._run(report)
        finally:
            self._tell({"op": "killall"})  # nothing of a round outlives it
        self._audit(report)
        return report

    def _run(self, report: RoundReport) -> None:
        clients = report.clients
        by_id = {c.id: c for c in clients}
        start = time.monotonic()
        for client in clients:
            self._spawn(client, report.seed)
        pending = set(by_id)  # ids still owing a pid line or (survivors) a result
        while pending:
            now = time.monotonic() - start
            for client in clients:
                if (client.kill_at is not None and not client.killed and client.pid
                        and now >= client.kill_at):
                    self._tell({"op": "kill", "id": client.id})
                    client.killed = True
                    pending.discard(client.id)
            if now > SURVIVOR_BOUND:
                stuck = [c for c in clients if c.id in pending]
                self._fail(report, f"not finished after {SURVIVOR_BOUND:.0f} s: {stuck}")
            try:
                line = self.lines.get(timeout=0.02)
            except queue.Empty:
                continue
            sender = by_id.get(line["id"])
            if sender is None:
                continue  # a late line from an earlier round's client
            if "pid" in line:
                sender.pid = line["pid"]
                if not sender.survivor and sender.kill_at is None:
                    pending.discard(sender.id)  # abort/exit: they end on their own
                continue
            sender.result = line
            pending.discard(sender.id)
        report.seconds = time.monotonic() - start
        for client in clients:
            if client.survivor and not (client.result or {}).get("ok"):
                self._fail(report, f"survivor {client} did not get its bytes back intact")
        report.moved = sum(c.bytes for c in clients if c.survivor)

    def _audit(self, report: RoundReport) -> None:
        """netd holds nothing of the round: no sockets, no client but us, nothing parked."""
        deadline = time.monotonic() + CLEANUP_BOUND
        while True:
            if self.netd.poll() is not None:
                self._fail(report, f"netd exited: {self.netd_err.read_text()[-2000:]}")
            with netclient.connect(self.path) as auditor:
                stat = auditor.stat()
            others = [c for c in stat["clients"] if c["sockets"] or c["parked"]]
            if not stat["sockets"] and not others and len(stat["clients"]) <= 1:
                return
            if time.monotonic() > deadline:
                self._fail(report, "netd still holds the round's clients or sockets")
            time.sleep(0.05)

    def _fail(self, report: RoundReport, why: str) -> None:
        try:
            with netclient.connect(self.path) as auditor:
                stat = json.dumps(auditor.stat(), indent=1)[:8000]
        except OSError as exc:
            stat = f"(no stat: {exc})"
        ss = self.bed.ns(["ss", "-tin"], check=False).stdout[:6000]
        raise RoundFailed(f"chaos round seed={report.seed}: {why}\n"
                          f"reproduce: VIPERNET_CHAOS_SEED={report.seed} "
                          f"VIPERNET_CHAOS_ROUNDS=1\nnetd stat: {stat}\nkernel ss -tin:\n{ss}")

    def client(self) -> netclient.NetClient:
        return netclient.connect(self.path)

    def close(self) -> None:
        if self.zygote.stdin is not None:
            self.zygote.stdin.close()


@contextmanager
def chaos_rig(load: int = 0) -> Iterator[ChaosRig]:
    bed = TestBed("ch")
    try:
        assert GATEWAY == "10.0.2.2"
        rig = ChaosRig(bed, load=load)
        try:
            yield rig
        finally:
            rig.close()
    finally:
        bed.close()
