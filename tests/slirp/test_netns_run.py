"""``vipernet run --netns``: rootless network namespaces served by the user-mode gateway.

Everything vipernet does here runs as ``nobody`` (``setpriv --reuid=65534``): it makes a
user + network + mount namespace, a TAP inside, and serves the TAP from outside.  The
programs inside are ordinary kernel-network clients - curl, the static busybox (wget,
nslookup), getent through glibc - reaching host loopback (where the test's HTTP server
and dnsmasq run) at 10.0.2.2 / fec0::2 and the DNS relay at 10.0.2.3.  ``--netns PID``
attaches to a namespace that ``unshare --user --net --map-root-user`` made, and a command
entered there with ``nsenter`` downloads through it.

nobody cannot read our sources (nor a Python under /root), so vipernet is copied to a
world-readable directory and run by a Python nobody can use (tests.slirp.test_user_netd).
After each run no process carrying the run's marker is left, and the run's TMPDIR (where
the namespace's resolv.conf is made) is empty.  The download rate, and curl's rate over
plain host loopback in the same run, are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns_user import as_nobody, tun_open_to_everyone, user_namespace_refusal
from tests.slirp.test_user_netd import python_for_nobody, readable_libraries
from tests.testbed import require_binary, require_root, stop_process, unavailable, wait_for
from tests.vm.hostserver import PayloadHttpServer, free_port, payload_chunks, payload_sha256

pytestmark = pytest.mark.testbed

BIG = 100 * 1024 * 1024
SMALL = 4 * 1024 * 1024


class World:
    """What every run needs: the unprivileged command prefix, servers, a marker."""

    def __init__(self, workdir: Path, python: str, libs: str, http: PayloadHttpServer,
                 dns_port: int) -> None:
        self.workdir = workdir
        self.python = python
        self.libs = libs
        self.http = http  # serves BIG and SMALL payloads, hashes uploads
        self.dns_port = dns_port

    def nobody(self, *argv: str) -> list[str]:
        return as_nobody(*argv)

    def vipernet(self, *args: str, tmpdir: Path, mark: str) -> list[str]:
        return self.nobody("env", f"PYTHONPATH={self.libs}", f"TMPDIR={tmpdir}",
                           f"VIPERNET_TEST_MARK={mark}", self.python, "-m",
                           "vipernet.cli.main", "run", *args)


def marked_processes(mark: str) -> list[int]:
    """PIDs whose environment carries ``VIPERNET_TEST_MARK=mark``."""
    needle = f"VIPERNET_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Run:
    """One ``vipernet run`` with its own marker and TMPDIR, checked for leftovers."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.mark = uuid.uuid4().hex
        self.tmpdir = Path(tempfile.mkdtemp(prefix="vipernet-netns-tmp-", dir=world.workdir))
        os.chmod(self.tmpdir, 0o777)

    def argv(self, *args: str) -> list[str]:
        return self.world.vipernet(*args, tmpdir=self.tmpdir, mark=self.mark)

    def __call__(self, *args: str, timeout: float = 120,
                 **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        kwargs.setdefault("capture_output", True)
        return subprocess.run(self.argv(*args), timeout=timeout, cwd="/", **kwargs)

    def assert_clean(self) -> None:
        wait_for(lambda: not marked_processes(self.mark), timeout=10,
                 what="the run's processes to be gone")
        assert list(self.tmpdir.iterdir()) == []
        self.tmpdir.rmdir()


@pytest.fixture(scope="module")
def tun_for_everyone() -> Iterator[None]:
    """/dev/net/tun open to unprivileged users, as udev makes it (0666) on a distribution;
    a bare VM's devtmpfs may leave it 0600.  The old mode is put back afterwards."""
    require_root()
    with tun_open_to_everyone():
        yield


@pytest.fixture(scope="module")
def world(tun_for_everyone: None) -> Iterator[World]:
    for name in ("curl", "busybox", "unshare", "nsenter", "getent", "ip"):
        require_binary(name)
    dnsmasq = require_binary("dnsmasq")
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-netns-"))
    os.chmod(workdir, 0o755)
    started: list[subprocess.Popen[bytes]] = []
    servers: list[PayloadHttpServer] = []
    try:
        refusal = user_namespace_refusal()
        if refusal is not None:
            unavailable(refusal)
        (workdir / "libs").mkdir()
        libs = readable_libraries(workdir / "libs")
        python = python_for_nobody(require_binary("runuser"), libs)
        servers.append(PayloadHttpServer())
        dns_port = free_port(kind=socket.SOCK_DGRAM)
        started.append(subprocess.Popen(
            [dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
             f"--port={dns_port}", "--user=root", f"--pid-file={workdir / 'dnsmasq.pid'}",
             "--address=/example.test/10.0.2.2", "--local=/example.test/", "--local=/#/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        yield World(workdir, python, libs, servers[0], dns_port)
    finally:
        for proc in started:
            stop_process(proc)
        for server in servers:
            server.close()
        shutil.rmtree(workdir, ignore_errors=True)


def rate(seconds: float, size: int = BIG) -> str:
    return f"{size / seconds / 1e6:.0f} MB/s ({seconds:.3f} s)"


def test_curl_downloads_100_mb_as_nobody(world: World) -> None:
    run = Run(world)
    url = world.http.url(BIG)
    timing = "%{stderr}%{time_total} %{size_download}\n"
    started = time.monotonic()
    proc = run("--netns", "--", "curl", "-sS", "-w", timing, url)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert len(proc.stdout) == BIG
    assert hashlib.sha256(proc.stdout).hexdigest() == payload_sha256(BIG)
    seconds, size = proc.stderr.decode().split()[-2:]
    assert int(size) == BIG
    run.assert_clean()
    # The reference, in the same run: the same curl over host loopback, no namespace.
    direct = subprocess.run(world.nobody("curl", "-sS", "-o", "/dev/null", "-w",
                                         "%{time_total} %{size_download}",
                                         world.http.url(BIG, host="127.0.0.1")),
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert direct.returncode == 0, direct.stderr
    direct_seconds, direct_size = direct.stdout.split()
    assert int(direct_size) == BIG
    print(f"\nvipernet run --netns curl 100 MB: {rate(float(seconds))}; the whole run "
          f"{wall:.2f} s; curl on host loopback: {rate(float(direct_seconds))}")


def test_static_busybox_wget_and_names(world: World) -> None:
    run = Run(world)
    script = (f"busybox wget -q -O - '{world.http.url(SMALL)}'; "
              f"busybox wget -q -O - '{world.http.url(SMALL, host='example.test')}'; "
              "getent hosts example.test >&2; busybox nslookup example.test 10.0.2.3 >&2; "
              "cat /etc/resolv.conf >&2")
    proc = run("--netns", "--dns", f"127.0.0.1:{world.dns_port}", "--", "sh", "-c", script)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    body = b"".join(payload_chunks(SMALL))
    assert len(proc.stdout) == 2 * SMALL
    assert proc.stdout == body + body  # by address, then by name through 10.0.2.3
    assert err.split()[:2] == ["10.0.2.2", "example.test"]  # getent, through glibc
    assert "Address: 10.0.2.2" in err  # busybox's own resolver, asking 10.0.2.3
    assert "nameserver 10.0.2.3" in err
    run.assert_clean()


def test_curl_uploads_through_the_gateway(world: World) -> None:
    run = Run(world)
    size = 32 * 1024 * 1024
    proc = run("--netns", "--", "sh", "-c", f"head -c {size} /dev/zero | curl -sS "
               f"--data-binary @- {world.http.upload_url()}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # The host server's answer: what it received, counted and hashed.
    assert proc.stdout.decode().split() == [str(size), hashlib.sha256(bytes(size)).hexdigest()]
    run.assert_clean()


def test_the_namespace_has_the_libslirp_layout_and_ipv6(world: World) -> None:
    blob = os.urandom(1 << 20)
    server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = server.getsockname()[1]

    def serve_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)  # the request; the answer is raw bytes (curl --http0.9)
            conn.sendall(blob)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    run = Run(world)
    try:
        script = ("ip -o addr show dev tap0 >&2; ip route >&2; ip -6 route >&2; "
                  f"curl -sS --http0.9 -g http://[fec0::2]:{port}/")
        proc = run("--netns", "--", "sh", "-c", script)
    finally:
        server.close()
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "inet 10.0.2.15/24" in err and "default via 10.0.2.2 dev tap0" in err
    assert "inet6 fec0::5054:ff:fe12:3456/64" in err  # SLAAC from the gateway's RA
    assert "default via fe80::" in err  # ... and the route it advertised
    assert hashlib.sha256(proc.stdout).digest() == hashlib.sha256(blob).digest()
    run.assert_clean()


@pytest.mark.parametrize(("command", "status"), [
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "kill -TERM $$"], 128 + 15),
    (["no-such-program-here"], 127),
    (["true"], 0),
])
def test_the_exit_status_is_the_commands(world: World, command: list[str], status: int) -> None:
    run = Run(world)
    proc = run("--netns", "--", *command)
    assert proc.returncode == status, proc.stderr.decode(errors="replace")
    run.assert_clean()


def test_a_forward_carries_a_host_port_to_a_server_in_the_namespace(world: World) -> None:
    run = Run(world)
    host_port = free_port()
    body = b"".join(payload_chunks(SMALL, seed=9))
    server = subprocess.Popen(
        run.argv("--netns", "--forward", f"tcp:{host_port}:8080", "--", "busybox", "nc",
                 "-l", "-p", "8080", "-e", "busybox", "sha256sum"),
        cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        reply = b""
        deadline = time.monotonic() + 30
        while not reply:  # until nc listens inside, the gateway's connect is refused
            assert time.monotonic() < deadline, "the forward never reached nc"
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", host_port), timeout=10) as conn:
                conn.sendall(body)
                conn.shutdown(socket.SHUT_WR)
                reply = b"".join(iter(lambda: conn.recv(4096), b""))
            time.sleep(0.1)
        assert reply.split()[0].decode() == payload_sha256(SMALL, seed=9)
        assert server.wait(timeout=20) == 0  # nc served its one connection and exited
    finally:
        stop_process(server)
        if server.stderr is not None:
            server.stderr.close()
    run.assert_clean()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_to_vipernet_reaches_the_command(world: World, signum: int) -> None:
    # No terminal here, so SIGINT came from kill(1), not a keyboard: it is passed on too.
    run = Run(world)
    proc = subprocess.Popen(run.argv("--netns", "--", "sleep", "30"), cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
                             for pid in marked_processes(run.mark)), what="sleep to start")
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 128 + signum  # sleep died of it, and we say so
    finally:
        stop_process(proc)
    run.assert_clean()


def test_ctrl_c_at_a_terminal_is_the_commands_to_handle(world: World) -> None:
    # The terminal sends SIGINT to the foreground group, vipernet included: the shell
    # traps it once (not twice: vipernet does not pass on what CMD already got), lives
    # on, still has its network, and its status is vipernet's.
    run = Run(world)
    script = ("trap 'echo trapped INT' INT; echo ready; sleep 1; echo survived; "
              f"curl -sS '{world.http.url(SMALL)}' | sha256sum; exit 5")
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.chdir("/")
        argv = run.argv("--netns", "--", "sh", "-c", script)
        os.execv(argv[0], argv)
    output = b""
    try:
        while b"ready" not in output:
            output += os.read(master, 4096)
        os.write(master, b"\x03")
        with contextlib.suppress(OSError):  # EIO once the last holder of the pty exits
            while chunk := os.read(master, 4096):
                output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 5, text
    assert text.count("trapped INT") == 1, text
    assert "survived" in text and payload_sha256(SMALL) in text, text
    run.assert_clean()


def test_attach_to_an_existing_namespace_by_pid_and_by_path(world: World) -> None:
    mark = uuid.uuid4().hex
    holder = subprocess.Popen(
        world.nobody("env", f"VIPERNET_TEST_MARK={mark}", "unshare", "--user", "--net",
                     "--map-root-user", "sleep", "60"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep",
                 what="unshare to exec sleep")
        pid = str(holder.pid)
        url = world.http.url(SMALL)
        enter = world.nobody("nsenter", "-t", pid, "-U", "-n", "--preserve-credentials")
        for target in (pid, f"/proc/{pid}/ns/net"):
            run = Run(world)
            gateway = subprocess.Popen(run.argv("--netns", target), cwd="/",
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                assert gateway.stderr is not None
                line = gateway.stderr.readline().decode()
                assert "serving tap0" in line, line + gateway.stderr.read().decode()
                got = subprocess.run([*enter, "curl", "-sS", url], capture_output=True,
                                     timeout=60)
                assert got.returncode == 0, got.stderr
                assert hashlib.sha256(got.stdout).hexdigest() == payload_sha256(SMALL)
                if target == pid:
                    gateway.terminate()  # the first is stopped; the second ends by itself
                else:
                    holder.kill()
                assert gateway.wait(timeout=10) == 0
            finally:
                stop_process(gateway)
            run.assert_clean()
    finally:
        stop_process(holder)
    assert marked_processes(mark) == []


def test_bad_uses_are_refused_with_status_2(world: World) -> None:
    run = Run(world)
    for args, words in ((["--netns"], "nothing to run"),
                        (["--netns", "curl", "x"], "runs nothing"),
                        (["--mtu", "9000", "--", "true"], "only go with --netns"),
                        (["--netns", "--mtu", "100", "--", "true"], "576..65521"),
                        (["--netns", "--dns", "nonsense", "--", "true"], "--dns")):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr.decode(), (args, proc.stderr)
    proc = run("--netns", "99999999")
    assert proc.returncode == 1 and b"no process 99999999" in proc.stderr
    run.assert_clean()
