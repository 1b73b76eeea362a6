"""SSH benchmark: vipernet vs paramiko, asyncssh and OpenSSH, against one local sshd.

The sshd (started here on loopback, torn down at the end) allows only aes128-ctr +
hmac-sha2-256, so every client runs the same cipher and MAC.  Figures:

* connect + authenticate (ed25519 key) + exec ``true``: median of N runs, in ms;
* SFTP download and upload of a 200 MB file, in MB/s (best of R runs);
* for vipernet also the client's own CPU time (user + system) per 100 MB, which the load
  other processes put on the machine changes far less than MB/s.

The load average before and after is printed: on a shared 2-core machine the MB/s of every
client fall together when it is busy.

Run as root (sshd needs it): ``python benchmarks/ssh.py [--size-mb 200] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pwd
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.ssh.sshd import Sshd  # noqa: E402

from vipernet.ssh.algorithms import Preferences  # noqa: E402
from vipernet.ssh.client import SSHClient  # noqa: E402

PINNED = """KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
Ciphers aes128-ctr
MACs hmac-sha2-256
HostKeyAlgorithms ssh-ed25519
"""
MB = 1024 * 1024


def median_ms(fn: Callable[[], None], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def best_rate(fn: Callable[[], None], size: int, runs: int,
              cpu: list[float] | None = None) -> float:
    """MB/s of the fastest run; appends that run's CPU ms per 100 MB to ``cpu``."""
    best = (float("inf"), 0.0)
    for _ in range(runs):
        t = time.perf_counter()
        c = os.times()
        fn()
        c2 = os.times()
        wall = time.perf_counter() - t
        best = min(best, (wall, (c2.user - c.user + c2.system - c.system)))
    if cpu is not None:
        cpu.append(best[1] * 1000 * 100 * MB / size)
    return size / MB / best[0]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def throwaway_user(home: Path) -> str:
    """A user with /bin/sh and an empty home: root's ~/.bashrc (pyenv init, ~200 ms of
    subprocesses) would otherwise dominate every client's exec latency."""
    name = f"vnb{os.getpid() % 100000}"
    home.mkdir(mode=0o755)
    # -p '*': no password, but not "locked" ('!'), which sshd refuses even for keys.
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-p", "*", name],
                   check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exec-runs", type=int, default=15)
    args = ap.parse_args()
    sshd = Sshd(extra=PINNED, user_keys=("ed25519",))
    user = ""
    try:
        sshd.dir.chmod(0o755)  # the user reads authorized_keys and the files from here
        (sshd.dir / "authorized_keys").chmod(0o644)
        user = throwaway_user(sshd.dir / "home")
        run(sshd, args, user)
    finally:
        sshd.stop()
        if user:
            subprocess.run(["userdel", "-f", user], check=False, capture_output=True)


def run(sshd: Sshd, args: argparse.Namespace, user: str) -> None:
    import asyncssh
    import paramiko

    before = load()
    key = str(sshd.user_keys["ed25519"])
    port = sshd.port
    work = sshd.dir / "home"
    size = args.size_mb * MB
    src = work / "src.bin"
    with src.open("wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(MB))
    src.chmod(0o644)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    prefs = Preferences.pinned(cipher="aes128-ctr", mac="hmac-sha2-256",
                               host_key=["ssh-ed25519"])
    kh = str(work / "kh")
    results: dict[str, dict[str, float]] = {}

    # -- vipernet ---------------------------------------------------------------------
    def vn_connect() -> SSHClient:
        return SSHClient.connect("127.0.0.1", port, username=user, key_filename=key,
                                 known_hosts=kh, prefs=prefs)

    def vn_exec() -> None:
        with vn_connect() as c:
            assert c.exec("true").status == 0

    vn = vn_connect()
    sftp = vn.open_sftp()
    cpu: list[float] = []
    results["vipernet"] = {
        "exec_ms": median_ms(vn_exec, args.exec_runs),
        "down": best_rate(lambda: sftp.get(str(src), work / "vn.down"), size, args.runs, cpu),
        "up": best_rate(lambda: sftp.put(src, str(work / "vn.up")), size, args.runs, cpu),
    }
    sftp.close()
    vn.close()
    for p in ("vn.down", "vn.up"):
        assert hashlib.sha256((work / p).read_bytes()).hexdigest() == digest, p

    # -- paramiko ---------------------------------------------------------------------
    def pm_connect() -> paramiko.SSHClient:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        c.connect("127.0.0.1", port, username=user, key_filename=key, look_for_keys=False,
                  allow_agent=False)
        return c

    def pm_exec() -> None:
        c = pm_connect()
        _, out, _ = c.exec_command("true")
        assert out.channel.recv_exit_status() == 0
        c.close()

    pc = pm_connect()
    ps = pc.open_sftp()
    results["paramiko"] = {
        "exec_ms": median_ms(pm_exec, args.exec_runs),
        "down": best_rate(lambda: ps.get(str(src), str(work / "pm.down")), size, 1),
        "up": best_rate(lambda: ps.put(str(src), str(work / "pm.up")), size, 1),
    }
    pc.close()

    # -- asyncssh ---------------------------------------------------------------------
    async def as_all() -> dict[str, float]:
        opts = dict(username=user, client_keys=[key], known_hosts=None,
                    encryption_algs=["aes128-ctr"], mac_algs=["hmac-sha2-256"])

        async def one() -> None:
            async with asyncssh.connect("127.0.0.1", port, **opts) as conn:
                r = await conn.run("true")
                assert r.exit_status == 0

        times = []
        for _ in range(args.exec_runs):
            t = time.perf_counter()
            await one()
            times.append(time.perf_counter() - t)
        out = {"exec_ms": statistics.median(times) * 1000}
        async with asyncssh.connect("127.0.0.1", port, **opts) as conn, \
                conn.start_sftp_client() as s:
                for name, coro in (("down", lambda: s.get(str(src), str(work / "as.down"))),
                                   ("up", lambda: s.put(str(src), str(work / "as.up")))):
                    best = float("inf")
                    for _ in range(args.runs):
                        t = time.perf_counter()
                        await coro()
                        best = min(best, time.perf_counter() - t)
                    out[name] = size / MB / best
        return out

    results["asyncssh"] = asyncio.run(as_all())

    # -- OpenSSH CLI ------------------------------------------------------------------
    common = ["-i", key, "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={kh}.o",
              "-o", "BatchMode=yes"]

    def ossh_exec() -> None:
        subprocess.run(["ssh", "-p", str(port), *common, f"{user}@127.0.0.1", "true"], check=True)

    def osftp(batch: str) -> None:
        subprocess.run(["sftp", "-q", "-P", str(port), *common, "-b", "-", f"{user}@127.0.0.1"],
                       input=batch.encode(), check=True, stdout=subprocess.DEVNULL)

    results["openssh"] = {
        "exec_ms": median_ms(ossh_exec, args.exec_runs),
        "down": best_rate(lambda: osftp(f"get {src} {work / 'os.down'}\n"), size, args.runs),
        "up": best_rate(lambda: osftp(f"put {src} {work / 'os.up'}\n"), size, args.runs),
    }

    print(f"before: {before}; after: {load()}")
    print(f"sshd {sshd.port}: aes128-ctr + hmac-sha2-256, curve25519, ed25519; "
          f"{args.size_mb} MB file; exec median of {args.exec_runs}, SFTP best of "
          f"{args.runs} (paramiko: 1)")
    print(f"{'client':10} {'connect+auth+exec':>18} {'SFTP down':>12} {'SFTP up':>12}")
    for name, r in results.items():
        print(f"{name:10} {r['exec_ms']:15.1f} ms {r['down']:7.0f} MB/s {r['up']:7.0f} MB/s")
    print(f"vipernet client CPU per 100 MB (fastest run): down {cpu[0]:.0f} ms, "
          f"up {cpu[1]:.0f} ms")


if __name__ == "__main__":
    main()
