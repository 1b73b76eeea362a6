"""``vipernet run`` for non-Python programs: the LD_PRELOAD library on the test bed.

netd runs on the bed's TAP; the kernel in the namespace serves HTTP (a 50 MB random
file), DNS (dnsmasq), ``nc -l``, sshd.  Unmodified curl, wget, nc, git and ssh run under
``vipernet run`` in the host namespace, which has no route to 10.0.2.0/24 of its own:
they can only reach the peers through netd.  Every test also checks netd saw the
traffic (``fdlink.attached`` counts a descriptor per stream, ``stat`` lists the
sockets).  The library is compiled from ``src/vipernet/preload`` here with
``-Wall -Wextra -Werror``, as ``make setup`` does, so the tests always run the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.netd_rig import cli_env
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary, stop_process, wait_for
from vipernet.cli.cmd_run import PRELOAD_ENV, preload_library
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "vipernet" / "preload" / "vipernet_preload.c"
HTTP, NC_KERNEL, NC_STACK, SSH = 18080, 18081, 18082, 18022
NAME = "web.preload.test"
BIG = 50 * 1024 * 1024


@dataclass
class Rig:
    bed: TestBed
    path: str  # netd's IPC socket
    library: str
    www: Path
    big_sha: str
    dnsmasq: subprocess.Popen[bytes]

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(**{"VIPERNET_SOCKET": self.path, PRELOAD_ENV: self.library, **extra})

    def run(self, *command: str, timeout: float = 120, stdin: IO[bytes] | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """``vipernet run -- COMMAND`` from the host namespace."""
        argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", self.path,
                "--", *command]
        return subprocess.run(argv, env=self.env(), capture_output=True, timeout=timeout,
                              stdin=stdin, input=input)

    def counters(self) -> dict[str, int]:
        with netclient.connect(self.path) as client:
            counters: dict[str, int] = client.info()["netd_counters"]
            return counters

    def attached(self) -> int:
        return self.counters().get("fdlink.attached", 0)

    def sockets(self) -> list[dict[str, object]]:
        with netclient.connect(self.path) as client:
            rows: list[dict[str, object]] = client.stat()["sockets"]
            return rows


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    cc = require_binary("cc")
    bed = TestBed("pre")
    try:
        library = bed.workdir / "libvipernet_preload.so"
        build = subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC",
                                "-shared", "-o", str(library), str(SOURCE), "-ldl",
                                "-lpthread"], capture_output=True, text=True, timeout=120)
        assert build.returncode == 0 and not build.stderr, build.stderr  # warning-free
        path = str(bed.workdir / "netd.sock")
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path],
                         env=cli_env(VIPERNET_SOCKET=path),
                         stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        www = bed.workdir / "www"
        www.mkdir()
        (www / "big").write_bytes(os.urandom(BIG))
        (www / "small").write_text("hello through netd\n")
        bed.start([sys.executable, "-m", "http.server", "--bind", GATEWAY, "--directory",
                   str(www), str(HTTP)])
        dnsmasq = bed.start_dnsmasq(f"--host-record={NAME},{GATEWAY}")
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None, (bed.workdir / "netd.err").read_text()
        wait_for(lambda: bed.tcp_port_open(GATEWAY, HTTP), what="http.server")
        yield Rig(bed, path, str(library), www, _sha(www / "big"), dnsmasq)
    finally:
        bed.close()


def test_curl_downloads_50_mb_through_netd(rig: Rig) -> None:
    require_binary("curl")
    out = rig.bed.workdir / "curl.out"
    before = rig.attached()
    started = time.monotonic()
    result = rig.run("curl", "-sS", "-o", str(out), "-w", "%{time_total}",
                     f"http://{GATEWAY}:{HTTP}/big")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert _sha(out) == rig.big_sha
    assert rig.attached() == before + 1  # the one connection, through netd's fd plane
    print(f"curl 50 MB through netd: {float(result.stdout):.2f} s in curl, "
          f"{elapsed:.2f} s with vipernet run's start-up")


def test_wget_downloads_through_netd(rig: Rig) -> None:
    require_binary("wget")
    out = rig.bed.workdir / "wget.out"
    before = rig.attached()
    result = rig.run("wget", "-q", "-O", str(out), f"http://{GATEWAY}:{HTTP}/big")
    assert result.returncode == 0, result.stderr
    assert _sha(out) == rig.big_sha
    assert rig.attached() == before + 1


def test_curl_resolves_a_name_through_netd_s_resolver(rig: Rig) -> None:
    require_binary("curl")
    before = rig.counters()
    result = rig.run("curl", "-sS", f"http://{NAME}:{HTTP}/small")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello through netd\n"
    after = rig.counters()
    assert after.get("fdlink.attached", 0) == before.get("fdlink.attached", 0) + 1
    asked = sum(after.get(k, 0) - before.get(k, 0) for k in ("dns.queries_udp", "dns.cache_hits"))
    assert asked >= 1  # the name was asked of netd's resolver (dnsmasq behind the TAP)
    missing = rig.run("curl", "-sS", "http://nothing-here.preload.test/")
    assert missing.returncode == 6 and b"Could not resolve host" in missing.stderr
    # IPv6 is refused, never asked of the host: curl -6 finds no address.
    assert rig.run("curl", "-6", "-sS", f"http://{NAME}:{HTTP}/small").returncode == 6


def test_a_lookup_abandoned_by_siglongjmp_leaves_the_library_usable(rig: Rig) -> None:
    """wget's --dns-timeout is alarm() + siglongjmp out of getaddrinfo, i.e. out of the
    library's wait for netd's reply: the next call must notice and start afresh."""
    require_binary("wget")
    out = rig.bed.workdir / "after-jump.out"
    os.kill(rig.dnsmasq.pid, signal.SIGSTOP)  # the name's lookup now hangs
    try:
        result = rig.run("wget", "--dns-timeout=1", "-t", "1", "-O", str(out),
                         "http://stalled.preload.test/", f"http://{GATEWAY}:{HTTP}/small",
                         timeout=60)
    finally:
        os.kill(rig.dnsmasq.pid, signal.SIGCONT)
    assert b"unable to resolve host address" in result.stderr
    assert out.read_text() == "hello through netd\n", result.stderr


def test_curl_s_non_blocking_connect_reports_refusal_and_success(rig: Rig) -> None:
    """curl connects non-blocking, polls the descriptor and reads SO_ERROR: the library
    must answer the connect's final result there."""
    require_binary("curl")
    refused = rig.run("curl", "-sS", f"http://{GATEWAY}:1/")
    assert refused.returncode == 7, refused.stderr  # CURLE_COULDNT_CONNECT
    assert b"Couldn't connect to server" in refused.stderr
    ok = rig.run("curl", "-sS", "-w", " %{http_code}", f"http://{GATEWAY}:{HTTP}/small")
    assert ok.returncode == 0 and ok.stdout.endswith(b" 200")


def test_nc_sends_a_file_to_a_kernel_listener(rig: Rig) -> None:
    nc = require_binary("nc")
    data = os.urandom(8 << 20)
    source = rig.bed.workdir / "nc.in"
    source.write_bytes(data)
    received = rig.bed.workdir / "nc.kernel.out"
    with received.open("wb") as sink:
        listener = rig.bed.start([nc, "-l", GATEWAY, str(NC_KERNEL)], stdout=sink)
    wait_for(lambda: rig.bed.tcp_port_open(GATEWAY, NC_KERNEL), what="kernel nc -l")
    before = rig.attached()
    with source.open("rb") as stdin:
        result = rig.run(nc, "-N", GATEWAY, str(NC_KERNEL), stdin=stdin)
    assert result.returncode == 0, result.stderr
    listener.wait(timeout=30)
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert rig.attached() == before + 1


def test_nc_listens_in_the_stack_and_receives_from_a_kernel_client(rig: Rig) -> None:
    nc = require_binary("nc")
    data = os.urandom(8 << 20)
    source = rig.bed.workdir / "nc2.in"
    source.write_bytes(data)
    received = rig.bed.workdir / "nc.stack.out"
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            nc, "-l", str(NC_STACK)]
    with received.open("wb") as sink:
        server = subprocess.Popen(argv, env=rig.env(), stdout=sink, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(r["state"] == "LISTEN" and str(r["local"]).endswith(
            f":{NC_STACK}") for r in rig.sockets()), what="nc -l listening in the stack")
        with source.open("rb") as stdin:
            client = subprocess.run(rig.bed.ns_argv([nc, "-N", STACK_IP, str(NC_STACK)]),
                                    stdin=stdin, capture_output=True, timeout=60)
        assert client.returncode == 0, client.stderr
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_git_clones_over_http_through_netd(rig: Rig) -> None:
    git = require_binary("git")
    origin = rig.www / "repo.git"
    work = rig.bed.workdir / "work"
    subprocess.run([git, "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run([git, "init", "-q", str(work)], check=True)
    (work / "README").write_text("cloned through netd\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([git, "-C", str(work), "add", "README"], check=True)
    subprocess.run([git, "-C", str(work), *ident, "commit", "-qm", "one"], check=True)
    subprocess.run([git, "-C", str(work), "push", "-q", str(origin), "HEAD:master"], check=True,
                   capture_output=True)
    subprocess.run([git, "-C", str(origin), "update-server-info"], check=True)  # dumb http
    before = rig.attached()
    clone = rig.bed.workdir / "clone"
    result = rig.run(git, "clone", "-q", f"http://{NAME}:{HTTP}/repo.git", str(clone))
    assert result.returncode == 0, result.stderr
    assert (clone / "README").read_text() == "cloned through netd\n"
    assert rig.attached() > before


def test_ssh_runs_a_command_on_a_kernel_sshd(rig: Rig) -> None:
    sshd = require_binary("sshd")
    ssh = require_binary("ssh")
    keygen = require_binary("ssh-keygen")
    keys = rig.bed.workdir / "ssh"
    keys.mkdir()
    for name in ("host", "user"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)
    (keys / "authorized_keys").write_bytes((keys / "user.pub").read_bytes())
    (keys / "sshd_config").write_text(
        f"Port {SSH}\nListenAddress {GATEWAY}\nHostKey {keys / 'host'}\n"
        f"PidFile {keys / 'sshd.pid'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nUsePAM no\n")
    os.makedirs("/run/sshd", exist_ok=True)
    rig.bed.start([sshd, "-D", "-e", "-f", str(keys / "sshd_config")])
    wait_for(lambda: rig.bed.tcp_port_open(GATEWAY, SSH), what="sshd")
    data = os.urandom(4 << 20)
    result = rig.run(ssh, "-i", str(keys / "user"), "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                     "-o", "ConnectTimeout=20", "-p", str(SSH), f"root@{NAME}",
                     "echo $SSH_CONNECTION; sha256sum", input=data)
    assert result.returncode == 0, result.stderr
    peer, digest = result.stdout.decode().splitlines()
    assert peer.split()[0] == STACK_IP  # sshd saw the stack's address, not the host's
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()


SEMANTICS = r"""
import errno, json, os, select, socket, subprocess, sys
out = {}
NAME, HTTP, NS = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def err(f):
    try:
        f()
    except socket.gaierror as e:
        return "gai:" + {socket.EAI_FAMILY: "family", socket.EAI_NONAME: "noname"}.get(
            e.errno, str(e.errno))
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"
out["inet6"] = err(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
out["udp"] = err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
out["raw"] = err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
a, b = socket.socketpair()
a.sendall(b"x")
out["unix"] = [b.recv(1).decode(), a.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)]
out["gai"] = sorted({(f, ip) for f, _, _, _, (ip, *_r) in socket.getaddrinfo(NAME, HTTP)})
out["gai6"] = err(lambda: socket.getaddrinfo(NAME, HTTP, socket.AF_INET6))
out["gai_missing"] = err(lambda: socket.getaddrinfo("nothing-here.preload.test", 80))
out["localhost"] = socket.gethostbyname("localhost")
out["byname"] = socket.gethostbyname(NAME)
out["nameinfo"] = list(socket.getnameinfo(("10.0.2.2", 80), 0))

def get(s):
    s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()

out["refused"] = err(lambda: socket.create_connection(("10.0.2.2", 1), timeout=10))
s = socket.socket()
s.setblocking(False)
out["nb_connect"] = errno.errorcode[s.connect_ex(("10.0.2.2", HTTP))]
select.select([], [s], [], 10)
out["so_error"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
out["again"] = errno.errorcode.get(s.connect_ex(("10.0.2.2", HTTP)), "0")
s.setblocking(True)
out["names"] = [s.getsockname()[0], list(s.getpeername())]
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)  # accepted, no effect
out["opts"] = [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
               s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
               err(lambda: s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 5))]
pid = os.fork()
if pid == 0:  # the child inherits the connection, uses it, knows its peer
    ok = get(s) == "HTTP/1.0 200 OK" and s.getpeername() == ("10.0.2.2", HTTP)
    os._exit(0 if ok else 1)
s.close()
out["fork_child"] = os.waitpid(pid, 0)[1]
r = socket.socket()
r.setblocking(False)
r.connect_ex(("10.0.2.2", 1))
select.select([], [r], [], 10)
out["nb_refused"] = errno.errorcode.get(r.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
r.close()
out["timeout_get"] = get(socket.create_connection(("10.0.2.2", HTTP), timeout=10))

lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("0.0.0.0", 0))
lst.listen(8)
port = lst.getsockname()[1]
lst.setblocking(False)
out["accept_empty"] = err(lst.accept)
peer = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c",
    "import socket; c = socket.create_connection(('10.0.2.15', %d)); c.sendall(b'hi');"
    "c.shutdown(1); print(c.recv(10).decode())" % port], stdout=subprocess.PIPE,
    env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})  # a kernel peer
out["listener_readable"] = bool(select.select([lst], [], [], 20)[0])
c, addr = lst.accept()
c.setblocking(True)
out["accepted_from"] = addr[0]
out["accepted_data"] = c.recv(10).decode()
c.sendall(b"yo")
c.close()
out["peer_got"] = peer.communicate(timeout=20)[0].decode().strip()
print(json.dumps(out))
"""


def test_the_library_behaves_like_a_kernel_socket_api(rig: Rig) -> None:
    """Python's own socket module (no vipernet shim: plain LD_PRELOAD) drives libc's calls,
    so this checks the library's answers call by call."""
    before = rig.attached()
    env = rig.env(LD_PRELOAD=rig.library)
    result = subprocess.run([sys.executable, "-c", SEMANTICS, NAME, str(HTTP), rig.bed.name],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["inet6"] == "EAFNOSUPPORT"  # refused, not the host's IPv6
    assert out["udp"] == "EPROTONOSUPPORT" and out["raw"] == "ESOCKTNOSUPPORT"
    assert out["unix"] == ["x", 1]  # AF_UNIX passes through untouched
    assert out["gai"] == [[2, GATEWAY]]  # AF_UNSPEC: IPv4 only
    assert out["gai6"] == "gai:family" and out["gai_missing"] == "gai:noname"
    assert out["localhost"] == STACK_IP  # "this machine" is the stack (it has no loopback)
    assert out["byname"] == GATEWAY
    assert out["nameinfo"] == [GATEWAY, "http"]  # numeric host: no reverse lookup
    assert out["refused"] == "ECONNREFUSED"
    assert out["nb_connect"] == "EINPROGRESS" and out["so_error"] == 0
    assert out["again"] == "EISCONN"
    assert out["names"] == [STACK_IP, [GATEWAY, HTTP]]
    assert out["opts"] == [1, 1, "ENOPROTOOPT"]
    assert out["fork_child"] == 0
    assert out["nb_refused"] == "ECONNREFUSED"
    assert out["timeout_get"] == "HTTP/1.0 200 OK"
    assert out["accept_empty"] == "EAGAIN"
    assert out["listener_readable"] and out["accepted_from"] == GATEWAY
    assert out["accepted_data"] == "hi" and out["peer_got"] == "yo"
    # connected: nb, fork's, timeout_get, nb_refused's, the listener, the accepted one
    assert rig.attached() - before >= 5


THREADS = r"""
import socket, sys, threading
HTTP = int(sys.argv[1])
lst = socket.socket()
lst.bind(("0.0.0.0", 0))
lst.listen(4)
port = lst.getsockname()[1]
accepted = []
def server():
    c, addr = lst.accept()  # parked in netd (blocking ACCEPT) while the others run
    accepted.append(c.recv(10))
    c.close()
waiting = threading.Thread(target=server)
waiting.start()
results = []
def fetch():
    s = socket.create_connection(("10.0.2.2", HTTP), timeout=30)
    s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    results.append(data.endswith(b"hello through netd\n"))
    s.close()
workers = [threading.Thread(target=fetch) for _ in range(16)]
for w in workers:
    w.start()
for w in workers:
    w.join(60)
print(sum(results))
c = socket.create_connection(("localhost", port), timeout=30)  # the stack's own address
c.sendall(b"done")
waiting.join(30)
print(accepted[0].decode())
"""


def test_threads_share_one_channel_and_a_parked_accept_holds_up_nobody(rig: Rig) -> None:
    env = rig.env(LD_PRELOAD=rig.library)
    result = subprocess.run([sys.executable, "-c", THREADS, str(HTTP)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["16", "done"]


def test_python_programs_get_the_shim_and_are_not_routed_twice(rig: Rig) -> None:
    """Under vipernet run a Python program has both hooks: its stdlib sockets are the
    shim's (which reach netd over AF_UNIX, untouched by the library); a socket made by C
    code straight from libc is the library's.  Each is one netd stream, not two."""
    program = (
        "import ctypes, socket, urllib.request\n"
        f"print(urllib.request.urlopen('http://{NAME}:{HTTP}/small').read().decode().strip())\n"
        "s = socket.create_connection(('10.0.2.2', %d))\n"
        "print(type(s).__module__)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.socket(2, 1, 0)\n"
        "raw = socket.socket(fileno=fd)\n"  # a libc socket, as a C extension would make
        "raw.connect(('10.0.2.2', %d))\n"
        "print(raw.getsockname()[0])\n" % (HTTP, HTTP))
    before = rig.attached()
    result = rig.run(sys.executable, "-c", program)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["hello", "through", "netd",
                                              "vipernet.netclient.sockets", STACK_IP]
    assert rig.attached() == before + 3


def test_killing_curl_mid_download_releases_its_socket_in_netd(rig: Rig) -> None:
    curl = require_binary("curl")
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            curl, "-s", "--limit-rate", "1M", "-o", "/dev/null", f"http://{GATEWAY}:{HTTP}/big"]
    proc = subprocess.Popen(argv, env=rig.env(), start_new_session=True)
    try:
        def curl_rows() -> list[dict[str, object]]:
            return [r for r in rig.sockets() if r.get("pid") == proc.pid and r["kind"] == "tcp"]

        wait_for(lambda: any(r["state"] == "ESTABLISHED" for r in curl_rows()),
                 what="curl's connection in netd's stat")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while curl_rows() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert curl_rows() == []  # released within seconds of the descriptor's death
    finally:
        stop_process(proc)


def test_an_unreachable_netd_fails_socket_with_one_line_naming_vipernet_socket(
        rig: Rig, tmp_path: Path) -> None:
    program = ("import socket\n"
               "for _ in range(3):\n"
               "    try:\n"
               "        socket.socket()\n"
               "    except OSError as exc:\n"
               "        print(exc.errno)\n")
    env = rig.env(LD_PRELOAD=rig.library, VIPERNET_SOCKET=str(tmp_path / "none.sock"))
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["2", "2", "2"]  # ENOENT, never a host socket
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "$VIPERNET_SOCKET" in lines[0] and "none.sock" in lines[0]


def test_vipernet_run_without_the_library_says_run_make_setup(tmp_path: Path) -> None:
    env = cli_env(**{PRELOAD_ENV: str(tmp_path / "missing.so")})
    result = subprocess.run([sys.executable, "-m", "vipernet.cli.main", "run", "--", "true"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "run make setup" in result.stderr and "missing.so" in result.stderr


def test_vipernet_run_warns_that_a_static_binary_cannot_be_routed(rig: Rig,
                                                                  tmp_path: Path) -> None:
    cc = require_binary("cc")
    (tmp_path / "static.c").write_text("int main(void) { return 3; }\n")
    static = tmp_path / "static"
    subprocess.run([cc, "-static", "-o", str(static), str(tmp_path / "static.c")], check=True)
    result = rig.run(str(static))
    assert result.returncode == 3  # it still runs
    assert b"statically linked" in result.stderr and b"host's network" in result.stderr
    dynamic = rig.run("true")
    assert dynamic.returncode == 0 and dynamic.stderr == b""


def test_make_setup_builds_the_library_where_vipernet_run_looks() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    default = preload_library({})
    assert default == ROOT / "build" / "libvipernet_preload.so"
    assert "build/libvipernet_preload.so" in setup and "vipernet_preload.c" in setup
