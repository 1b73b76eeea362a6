"""``vipernet run`` for non-Python programs: the LD_PRELOAD library on the test bed.

netd runs on the bed's TAP; the kernel in the namespace serves HTTP (a 50 MB random
file), HTTPS (nginx, a CA made here), DNS (dnsmasq), UDP echo, ``nc -l``, sshd.
Unmodified curl, wget, nc (TCP and UDP), git and ssh run under ``vipernet run`` in the
host namespace, which has no route to 10.0.2.0/24 of its own: they can only reach the
peers through netd.  Every test also checks netd saw the traffic (``fdlink.attached``
counts a descriptor per socket, ``stat`` lists the sockets), and netd's own capture,
read by tshark in the module's last test, shows each program's connections leaving
from the stack's MAC and IP.  The library is compiled from ``src/vipernet/preload``
here with ``-Wall -Wextra -Werror``, as ``make setup`` does, so the tests always run the
source; so are the small C programs of ``tests/run/programs``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.link.tshark import tshark_problems
from tests.netd.test_fd_plane import certificate
from tests.netd_rig import cli_env, start_udp_echo
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary, stop_process, wait_for
from vipernet.cli.cmd_run import PRELOAD_ENV, preload_library
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "vipernet" / "preload" / "vipernet_preload.c"
PROGRAMS = Path(__file__).resolve().parent / "programs"
HTTP, NC_KERNEL, NC_STACK, SSH, HTTPS = 18080, 18081, 18082, 18022, 18443
NC_UDP_STACK, PREFORK, PY_PREFORK_PORT = 18083, 18084, 18085
NAME = "web.preload.test"
BIG = 50 * 1024 * 1024
STACK_MAC = "52:54:00:12:34:56"  # netd's default, the spec's
NGINX_CONF = """
daemon off;
master_process on;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/ngx-body;
    proxy_temp_path {work}/ngx-proxy;
    fastcgi_temp_path {work}/ngx-fastcgi;
    uwsgi_temp_path {work}/ngx-uwsgi;
    scgi_temp_path {work}/ngx-scgi;
    sendfile on;
    server {{
        listen {ip}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {www};
    }}
}}
"""


@dataclass
class Rig:
    bed: TestBed
    path: str  # netd's IPC socket
    library: str
    www: Path
    big_sha: str
    dnsmasq: subprocess.Popen[bytes]
    ca: str
    udp_echo: int  # the kernel UDP echo server's port
    pcap: Path
    # What each program's traffic was, for the capture check: (what, start, end) in wall
    # clock time, the capture's timestamps.
    marks: dict[str, tuple[float, float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def mark(self, what: str) -> Iterator[None]:
        started = time.time()
        try:
            yield
        finally:
            self.marks[what] = (started, time.time())

    def compile(self, name: str) -> str:
        """A C program of tests/run/programs, built here (warning-free)."""
        out = self.bed.workdir / name
        if not out.exists():
            build = subprocess.run([require_binary("cc"), "-std=c11", "-O2", "-Wall", "-Wextra",
                                    "-Werror", "-D_FORTIFY_SOURCE=2", "-o", str(out),
                                    str(PROGRAMS / f"{name}.c")],
                                   capture_output=True, text=True, timeout=120)
            assert build.returncode == 0 and not build.stderr, build.stderr
        return str(out)

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
        pcap = bed.workdir / "netd.pcap"
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path, "--pcap", str(pcap)],
                         env=cli_env(VIPERNET_SOCKET=path),
                         stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        www = bed.workdir / "www"
        www.mkdir()
        (www / "big").write_bytes(os.urandom(BIG))
        (www / "small").write_text("hello through netd\n")
        bed.start([sys.executable, "-m", "http.server", "--bind", GATEWAY, "--directory",
                   str(www), str(HTTP)])
        dnsmasq = bed.start_dnsmasq(f"--host-record={NAME},{GATEWAY}")
        cert, key = certificate(bed.workdir)
        nginx = require_binary("nginx")
        conf = bed.workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=bed.workdir, ip=GATEWAY, port=HTTPS, cert=cert,
                                          key=key, www=www))
        bed.start([nginx, "-e", str(bed.workdir / "nginx.err"), "-p", str(bed.workdir), "-c",
                   str(conf)])
        _echo, udp_echo = start_udp_echo(bed)
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None, (bed.workdir / "netd.err").read_text()
        wait_for(lambda: bed.tcp_port_open(GATEWAY, HTTP), what="http.server")
        wait_for(lambda: bed.tcp_port_open(GATEWAY, HTTPS), what="nginx")
        yield Rig(bed, path, str(library), www, _sha(www / "big"), dnsmasq, cert, udp_echo,
                  pcap)
    finally:
        bed.close()


def test_curl_downloads_50_mb_through_netd(rig: Rig) -> None:
    require_binary("curl")
    out = rig.bed.workdir / "curl.out"
    before = rig.attached()
    started = time.monotonic()
    with rig.mark("curl http"):
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
    with rig.mark("wget"):
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
    # Two descriptors: curl's connection, and the IPv6 UDP socket it opens first to learn
    # whether IPv6 works at all (now an AF_INET6 socket of netd's, not refused).
    assert after.get("fdlink.attached", 0) == before.get("fdlink.attached", 0) + 2
    asked = sum(after.get(k, 0) - before.get(k, 0) for k in ("dns.queries_udp", "dns.cache_hits"))
    assert asked >= 1  # the name was asked of netd's resolver (dnsmasq behind the TAP)
    missing = rig.run("curl", "-sS", "http://nothing-here.preload.test/")
    assert missing.returncode == 6 and b"Could not resolve host" in missing.stderr
    # The name has no AAAA: curl -6 asks netd's resolver (never the host's) and finds no
    # IPv6 address to connect to.
    r6 = rig.run("curl", "-6", "-sS", f"http://{NAME}:{HTTP}/small")
    # This curl asks for AF_UNSPEC and drops the IPv4 answer itself: "couldn't connect"
    # (7); others ask for AF_INET6 and get EAI_NONAME: "could not resolve" (6).
    assert r6.returncode in (6, 7) and r6.stdout == b"", r6.stderr


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
    with source.open("rb") as stdin, rig.mark("nc"):
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
        with source.open("rb") as stdin, rig.mark("nc -l"):
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
    with rig.mark("git"):
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
    with rig.mark("ssh"):
        result = rig.run(ssh, "-i", str(keys / "user"), "-o", "StrictHostKeyChecking=no",
                         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                         "-o", "ConnectTimeout=20", "-p", str(SSH), f"root@{NAME}",
                         "echo $SSH_CONNECTION; sha256sum", input=data)
    assert result.returncode == 0, result.stderr
    peer, digest = result.stdout.decode().splitlines()
    assert peer.split()[0] == STACK_IP  # sshd saw the stack's address, not the host's
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()


SEMANTICS = r"""
import errno, json, os, select, socket, subprocess, sys, threading, time
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
out["udp"] = err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
out["ping"] = err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
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
# 10.0.2.77 does not answer ARP: the connect stays under way for seconds.
q = socket.socket()
q.setblocking(False)
out["silent_first"] = errno.errorcode[q.connect_ex(("10.0.2.77", 80))]
out["silent_second"] = errno.errorcode[q.connect_ex(("10.0.2.77", 80))]
q.close()
b = socket.socket()
first = {}
def blocking_connect():
    first["r"] = err(lambda: b.connect(("10.0.2.77", 80)))
t = threading.Thread(target=blocking_connect)
t.start()
time.sleep(0.5)
out["blocking_second"] = err(lambda: b.connect(("10.0.2.77", 80)))  # while t's waits
t.join(30)
out["blocking_first"] = first.get("r")
b.close()
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
    assert out["inet6"] == "ok"  # netd's AF_INET6 socket (its stack runs --ip6 auto)
    assert out["udp"] == "ok" and out["ping"] == "EPROTONOSUPPORT"  # UDP routed, ping not
    assert out["raw"] == "ESOCKTNOSUPPORT"
    assert out["unix"] == ["x", 1]  # AF_UNIX passes through untouched
    assert out["gai"] == [[2, GATEWAY]]  # AF_UNSPEC: the name has an A record only
    assert out["gai6"] == "gai:noname" and out["gai_missing"] == "gai:noname"
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
    # A second connect while the first is under way, blocking or not: EALREADY (Linux's)
    assert out["silent_first"] == "EINPROGRESS" and out["silent_second"] == "EALREADY"
    assert out["blocking_second"] == "EALREADY" and out["blocking_first"] == "EHOSTUNREACH"
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


# -- UDP, fork, HTTPS (the tests below); the capture check is the module's last test --

def test_nc_u_exchanges_datagrams_with_a_kernel_udp_echo(rig: Rig) -> None:
    """nc -u sends each line it reads as a datagram and prints what comes back; its stdin
    stays open until every echo is in (at EOF nc stops reading the network)."""
    nc = require_binary("nc")
    lines = [os.urandom(700).hex().encode() + b"\n" for _ in range(20)]  # 1401 bytes each
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            nc, "-u", GATEWAY, str(rig.udp_echo)]
    before = rig.attached()
    client = subprocess.Popen(argv, env=rig.env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdin is not None and client.stdout is not None
        with rig.mark("nc -u"):
            echoed = []
            for line in lines:  # one at a time: each its own datagram, answered in turn
                client.stdin.write(line)
                client.stdin.flush()
                echoed.append(client.stdout.readline())
        assert echoed == lines
        assert rig.attached() == before + 1  # one UDP descriptor, through netd
    finally:
        stop_process(client)
        for stream in (client.stdin, client.stdout, client.stderr):
            if stream is not None:
                stream.close()


KERNEL_UDP_PEER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.2", 0))
s.settimeout(20)
s.sendto(b"hello from the kernel\\n", ("10.0.2.15", int(sys.argv[1])))
data, source = s.recvfrom(1000)
print(source[0], data.decode().strip(), flush=True)
"""


def test_nc_u_listens_in_the_stack_and_answers_a_kernel_peer(rig: Rig) -> None:
    """``nc -u -l`` peeks at the first datagram (recvfrom with MSG_PEEK), connects to its
    source and sends its stdin there: both directions through the stack."""
    nc = require_binary("nc")
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            nc, "-u", "-l", str(NC_UDP_STACK)]
    read_end, write_end = os.pipe()
    server = subprocess.Popen(argv, env=rig.env(), stdin=read_end, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    os.close(read_end)
    try:
        wait_for(lambda: any(r["kind"] == "udp" and str(r["local"]).endswith(
            f":{NC_UDP_STACK}") for r in rig.sockets()), what="nc -u -l bound in the stack")
        with rig.mark("nc -u -l"):
            peer = rig.bed.start([sys.executable, "-c", KERNEL_UDP_PEER, str(NC_UDP_STACK)],
                                 stdout=subprocess.PIPE)
            assert server.stdout is not None
            assert server.stdout.readline() == b"hello from the kernel\n"
            os.write(write_end, b"hello from nc\n")
            out, _ = peer.communicate(timeout=30)
        assert out.decode().split(None, 1) == [STACK_IP, "hello from nc\n"]
    finally:
        os.close(write_end)
        stop_process(server)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


def test_a_c_program_sees_udp_boundaries_addresses_and_errors_as_on_linux(rig: Rig) -> None:
    probe = rig.compile("udp_probe")
    closed = 9  # nothing listens on discard: the kernel answers port unreachable
    result = rig.run(probe, GATEWAY, str(rig.udp_echo), str(closed), timeout=60)
    lines = result.stdout.decode().splitlines()
    assert [line for line in lines if not line.startswith("ok ")] == [], result.stderr
    assert result.returncode == 0
    assert {line.split()[1] for line in lines} >= {
        "boundaries_and_sources", "msg_peek", "cut", "msg_trunc_length", "next_intact",
        "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "select_epoll", "emsgsize",
        "read_connected", "econnrefused", "error_reported_once", "ping_refused"}


PREFORK_CLIENTS = """
import socket, sys, threading
answers = []
def one(i):
    with socket.create_connection(("10.0.2.15", int(sys.argv[1])), timeout=20) as s:
        s.sendall(b"client %d" % i)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(100):
            got += chunk
        answers.append(got.decode())
threads = [threading.Thread(target=one, args=(i,)) for i in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
for a in answers: print(a, flush=True)
"""


def _prefork_answers(rig: Rig, port: int, count: int) -> list[tuple[int, str]]:
    clients = rig.bed.start([sys.executable, "-c", PREFORK_CLIENTS, str(port), str(count)],
                            stdout=subprocess.PIPE)
    out, _ = clients.communicate(timeout=60)
    answers = []
    for line in out.decode().splitlines():
        word, pid, text = line.split(" ", 2)
        assert word == "PID"
        answers.append((int(pid), text))
    return answers


MULTICAST_MEMBER = """
import errno, socket, struct, sys
group, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", port))
mreq = socket.inet_aton(group) + bytes(4)
try:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
except OSError as exc:
    print("drop before join:", errno.errorcode[exc.errno], flush=True)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
print("ready", flush=True)
s.settimeout(20)
data, (ip, _) = s.recvfrom(2000)
print("got", ip, data.decode(), flush=True)
"""

MULTICAST_SENDER = """
import socket, sys, time
group, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.2.2"))
for i in range(40):
    s.sendto(b"to the group", (group, port))
    time.sleep(0.25)
"""


def test_a_program_joins_a_multicast_group_through_the_library(rig: Rig) -> None:
    """libc's setsockopt(IP_ADD_MEMBERSHIP) (Python's socket module under plain LD_PRELOAD,
    as a C program calls it) reaches netd's IGMP: the kernel's multicast to the group
    arrives, and netd's own errors come back as the program's errno."""
    group, port = "239.7.7.7", 6300
    member = subprocess.Popen([sys.executable, "-c", MULTICAST_MEMBER, group, str(port)],
                              env=rig.env(LD_PRELOAD=rig.library), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    sender = None
    try:
        assert member.stdout is not None
        assert member.stdout.readline().strip() == "drop before join: EADDRNOTAVAIL"
        assert member.stdout.readline().strip() == "ready"
        sender = rig.bed.start([sys.executable, "-c", MULTICAST_SENDER, group, str(port)])
        out, err = member.communicate(timeout=30)
        assert member.returncode == 0, err
        assert out.strip() == "got 10.0.2.2 to the group"
    finally:
        if member.poll() is None:
            member.kill()
            member.communicate()
        if sender is not None:
            sender.kill()
            sender.wait()


def test_a_c_pre_fork_server_s_children_accept_on_the_inherited_listener(rig: Rig) -> None:
    server_bin = rig.compile("prefork")
    before = rig.counters().get("adopt.ok", 0)
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            server_bin, str(PREFORK), "3"]
    # Its own session: stop_process signals the process group (the parent and children).
    server = subprocess.Popen(argv, env=rig.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert server.stdout is not None
        children = set()
        while (line := server.stdout.readline().decode()) != "ready\n":
            assert line.startswith("child "), line + server.stderr.read().decode()  # type: ignore[union-attr]
            children.add(int(line.split()[1]))
        answers = _prefork_answers(rig, PREFORK, 12)
        assert sorted(text for _, text in answers) == sorted(f"CLIENT {i}" for i in range(12))
        assert {pid for pid, _ in answers} <= children  # only the children accepted
        assert rig.counters().get("adopt.ok", 0) - before >= 3  # each child adopted it
    finally:
        stop_process(server)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


PY_PREFORK = r"""
import os, socket, sys
port, http = int(sys.argv[1]), int(sys.argv[2])
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("0.0.0.0", port))
lst.listen(16)
conn = socket.create_connection(("10.0.2.2", http))
pid = os.fork()
if pid == 0:
    # The child: the parent's connected socket, then the parent's listener.
    conn.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    print("child got", data.rsplit(b"\r\n", 1)[-1].decode().strip(),
          conn.getpeername()[1] == http, type(conn).__module__, flush=True)
    while True:
        c, _ = lst.accept()
        text = c.recv(100)
        c.sendall(b"PID %d " % os.getpid() + text.upper())
        c.close()
conn.close()
print("child", pid, flush=True)
print("ready", flush=True)
os.waitpid(pid, 0)
"""


def test_a_python_child_uses_its_parent_s_sockets_under_vipernet_run(rig: Rig) -> None:
    """Under vipernet run a Python program's sockets are vipernet's: after os.fork the
    child adopts them into its own channel (NET_SOCKET_ADOPT) at its first netd call."""
    before = rig.counters().get("adopt.ok", 0)
    argv = [sys.executable, "-m", "vipernet.cli.main", "run", "--socket", rig.path, "--",
            sys.executable, "-c", PY_PREFORK, str(PY_PREFORK_PORT), str(HTTP)]
    server = subprocess.Popen(argv, env=rig.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline().decode() for _ in range(3)]
        child = next(int(line.split()[1]) for line in lines if line.startswith("child "))
        assert "child got hello through netd True vipernet.netclient.sockets\n" in lines, lines
        answers = _prefork_answers(rig, PY_PREFORK_PORT, 4)
        assert sorted(answers) == sorted((child, f"CLIENT {i}") for i in range(4))
        assert rig.counters().get("adopt.ok", 0) - before >= 2  # connection and listener
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


def test_curl_downloads_50_mb_over_https_through_netd(rig: Rig) -> None:
    require_binary("curl")
    out = rig.bed.workdir / "curl-https.out"
    before = rig.attached()
    with rig.mark("curl https"):
        result = rig.run("curl", "-sS", "--cacert", rig.ca, "-o", str(out), "-w",
                         "%{time_total}", f"https://{GATEWAY}:{HTTPS}/big")
    assert result.returncode == 0, result.stderr
    assert _sha(out) == rig.big_sha
    assert rig.attached() == before + 1
    print(f"curl 50 MB over HTTPS through netd: {float(result.stdout):.2f} s in curl")


def _capture_rows(rig: Rig) -> list[dict[str, str]]:
    """Every SYN and UDP frame of netd's capture, one tshark pass."""
    fields = ["frame.time_epoch", "eth.src", "eth.dst", "ip.src", "ip.dst", "tcp.srcport",
              "tcp.dstport", "tcp.flags.ack", "udp.srcport", "udp.dstport"]
    argv = [require_binary("tshark"), "-r", str(rig.pcap), "-Y", "tcp.flags.syn == 1 || udp",
            "-T", "fields", "-E", "separator=|"]
    for name in fields:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=True).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def test_zz_netd_s_capture_shows_every_program_s_traffic_left_by_the_stack(rig: Rig) -> None:
    """Run last in this module: netd's own capture holds each program's connections, from
    the stack's MAC and IP (not the host's), and tshark finds nothing malformed in it."""
    time.sleep(1.5)  # the capture is flushed every second
    rows = _capture_rows(rig)
    ran = set(rig.marks)  # (all of them in a run of the whole module)
    assert ran, "no program of this module ran before the capture check"

    def during(what: str) -> list[dict[str, str]]:
        start, end = rig.marks[what]
        return [r for r in rows if start - 0.5 <= float(r["frame.time_epoch"]) <= end + 0.5]

    def ours_out(r: dict[str, str]) -> bool:
        return r["eth.src"] == STACK_MAC and r["ip.src"] == STACK_IP

    def syns_to(what: str, port: int) -> list[dict[str, str]]:
        return [r for r in during(what) if ours_out(r) and r["tcp.dstport"] == str(port)
                and r["tcp.flags.ack"] in ("0", "False")]

    for what, port in (("curl http", HTTP), ("wget", HTTP), ("git", HTTP), ("ssh", SSH),
                       ("nc", NC_KERNEL), ("curl https", HTTPS)):
        if what in ran:
            assert syns_to(what, port), f"no SYN of {what} from the stack's MAC and IP"
    if "nc -l" in ran:  # the kernel's SYN to the stack's IP, the stack's SYN-ACK
        listening = during("nc -l")
        assert any(r["ip.dst"] == STACK_IP and r["eth.dst"] == STACK_MAC
                   and r["tcp.dstport"] == str(NC_STACK)
                   and r["tcp.flags.ack"] in ("0", "False") for r in listening)
        assert any(ours_out(r) and r["tcp.srcport"] == str(NC_STACK)
                   and r["tcp.flags.ack"] in ("1", "True") for r in listening)
    if "nc -u" in ran:  # its datagrams left by the stack, the echo's came back to it
        udp = during("nc -u")
        assert any(ours_out(r) and r["udp.dstport"] == str(rig.udp_echo) for r in udp)
        assert any(r["ip.dst"] == STACK_IP and r["udp.srcport"] == str(rig.udp_echo)
                   for r in udp)
    if "nc -u -l" in ran:
        udp_listen = during("nc -u -l")
        assert any(r["ip.dst"] == STACK_IP and r["udp.dstport"] == str(NC_UDP_STACK)
                   for r in udp_listen)
        assert any(ours_out(r) and r["udp.srcport"] == str(NC_UDP_STACK)
                   for r in udp_listen)
    assert tshark_problems(rig.pcap) == []
