"""vipernet's gateway against libslirp, passt, pasta and slirp4netns, all in one run.

    python benchmarks/vm_gateway.py [--size MB] [--runs N] [--quick] [--only ROW,ROW...]

Two tables, each row one networking back end, each column the median of ``--runs`` runs
(every run's figure is printed next to it), rows taking turns run by run so that a change
in the machine's load weighs on all of them alike.  The load average is printed before
and after.  Needs root (QEMU's mount namespace, /dev/net/tun's mode, ping sockets).

**VM** - a QEMU guest (tests/vm: Debian's kernel, busybox) on each back end downloads
``--size`` MB with wget from an HTTP server on host loopback into its tmpfs (hashed
afterwards, outside the timing, and checked), uploads that file with nc to a raw TCP sink
on host loopback (which hashes it and closes after the last byte), pings, and opens
connections in a loop (one busybox nc each, to a listener that accepts and closes):

* ``stream1500`` / ``stream65520`` - ``vipernet gateway --qemu-stream`` (QEMU ``-netdev
  stream``), the NIC's MTU 1500 or 65520 (``virtio-net-pci,host_mtu=65520``, as passt
  recommends).
* ``vhost-user`` - ``vipernet gateway --vhost-user`` (the guest's virtio rings in shared
  memory, TSO and checksum offloads; MTU 1500).
* ``libslirp`` - QEMU's ``-netdev user``; MTU 1500 (QEMU 7.2 has no option for more).
* ``passt`` - Debian's passt (2023-03-09) on ``-netdev stream``, MTU 65520 (its
  default and recommendation).  passt copies its guest's addressing from the host's
  default-route interface; this host has one (eth0), so no namespace is needed, and
  ``-a 10.0.2.15 -n 24 -g 10.0.2.2`` gives the guest the same layout as the others.
  TCP to the gateway address reaches the host's loopback (passt's default ``map-gw``), so
  every row's guest fetches from the same ``10.0.2.2:PORT``.

**Namespace** - a program in a network namespace of its own, everything run as
``nobody`` (these are rootless tools): ``curl`` downloads ``--size`` MB (to /dev/null)
from the HTTP server on host loopback and uploads a file of that size to it (PUT; the
server hashes it), busybox ping, and a small Python client opening connections in a loop:

* ``netns1500`` / ``netns65520`` - ``vipernet run --netns [--mtu 65520] -- CMD``.
* ``pasta`` - ``pasta --config-net -a 10.0.2.15 -n 24 -g 10.0.2.2 -- CMD`` (MTU 65520).
* ``slirp4netns`` - ``slirp4netns --configure --mtu=65520`` on a namespace that
  ``unshare --user --net --map-root-user`` holds, CMD entered with ``nsenter``.
* ``loopback`` - the same client steps with no namespace at all, to 127.0.0.1 (the
  ceiling; no target; no ping: busybox ping wants a raw socket, which nobody cannot open).

Ping: the vipernet gateway and libslirp answer an echo to 10.0.2.2 themselves, and that is
what their rows ping.  passt and pasta answer no echo of their own: they relay it through
an ICMP socket on the host, so their rows ping the host's own address on its
default-route interface (net.ipv4.ping_group_range is widened while those rows run and put
back afterwards) - a round trip through the same guest, tap and relay, but not the
same exchange; no target rests on those two figures.

Targets (from the issue): every vipernet row >= libslirp on every figure (VM: each
vipernet row against ``libslirp``; namespace: against ``slirp4netns``), lower being
better for ping; and ``vhost-user`` >= 50% of passt's download and upload throughput.

Under TCG (no usable KVM here) the guest's CPU, not the back end, is what limits the VM
figures, and they are noisy: compare them only within a run.  Peers are cheap on purpose
(a pre-made payload, no hashing inside the timed part) so the figures measure the back
ends; correctness is checked all the same (byte counts and sha256 of every transfer).
"""

from __future__ import annotations

import os
import sys

# benchmarks/http.py would shadow the stdlib's http package: drop this directory from the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import shlex  # noqa: E402
import socketserver  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import pytest  # noqa: E402  (the test bed's unavailable() speaks pytest.skip)
from tests.gateway.gateway_proc import GatewayProcess  # noqa: E402
from tests.netns_user import (  # noqa: E402
    as_nobody,
    tun_open_to_everyone,
    user_namespace_refusal,
)
from tests.testbed import require_binary, require_root, stop_process, wait_for  # noqa: E402
from tests.vm import guest_scripts as steps  # noqa: E402
from tests.vm.guest import TCG_SLOWDOWN, Guest, accelerator, require_guest  # noqa: E402
from tests.vm.guest_scripts import GATEWAY, compose, parse_results  # noqa: E402
from tests.vm.hostserver import ConnectCounter  # noqa: E402
from tests.vm.initramfs import build_initramfs  # noqa: E402

VM_ROWS = ("stream1500", "stream65520", "vhost-user", "libslirp", "passt")
NETNS_ROWS = ("netns1500", "netns65520", "pasta", "slirp4netns", "loopback")
VM_REFERENCE, NETNS_REFERENCE = "libslirp", "slirp4netns"
VIPERNET_VM = ("stream1500", "stream65520", "vhost-user")
VIPERNET_NETNS = ("netns1500", "netns65520")
COLUMNS = ("download", "upload", "ping", "connect")
HEADINGS = {"download": "down MB/s", "upload": "up MB/s", "ping": "ping ms",
            "connect": "conn/s"}
LOWER_IS_BETTER = {"ping"}
PING_GROUPS = "/proc/sys/net/ipv4/ping_group_range"
GUEST_ADDRESS = "10.0.2.15"


# -- host-side peers ----------------------------------------------------------------------

class BlobServer:
    """HTTP on host loopback: ``GET /blob`` answers the payload (pre-made, sent from one
    buffer); ``PUT /upload`` reads Content-Length bytes and answers ``<bytes> <sha256>``."""

    def __init__(self, blob: bytes) -> None:
        view = memoryview(blob)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/blob":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(view)))
                self.end_headers()
                self.wfile.write(view)

            def do_PUT(self) -> None:
                left = int(self.headers.get("Content-Length", "0"))
                digest, total = hashlib.sha256(), 0
                buffer = bytearray(1 << 20)
                while left > 0:
                    got = self.rfile.readinto(memoryview(buffer)[:min(left, len(buffer))])
                    if not got:
                        break
                    digest.update(memoryview(buffer)[:got])
                    total += got
                    left -= got
                body = f"{total} {digest.hexdigest()}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SizedSink:
    """A raw TCP sink that hashes ``size`` bytes and then closes, answering nothing.

    Closing after the last byte, rather than answering after the guest's half-close (as
    tests/vm/hostserver.HashingSink does), is what lets passt 2023-03-09 take part: its
    guest's nc never saw an answer sent after its FIN."""

    def __init__(self, size: int) -> None:
        self.received: list[tuple[int, str]] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                digest, total = hashlib.sha256(), 0
                buffer = bytearray(1 << 20)
                while total < size:
                    got = self.request.recv_into(buffer, min(size - total, len(buffer)))
                    if not got:
                        break
                    digest.update(memoryview(buffer)[:got])
                    total += got
                owner.received.append((total, digest.hexdigest()))

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Peers:
    blob: bytes
    sha256: str
    http: BlobServer
    sink: SizedSink
    counter: ConnectCounter


@contextlib.contextmanager
def peers(size: int) -> Iterator[Peers]:
    blob = os.urandom(size)
    http, sink, counter = BlobServer(blob), SizedSink(size), ConnectCounter()
    try:
        yield Peers(blob, hashlib.sha256(blob).hexdigest(), http, sink, counter)
    finally:
        for server in (http, sink, counter):
            server.close()


@contextlib.contextmanager
def ping_sockets_for_everyone() -> Iterator[None]:
    """passt and pasta relay a guest's echo through an ICMP socket, which the kernel
    allows only to the groups in ping_group_range (none, by default here)."""
    old = Path(PING_GROUPS).read_text().split()
    Path(PING_GROUPS).write_text("0 2147483647\n")
    try:
        yield
    finally:
        Path(PING_GROUPS).write_text(" ".join(old) + "\n")


def host_address() -> str:
    """The host's IPv4 address on its default-route interface (what passt copies)."""
    words = subprocess.run(["ip", "-4", "route", "get", "192.0.2.254"], capture_output=True,
                           text=True, check=True).stdout.split()
    return words[words.index("src") + 1]


# -- figures ---------------------------------------------------------------------------------

@dataclass
class Figures:
    download: float  # MB/s
    upload: float  # MB/s
    ping: float | None  # average RTT in ms (None: no echo came back)
    connect: float  # connections per second

    def get(self, column: str) -> float | None:
        value: float | None = getattr(self, column)
        return value


def _results(output: str) -> dict[str, dict[str, str]]:
    return {r.step: r.values for r in parse_results(output)}


def _ping_ms(found: dict[str, dict[str, str]]) -> float | None:
    ping = found.get("ping", {})
    if ping.get("received", "0") in ("0", "") or ping.get("rtt_avg_ms", "none") == "none":
        return None
    return float(ping["rtt_avg_ms"])


def _rate(size: int, seconds: str) -> float:
    # /proc/uptime ticks in 10 ms: a faster transfer than that reads as one tick.
    return size / max(float(seconds), 0.01) / 1e6


def _check(condition: bool, what: str, output: str) -> None:
    if not condition:
        raise AssertionError(f"{what}\n{output[-3000:]}")


# -- the VM rows -------------------------------------------------------------------------------

@dataclass
class Backend:
    guest_args: dict[str, Any]
    ping_target: str


@contextlib.contextmanager
def vm_backend(row: str, workdir: Path) -> Iterator[Backend]:
    if row == "libslirp":
        yield Backend({"netdev": "user"}, GATEWAY)
        return
    if row == "passt":
        with passt(workdir) as sock, ping_sockets_for_everyone():
            netdev = f"stream,server=off,addr.type=unix,addr.path={sock}"
            yield Backend({"netdev": netdev, "device_args": "host_mtu=65520"}, host_address())
        return
    backend, mtu = {"stream1500": ("stream", 1500), "stream65520": ("stream", 65520),
                    "vhost-user": ("vhost-user", 1500)}[row]
    gateway = GatewayProcess(backend, workdir, mtu=mtu)
    try:
        yield Backend(gateway.guest_args(), GATEWAY)
    finally:
        gateway.close()


@contextlib.contextmanager
def passt(workdir: Path) -> Iterator[Path]:
    sock = workdir / "passt.sock"
    log = workdir / "passt.log"
    # -1: one guest, then exit; -4: IPv4 (the figures are IPv4); -q/-l: no syslog chatter.
    process = subprocess.Popen(
        [require_binary("passt"), "-f", "-q", "-1", "-4", "--runas", "0:0", "-l", str(log),
         "-s", str(sock), "-a", GUEST_ADDRESS, "-n", "24", "-g", GATEWAY, "-D", "10.0.2.3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: sock.exists() or process.poll() is not None, timeout=10,
                 what="passt's socket")
        if process.poll() is not None:
            raise AssertionError(f"passt exited: {log.read_text(errors='replace')[-500:]}")
        yield sock
    finally:
        stop_process(process)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


def vm_run(row: str, peers: Peers, initramfs: Path, workdir: Path, size: int,
           connections: int, pings: int) -> Figures:
    with vm_backend(row, workdir) as backend:
        script = compose(
            steps.dhcp(),
            steps.ping(backend.ping_target, count=pings, interval=0.2) + " || true",
            steps.download(f"http://{GATEWAY}:{peers.http.port}/blob", "/tmp/payload"),
            steps.upload("/tmp/payload", GATEWAY, peers.sink.port), "rm /tmp/payload",
            steps.connect_rate(GATEWAY, peers.counter.port, connections))
        wall_limit = 90 + 2.0 * size / 1e6  # seconds, boot and hashing in the guest included
        scale = 1.0 if accelerator() == "kvm" else TCG_SLOWDOWN
        before = len(peers.sink.received)
        with Guest(script=script, initramfs=initramfs, mem_mb=512 + 3 * (size >> 20),
                   timeout=wall_limit / scale, **backend.guest_args) as guest:
            status, output = guest.wait_exit()
    _check(status == 0, f"{row}: the guest's script failed ({status})", output)
    found = _results(output)
    download = found["download"]
    _check((download["bytes"], download["sha256"]) == (str(size), peers.sha256),
           f"{row}: the download arrived wrong", output)
    _check(peers.sink.received[before:] == [(size, peers.sha256)],
           f"{row}: the sink got {peers.sink.received[before:]}", output)
    connect = found["connect"]
    _check(connect["failures"] == "0", f"{row}: connections failed", output)
    return Figures(_rate(size, download["seconds"]), _rate(size, found["upload"]["seconds"]),
                   _ping_ms(found), connections / max(float(connect["seconds"]), 0.01))


# -- the namespace rows -----------------------------------------------------------------------

CONNECT_CLIENT = r"""
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failures = 0
start = time.perf_counter()
for _ in range(count):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.recv(1)  # the listener's close: one whole connection, opened and ended
    except OSError:
        failures += 1
seconds = time.perf_counter() - start
print(f"RESULT connect count={count} failures={failures} seconds={seconds:.4f}")
"""


def netns_script(python: str, peers: Peers, upload: Path, host: str, ping_target: str,
                 connections: int, pings: int) -> str:
    """The same steps for every namespace row: ping, curl down, curl up, connect loop."""
    url = f"http://{host}:{peers.http.port}"
    curl = "curl -sS --noproxy '*'"
    return steps.PRELUDE + "\n".join([
        "ping() { busybox ping \"$@\"; }",  # one ping for all: iputils' output differs
        f"vn_ping {shlex.quote(ping_target)} {pings} 0.2 || true",
        f"set -- $({curl} -o /dev/null -w '%{{time_total}} %{{size_download}}' {url}/blob)",
        'echo "RESULT download bytes=$2 seconds=$1"',
        f"set -- $({curl} -H 'Expect:' -T {shlex.quote(str(upload))} "
        f"-w ' %{{time_total}}' {url}/upload)",
        'echo "RESULT upload peer_bytes=$1 peer_sha256=$2 seconds=$3"',
        f"{shlex.quote(python)} -c {shlex.quote(CONNECT_CLIENT)} {host} "
        f"{peers.counter.port} {connections}",
    ]) + "\n"


@dataclass
class NobodyWorld:
    """What the namespace rows share: a work directory nobody can use, a Python and a copy
    of vipernet nobody can run (tests/slirp/test_user_netd.py explains why a copy)."""

    workdir: Path
    python: str
    libs: str
    upload: Path


@contextlib.contextmanager
def nobody_world(peers: Peers) -> Iterator[NobodyWorld]:
    from tests.slirp.test_user_netd import python_for_nobody, readable_libraries

    for name in ("curl", "busybox", "unshare", "nsenter"):
        require_binary(name)
    refusal = user_namespace_refusal()
    if refusal is not None:
        raise AssertionError(refusal)
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-bench-netns-"))
    try:
        os.chmod(workdir, 0o755)
        (workdir / "libs").mkdir()
        libs = readable_libraries(workdir / "libs")
        python = python_for_nobody(require_binary("runuser"), libs)
        upload = workdir / "upload.bin"
        upload.write_bytes(peers.blob)
        upload.chmod(0o644)
        with tun_open_to_everyone():
            yield NobodyWorld(workdir, python, libs, upload)
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def netns_run(row: str, peers: Peers, world: NobodyWorld, size: int, connections: int,
              pings: int) -> Figures:
    host = "127.0.0.1" if row == "loopback" else GATEWAY
    with netns_command(row, world) as (prefix, ping_target):
        script = netns_script(world.python, peers, world.upload, host, ping_target,
                              connections, pings)
        proc = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True,
                              timeout=120 + 2 * size / 1e6, cwd="/", check=False)
    output = proc.stdout + proc.stderr
    _check(proc.returncode == 0, f"{row}: exit status {proc.returncode}", output)
    found = _results(proc.stdout)
    download, upload, connect = found["download"], found["upload"], found["connect"]
    _check(download["bytes"] == str(size), f"{row}: the download arrived short", output)
    _check((upload["peer_bytes"], upload["peer_sha256"]) == (str(size), peers.sha256),
           f"{row}: the upload arrived wrong", output)
    _check(connect["failures"] == "0", f"{row}: connections failed", output)
    return Figures(size / float(download["seconds"]) / 1e6,
                   size / float(upload["seconds"]) / 1e6, _ping_ms(found),
                   connections / float(connect["seconds"]))


@contextlib.contextmanager
def netns_command(row: str, world: NobodyWorld) -> Iterator[tuple[list[str], str]]:
    """The argv prefix that runs a command in ``row``'s namespace, and what it pings."""
    if row == "loopback":
        with ping_sockets_for_everyone():
            yield as_nobody(), "127.0.0.1"
    elif row in ("netns1500", "netns65520"):
        tmpdir = Path(tempfile.mkdtemp(prefix="tmp-", dir=world.workdir))
        tmpdir.chmod(0o777)  # where vipernet run makes the namespace's resolv.conf
        mtu = "65520" if row == "netns65520" else "1500"
        yield as_nobody("env", f"PYTHONPATH={world.libs}", f"TMPDIR={tmpdir}", world.python,
                        "-m", "vipernet.cli.main", "run", "--netns", "--mtu", mtu,
                        "--"), GATEWAY
    elif row == "pasta":
        with ping_sockets_for_everyone():
            yield as_nobody(require_binary("pasta"), "--config-net", "-q", "-4", "-a",
                            GUEST_ADDRESS, "-n", "24", "-g", GATEWAY, "--"), host_address()
    elif row == "slirp4netns":
        with slirp4netns_namespace() as pid:
            yield as_nobody("nsenter", "-t", str(pid), "-U", "-n",
                            "--preserve-credentials"), GATEWAY
    else:
        raise ValueError(row)


@contextlib.contextmanager
def slirp4netns_namespace() -> Iterator[int]:
    """A namespace held by a sleeping unshare, networked by slirp4netns; its holder's PID."""
    holder = subprocess.Popen(as_nobody("unshare", "--user", "--net", "--map-root-user",
                                        "sleep", "3600"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, cwd="/")
    relay: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep",
                 what="unshare to exec sleep")
        ready_read, ready_write = os.pipe()
        try:
            relay = subprocess.Popen(
                as_nobody(require_binary("slirp4netns"), "--configure", "--mtu=65520",
                          f"--ready-fd={ready_write}", str(holder.pid), "tap0"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                cwd="/", pass_fds=(ready_write,))
            os.close(ready_write)
            ready_write = -1
            if os.read(ready_read, 1) != b"1":
                raise AssertionError("slirp4netns did not get ready")
        finally:
            os.close(ready_read)
            if ready_write >= 0:
                os.close(ready_write)
        yield holder.pid
    finally:
        if relay is not None:
            stop_process(relay)
        stop_process(holder)


# -- the tables ------------------------------------------------------------------------------

Runner = Callable[[str], Figures]


def measure(rows: list[str], runs: int, runner: Runner) -> dict[str, list[Figures | str]]:
    """Every row ``runs`` times, taking turns; a failed run is its error's first line."""
    done: dict[str, list[Figures | str]] = {row: [] for row in rows}
    for number in range(runs):
        for row in rows:
            started = time.monotonic()
            try:
                outcome: Figures | str = runner(row)
            except (Exception, pytest.skip.Exception) as exc:
                text = str(exc).strip() or type(exc).__name__
                print(f"  [{row} run {number + 1}] FAILED: {text[:2000]}", flush=True)
                outcome = text.splitlines()[0][:80]
            else:
                print(f"  [{row} run {number + 1}] {time.monotonic() - started:5.1f} s: "
                      + "  ".join(f"{c} {_fmt(outcome.get(c))}" for c in COLUMNS), flush=True)
            done[row].append(outcome)
    return done


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def median_of(results: list[Figures | str], column: str) -> tuple[float | None, list[str]]:
    values = [r.get(column) for r in results if isinstance(r, Figures)]
    known = [v for v in values if v is not None]
    runs = [_fmt(v) for v in values] + ["fail"] * sum(isinstance(r, str) for r in results)
    return (statistics.median(known) if known else None), runs


def print_table(title: str, done: dict[str, list[Figures | str]]) -> None:
    print(f"\n{title} (median; all runs in brackets)")
    print(f"  {'':14}" + "".join(f"{HEADINGS[c]:>24}" for c in COLUMNS))
    for row, results in done.items():
        cells = []
        for column in COLUMNS:
            median, runs = median_of(results, column)
            cells.append(f"{_fmt(median):>7} [{' '.join(runs)}]".rjust(24))
        print(f"  {row:14}" + "".join(cells))
        for failure in dict.fromkeys(r for r in results if isinstance(r, str)):
            print(f"  {'':14}failed: {failure}")


def verdicts(done: dict[str, list[Figures | str]], ours: tuple[str, ...],
             reference: str) -> list[str]:
    lines = []
    if reference not in done:
        return lines
    for row in (r for r in ours if r in done):
        for column in COLUMNS:
            mine, _ = median_of(done[row], column)
            theirs, _ = median_of(done[reference], column)
            if mine is None or theirs is None:
                lines.append(f"  {row}/{reference} {column:8}      -   MISS (no figure)")
                continue
            ratio = mine / theirs
            ok = ratio <= 1 if column in LOWER_IS_BETTER else ratio >= 1
            rule = "<= 1" if column in LOWER_IS_BETTER else ">= 1"
            lines.append(f"  {row}/{reference} {column:8} {ratio:6.2f}  (target {rule})  "
                         f"{'PASS' if ok else 'MISS'}")
    return lines


def vhost_verdicts(done: dict[str, list[Figures | str]]) -> list[str]:
    lines = []
    if "vhost-user" in done and "passt" in done:
        for column in ("download", "upload"):
            mine, _ = median_of(done["vhost-user"], column)
            theirs, _ = median_of(done["passt"], column)
            if mine is None or theirs is None:
                lines.append(f"  vhost-user/passt {column:8}      -   MISS (no figure)")
                continue
            ratio = mine / theirs
            lines.append(f"  vhost-user/passt {column:8} {ratio:6.2f}  (target >= 0.50)  "
                         f"{'PASS' if ratio >= 0.5 else 'MISS'}")
    return lines


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="megabytes each way (100)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every row (3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 MB, 1 run, few pings and connections")
    parser.add_argument("--only", default="", help="comma-separated rows: "
                        + ",".join(VM_ROWS + NETNS_ROWS))
    args = parser.parse_args(argv)
    size_mb, runs = (2, 1) if args.quick else (max(1, args.size), max(1, args.runs))
    size = size_mb << 20
    wanted = [r for r in args.only.split(",") if r] or list(VM_ROWS + NETNS_ROWS)
    unknown = set(wanted) - set(VM_ROWS + NETNS_ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    vm_rows = [r for r in VM_ROWS if r in wanted]
    netns_rows = [r for r in NETNS_ROWS if r in wanted]
    pings, vm_connections, netns_connections = (5, 20, 50) if args.quick else (20, 200, 1000)
    require_root()
    print(f"vipernet gateway benchmark: {size_mb} MB each way, {runs} run(s) per row, "
          f"guest accelerator {accelerator()}; {load()}", flush=True)
    lines: list[str] = []
    failed = False
    with peers(size) as world_peers:
        if vm_rows:
            kernel = require_guest()
            with tempfile.TemporaryDirectory(prefix="vipernet-bench-vm-") as tmp:
                image = build_initramfs(Path(tmp), kernel)

                def vm(row: str) -> Figures:
                    with tempfile.TemporaryDirectory(prefix=f"vipernet-bench-{row}-") as work:
                        return vm_run(row, world_peers, image, Path(work), size,
                                      vm_connections, pings)

                vm_done = measure(vm_rows, runs, vm)
            print_table(f"VM guest under {accelerator()}: wget down to tmpfs, nc up, "
                        f"{pings} pings, {vm_connections} nc connections", vm_done)
            lines += verdicts(vm_done, VIPERNET_VM, VM_REFERENCE) + vhost_verdicts(vm_done)
            failed |= any(isinstance(r, str) for results in vm_done.values() for r in results)
        if netns_rows:
            with nobody_world(world_peers) as nobody:
                netns_done = measure(netns_rows, runs, lambda row: netns_run(
                    row, world_peers, nobody, size, netns_connections, pings))
            print_table(f"Namespace, as nobody: curl down/up, {pings} pings, "
                        f"{netns_connections} Python connections", netns_done)
            lines += verdicts(netns_done, VIPERNET_NETNS, NETNS_REFERENCE)
            failed |= any(isinstance(r, str) for results in netns_done.values() for r in results)
    if lines:
        print("\ntargets (medians; ping: lower is better)")
        print("\n".join(lines))
    print(f"\n{load()}")
    return 1 if failed else 0  # every figure is printed first; a failed run is not hidden


if __name__ == "__main__":
    sys.exit(main())
