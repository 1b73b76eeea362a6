"""The fd data plane on the test bed: vipernet TCP sockets as real descriptors.

netd on the TAP, the kernel in the namespace as the peer: an echo server, a server that
answers with a reset, and a TLS echo server (stdlib ssl, a certificate made here).  The
client side is ``vipernet.socket`` in this process, driven by select/poll/epoll,
selectors, asyncio and stdlib ssl -- none of which worked before the descriptor existed.
"""

from __future__ import annotations

import array
import asyncio
import datetime
import errno
import hashlib
import ipaddress
import os
import select
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netd.chaos import ECHO_SERVER
from tests.netd_rig import cli_env, start_udp_echo, vipernet_cli
from tests.testbed import GATEWAY, TestBed, wait_for
from vipernet.netclient import client as netclient
from vipernet.netclient.sockets import socket as vsocket_class
from vipernet.netd import protocol as p

pytestmark = pytest.mark.testbed

ECHO, RESET, TLS = 19000, 19001, 19002

RESET_SERVER = """
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.2", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # linger 0: a RST instead of a FIN
"""

TLS_SERVER = """
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.2", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            while data := t.recv(65536):
                t.sendall(data)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@dataclass
class Rig:
    bed: TestBed
    path: str
    ca: str
    env: dict[str, str]

    def connect(self, port: int = ECHO, timeout: float | None = 10.0) -> vsocket_class:
        sock = vsocket_class(client=netclient.connect(self.path))
        sock.settimeout(timeout)
        sock.connect((GATEWAY, port))
        return sock

    def stat(self) -> dict[str, object]:
        with netclient.connect(self.path) as client:
            return client.stat()


def certificate(directory: Path) -> tuple[str, str]:
    """A self-signed CA certificate for echo.test and 10.0.2.2, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "echo.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("echo.test"),
                x509.IPAddress(ipaddress.IPv4Address(GATEWAY))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    bed = TestBed("fd")
    try:
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=env,
                         stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        cert, key = certificate(bed.workdir)
        _ready(bed.start([sys.executable, "-c", ECHO_SERVER, str(ECHO)], stdout=subprocess.PIPE))
        _ready(bed.start([sys.executable, "-c", RESET_SERVER, str(RESET)],
                         stdout=subprocess.PIPE))
        _ready(bed.start([sys.executable, "-c", TLS_SERVER, str(TLS), cert, key],
                         stdout=subprocess.PIPE))
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None, (bed.workdir / "netd.err").read_text()
        yield Rig(bed, path, cert, env)
    finally:
        bed.close()


def _rows(rig: Rig) -> list[dict[str, object]]:
    rows = rig.stat()["sockets"]
    assert isinstance(rows, list)
    return rows


def test_a_stream_has_a_kernel_descriptor_that_select_poll_and_epoll_see(rig: Rig) -> None:
    with rig.connect() as sock:
        fd = sock.fileno()
        assert fd >= 0 and os.fstat(fd).st_mode  # a real descriptor of this process
        assert [r["fd"] for r in _rows(rig) if r["id"] == sock.sock_id] == [True]
        _, writable, _ = select.select([], [sock], [], 5)
        assert writable == [sock]
        assert select.select([sock], [], [], 0.2)[0] == []  # nothing to read yet
        sock.sendall(b"ping")
        assert select.select([sock], [], [], 5)[0] == [sock]
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        assert poller.poll(5000) == [(fd, select.POLLIN)]
        epoll = select.epoll()
        epoll.register(fd, select.EPOLLIN)
        assert epoll.poll(5) == [(fd, select.EPOLLIN)]
        epoll.close()
        with selectors.DefaultSelector() as chooser:
            chooser.register(sock, selectors.EVENT_READ)
            assert [key.fileobj for key, _ in chooser.select(5)] == [sock]
        assert sock.recv(10) == b"ping"


def test_bulk_echo_through_the_descriptor_is_byte_exact_both_ways(rig: Rig) -> None:
    data = os.urandom(24 << 20)
    with rig.connect(timeout=60) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(data), sock.shutdown(1)))
        sender.start()
        got = hashlib.sha256()
        n = 0
        while chunk := sock.recv(1 << 18):
            got.update(chunk)
            n += len(chunk)
        sender.join()
    assert n == len(data) and got.digest() == hashlib.sha256(data).digest()


def test_half_close_is_a_fin_and_the_peers_fin_is_eof(rig: Rig) -> None:
    with rig.connect() as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF, echoes, sends its FIN
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        assert got == b"last words"
        assert sock.recv(100) == b""


def test_a_reset_surfaces_as_connection_reset_error(rig: Rig) -> None:
    with rig.connect(RESET) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            for _ in range(100):
                if not sock.recv(100):
                    time.sleep(0.05)


def test_a_recv_timeout_is_timeout_error(rig: Rig) -> None:
    with rig.connect(timeout=0.3) as sock:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert 0.25 <= time.monotonic() - start < 2.0


def test_asyncio_connects_and_streams_on_vipernet_sockets(rig: Rig) -> None:
    async def one(i: int) -> bytes:
        sock = vsocket_class(client=client)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (GATEWAY, ECHO))  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection(sock=sock)  # type: ignore[arg-type]
        message = f"hello {i}\n".encode() * 100
        writer.write(message)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        await writer.wait_closed()
        return (echoed == message and b"ok") or b"bad"

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(CONCURRENT)))

    client = netclient.connect(rig.path)
    try:
        results = asyncio.run(main())
    finally:
        client.close_channel()
    assert results == [b"ok"] * CONCURRENT
    wait_for(lambda: not _rows(rig), what="netd to release the asyncio sockets")


CONCURRENT = 1000


def test_stdlib_ssl_wraps_a_vipernet_socket(rig: Rig) -> None:
    context = ssl.create_default_context(cafile=rig.ca)
    sock = rig.connect(TLS)
    with context.wrap_socket(sock, server_hostname="echo.test") as tls:  # type: ignore[arg-type]
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        payload = os.urandom(1 << 20)
        tls.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += tls.recv(65536)
        assert got == payload
    wait_for(lambda: not _rows(rig), what="the TLS socket to be released with its fd")


KILLED_CLIENT = """
import sys
from vipernet import socket as vs
s = vs.create_connection(("10.0.2.2", int(sys.argv[1])))
print(s.sock_id, flush=True)
while True:
    s.sendall(b"x" * 65536)  # the test reads nothing back: this fills every buffer
"""


def test_killing_a_program_mid_transfer_releases_its_socket(rig: Rig) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(ECHO)], env=rig.env,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        sock_id = int(proc.stdout.readline())
        time.sleep(0.5)
        row = next(r for r in _rows(rig) if r["id"] == sock_id)
        assert row["pid"] == proc.pid and row["fd"] is True
        assert "from vipernet import socket" in str(row["command"])  # stat names the program
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not any(r["id"] == sock_id for r in _rows(rig)), timeout=5,
                 what="netd to release the killed program's socket")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_netd_survives_a_client_that_sends_it_descriptors_and_garbage(rig: Rig) -> None:
    hostile = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hostile.connect(rig.path)
    r, w = os.pipe()
    try:
        header = p.HEADER.pack(4, p.Code.SOCKET_ATTACH_FD, 0, 0, 1)
        fds = array.array("i", [r, w, r])
        hostile.sendmsg([header + (12345).to_bytes(4, "little")],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        reply = hostile.recv(4096)
        assert reply[:4] and p.HEADER.unpack_from(reply)[3] != 0  # an error, no fd
        hostile.sendall(b"\xff" * 64)  # and then garbage framing
    finally:
        hostile.close()
        os.close(r)
        os.close(w)
    with rig.connect() as sock:  # netd still serves everyone else
        sock.sendall(b"still here")
        assert sock.recv(100) == b"still here"


RUN_PROGRAM = """
import asyncio, hashlib, os, socket, ssl
CA = {ca!r}
async def main():
    reader, writer = await asyncio.open_connection("10.0.2.2", {echo})
    payload = os.urandom(1 << 20)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    echoed = await reader.read()
    print("asyncio", hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest())
    context = ssl.create_default_context(cafile=CA)
    reader, writer = await asyncio.open_connection("10.0.2.2", {tls}, ssl=context,
                                                   server_hostname="echo.test")
    writer.write(b"over tls")
    await writer.drain()
    print("asyncio-tls", await reader.readexactly(8))
    writer.close()
asyncio.run(main())
raw = socket.create_connection(("10.0.2.2", {tls}))
with ssl.create_default_context(cafile=CA).wrap_socket(raw, server_hostname="echo.test") as t:
    t.sendall(b"blocking tls")
    print("ssl", t.recv(100), type(raw).__module__)
"""


def test_vipernet_run_gives_unmodified_asyncio_and_ssl_programs_the_stack(rig: Rig) -> None:
    before = _counters(rig)["fdlink.attached"]
    program = RUN_PROGRAM.format(ca=rig.ca, echo=ECHO, tls=TLS)
    out = vipernet_cli("run", "--", sys.executable, "-c", program, env=rig.env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "asyncio True", "asyncio-tls b'over tls'",
        "ssl b'blocking tls' vipernet.netclient.sockets"]
    assert _counters(rig)["fdlink.attached"] == before + 3  # all three went through netd


def _counters(rig: Rig) -> dict[str, int]:
    with netclient.connect(rig.path) as client:
        counters: dict[str, int] = client.info()["netd_counters"]
        return counters


KERNEL_CLIENTS = """
import socket, sys, threading
def one(i):
    with socket.create_connection(("10.0.2.15", int(sys.argv[1])), timeout=20) as s:
        s.sendall(b"client %d" % i)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(100):
            got += chunk
        assert got == b"CLIENT %d" % i, got
threads = [threading.Thread(target=one, args=(i,)) for i in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print("all answered", flush=True)
"""


def test_a_listener_descriptor_serves_select_and_an_asyncio_server(rig: Rig) -> None:
    client = netclient.connect(rig.path)
    listener = vsocket_class(client=client)
    try:
        listener.bind(("0.0.0.0", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        assert select.select([listener], [], [], 0.2)[0] == []  # nobody is waiting
        kernel = rig.bed.start([sys.executable, "-c", KERNEL_CLIENTS, str(port), "1"],
                               stdout=subprocess.PIPE)
        assert select.select([listener], [], [], 10)[0] == [listener]
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            conn.sendall(data.upper())
        assert kernel.stdout is not None and kernel.stdout.readline() == b"all answered\n"

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.read()).upper())
            await writer.drain()
            writer.close()

        async def serve() -> bytes:
            listener.setblocking(False)
            server = await asyncio.start_server(handle, sock=listener)  # type: ignore[arg-type]
            kernel = rig.bed.start([sys.executable, "-c", KERNEL_CLIENTS, str(port), "50"],
                                   stdout=subprocess.PIPE)
            assert kernel.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None,
                                                                    kernel.stdout.readline)
            server.close()
            return line

        assert asyncio.run(serve()) == b"all answered\n"
    finally:
        listener.close()
        client.close_channel()


def test_udp_datagrams_keep_boundaries_and_addresses_through_the_descriptor(rig: Rig) -> None:
    _proc, port = start_udp_echo(rig.bed)
    client = netclient.connect(rig.path)
    sock = vsocket_class(socket.AF_INET, socket.SOCK_DGRAM, client=client)
    try:
        sock.settimeout(5)
        assert sock.fileno() >= 0
        assert select.select([sock], [], [], 0.1)[0] == []
        sizes = [1, 0, 1400, 9000, 65507]
        for size in sizes:
            sock.sendto(bytes([size % 251]) * size, (GATEWAY, port))
        for size in sizes:
            assert select.select([sock], [], [], 5)[0] == [sock]
            data, source = sock.recvfrom(70000)
            assert (len(data), source) == (size, (GATEWAY, port))
            assert data == bytes([size % 251]) * size
        sock.sendto(b"truncated datagram", (GATEWAY, port))
        assert sock.recv(9) == b"truncated"  # the rest of it is gone, as with the kernel
        sock.sendto(b"next", (GATEWAY, port))
        assert sock.recv(100) == b"next"
        with pytest.raises(OSError) as too_big:
            sock.sendto(b"x" * 65508, (GATEWAY, port))
        assert too_big.value.errno == errno.EMSGSIZE
    finally:
        sock.close()
        client.close_channel()


def test_asyncio_datagram_endpoint_on_a_vipernet_udp_socket(rig: Rig) -> None:
    _proc, port = start_udp_echo(rig.bed)

    class Echoes(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.got.put_nowait((data, addr))

    async def main() -> list[tuple[bytes, object]]:
        sock = vsocket_class(socket.AF_INET, socket.SOCK_DGRAM, client=client)
        sock.setblocking(False)
        sock.connect((GATEWAY, port))
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            Echoes, sock=sock)  # type: ignore[arg-type]
        for i in range(20):
            transport.sendto(b"datagram %d" % i)
        got = [await asyncio.wait_for(protocol.got.get(), 5) for _ in range(20)]
        transport.close()
        return got

    client = netclient.connect(rig.path)
    try:
        got = asyncio.run(main())
    finally:
        client.close_channel()
    assert sorted(data for data, _ in got) == sorted(b"datagram %d" % i for i in range(20))
    assert {addr for _, addr in got} == {(GATEWAY, port)}


def test_a_descriptor_closed_at_any_stage_releases_its_socket(rig: Rig) -> None:
    from vipernet.stack.socket_api import SocketKind

    client = netclient.connect(rig.path)
    try:
        # before connect
        early = client.create(SocketKind.TCP)
        os.close(client.attach_fd(early))
        # connected, with bytes the program wrote but netd has not read, and bytes
        # the peer sent that the program never read
        busy = client.create(SocketKind.TCP)
        fd = client.attach_fd(busy)
        client.connect(busy, (GATEWAY, ECHO), 10)
        os.write(fd, b"y" * 100_000)
        time.sleep(0.2)
        os.close(fd)
        # a UDP socket
        datagrams = client.create(SocketKind.UDP)
        os.close(client.attach_fd(datagrams))
        ids = {early, busy, datagrams}
        wait_for(lambda: not ids & {r["id"] for r in _rows(rig)}, timeout=5,
                 what="netd to release sockets whose descriptors were closed")
        with pytest.raises(OSError) as gone:
            client.connect(early, (GATEWAY, ECHO), 5)
        assert gone.value.errno == errno.EBADF
    finally:
        client.close_channel()
    with rig.connect() as sock:  # and netd serves on
        sock.sendall(b"after")
        assert sock.recv(10) == b"after"


PRE_FORK_CLIENTS = """
import socket, sys, threading
ok = []
servers = []  # printed after the joins: print() from threads can interleave two lines
def one(i):
    with socket.create_connection(("10.0.2.15", int(sys.argv[1])), timeout=20) as s:
        s.sendall(b"client %d" % i)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(100):
            got += chunk
        ok.append(got.startswith(b"CLIENT %d FROM " % i))
        servers.append(got.decode().rsplit(" ", 1)[1])
threads = [threading.Thread(target=one, args=(i,)) for i in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print("\\n".join(servers))
print("answered", sum(ok), flush=True)
"""


def test_forked_children_accept_on_their_parents_listener(rig: Rig) -> None:
    """A pre-fork server: the parent listens, its children accept (NET_SOCKET_ADOPT
    makes the inherited socket theirs too, the descriptor being the proof)."""
    before = _counters(rig).get("adopt.ok", 0)
    client = netclient.connect(rig.path)
    listener = vsocket_class(client=client)
    children: list[int] = []
    try:
        listener.bind(("0.0.0.0", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        listener.fileno()  # the descriptor the children inherit
        for _ in range(2):
            pid = os.fork()
            if pid == 0:  # a child: serve until killed
                code = 1
                try:
                    while True:
                        conn, _ = listener.accept()
                        with conn:
                            data = b""
                            while chunk := conn.recv(100):
                                data += chunk
                            conn.sendall(data.upper() + b" FROM %d" % os.getpid())
                finally:
                    os._exit(code)
            children.append(pid)
        kernel = rig.bed.start([sys.executable, "-c", PRE_FORK_CLIENTS, str(port), "12"],
                               stdout=subprocess.PIPE)
        out, _ = kernel.communicate(timeout=60)
        lines = out.decode().split()
        assert lines[-2:] == ["answered", "12"]
        assert set(map(int, lines[:-2])) <= set(children)  # only the children accepted
        assert _counters(rig).get("adopt.ok", 0) - before >= 1
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        listener.close()
        client.close_channel()


def test_a_forked_child_uses_its_parents_connected_socket(rig: Rig) -> None:
    sock = rig.connect()
    read_end, write_end = os.pipe()
    try:
        sock.fileno()
        pid = os.fork()
        if pid == 0:
            report = {}
            try:
                sock.sendall(b"from the child")
                sock.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := sock.recv(100):
                    data += chunk
                report["data"] = data.decode()
                report["peer"] = list(sock.getpeername())  # a netd call: adopted first
                report["again"] = sock.connect_ex((GATEWAY, ECHO))
            finally:
                os.write(write_end, repr(report).encode())
                os._exit(0)
        os.close(write_end)
        write_end = -1
        _, status = os.waitpid(pid, 0)
        report = os.read(read_end, 4096).decode()
        assert status == 0
        assert report == repr({"data": "from the child", "peer": [GATEWAY, ECHO],
                               "again": errno.EISCONN})
        assert sock.getpeername() == (GATEWAY, ECHO)  # the parent's id still works too
    finally:
        sock.close()
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_adopt_with_a_wrong_foreign_or_garbage_descriptor_is_refused(rig: Rig) -> None:
    owner = rig.connect()  # a socket of another channel, with its descriptor
    other = rig.connect()
    hostile = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hostile.settimeout(10)
    hostile.connect(rig.path)
    r, w = os.pipe()
    request_ids = iter(range(1, 100))

    def adopt(sock_id: int, fds: list[int], body: bytes | None = None) -> int:
        raw = (sock_id).to_bytes(4, "big") if body is None else body
        rid = next(request_ids)
        header = p.HEADER.pack(len(raw), p.Code.SOCKET_ADOPT, 0, 0, rid)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] \
            if fds else []
        hostile.sendmsg([header + raw], ancillary)
        reply = hostile.recv(p.HEADER_SIZE)
        length, code, _flags, status, got_id = p.HEADER.unpack(reply)
        if length:
            hostile.recv(length)
        assert (code, got_id) == (p.Code.SOCKET_ADOPT, rid)
        return int(status)

    try:
        assert adopt(owner.sock_id, []) == errno.EBADF  # no descriptor at all
        assert adopt(owner.sock_id, [r]) == errno.EPERM  # a pipe
        assert adopt(owner.sock_id, [other.fileno()]) == errno.EPERM  # another socket's
        assert adopt(0xFFFFFFF0, [owner.fileno()]) == errno.EBADF  # no such socket
        assert adopt(owner.sock_id, [r, w, r, w, r, w], body=b"\1") == errno.EINVAL
        assert adopt(owner.sock_id, [hostile.fileno()]) == errno.EPERM  # the channel itself
        hostile.sendall(b"\0" * 7)  # half a header, then descriptors with no request
        hostile.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   array.array("i", [r] * 40))])
        hostile.close()
        # The right descriptor does prove possession, from any channel.
        third = netclient.connect(rig.path)
        try:
            third.adopt(owner.sock_id, owner.fileno())
            assert third.getpeername(owner.sock_id) == (GATEWAY, ECHO)
        finally:
            third.close_channel()
        owner.sendall(b"still here")  # netd survived it all, and the owner's socket too
        assert owner.recv(100) == b"still here"
    finally:
        owner.close()
        other.close()
        hostile.close()
        os.close(r)
        os.close(w)
