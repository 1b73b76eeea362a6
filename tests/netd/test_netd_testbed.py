"""netd on a real TAP in a namespace: the kernel, dnsmasq and our CLI all talk to it.

One netd (with dnsmasq beside it) serves the whole module, to keep the run short; tests
that kill or stress things use their own clients and check netd still serves the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.link.tshark import quiet_guess_args
from tests.netd_rig import cli_env, start_udp_echo, vipernet_cli
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary, stop_process, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import client as netclient
from vipernet.netclient import default
from vipernet.netd import protocol as p

pytestmark = pytest.mark.testbed

PARKED_CLIENT = """
from vipernet.netclient.default import default_client
from vipernet.stack.socket_api import SocketKind
client = default_client()
sock = client.create(SocketKind.UDP)
print(client.bind(sock, ("0.0.0.0", 0))[1], flush=True)
# A RECVFROM message (not the socket's descriptor): it parks in netd until we are killed.
client.recvfrom(sock, 100, None)
"""


@dataclass
class Netd:
    bed: TestBed
    path: str
    pcap: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    def cli(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return vipernet_cli(*argv, env=self.env, timeout=timeout)

    def client(self) -> netclient.NetClient:
        return netclient.connect(self.path)

    def info(self) -> dict[str, Any]:
        with self.client() as client:
            return client.info()

    def stat(self) -> dict[str, Any]:
        with self.client() as client:
            return client.stat()


@pytest.fixture(scope="module")
def netd() -> Iterator[Netd]:
    bed = TestBed("nd")
    try:
        # big.test has more A records than fit a 512-byte UDP answer: TC, then TCP.
        bed.start_dnsmasq(*(f"--host-record=big.test,10.1.0.{i}" for i in range(1, 60)))
        path = str(bed.workdir / "netd.sock")
        pcap = str(bed.workdir / "netd.pcap")
        env = cli_env(VIPERNET_SOCKET=path)
        argv = [sys.executable, "-m", "vipernet.cli.main", "netd", "--link", f"tap:{bed.tap}",
                "--socket", path, "--pcap", pcap]
        proc = bed.start(argv, env=env, stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        if proc.poll() is not None:
            pytest.fail(f"netd exited: {(bed.workdir / 'netd.err').read_text()}")
        yield Netd(bed, path, pcap, proc, env)
        if proc.returncode not in (None, 0):
            sys.stderr.write((bed.workdir / "netd.err").read_text())
    finally:
        bed.close()


@pytest.fixture
def env_socket(netd: Netd, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VIPERNET_SOCKET", netd.path)
    monkeypatch.delenv("VIPER_KERNEL_ENABLE_NET", raising=False)
    default.reset_default_client()
    yield
    default.reset_default_client()


@pytest.fixture
def udp_echo(netd: Netd) -> Iterator[int]:
    proc, port = start_udp_echo(netd.bed)
    yield port
    stop_process(proc)


def test_kernel_ping_gets_twenty_replies(netd: Netd) -> None:
    out = netd.bed.ns(["ping", "-c", "20", "-i", "0.05", "-W", "2", STACK_IP], check=False).stdout
    assert "20 packets transmitted, 20 received" in out, out


def test_kernel_ping_with_8000_bytes_gets_replies(netd: Netd) -> None:
    out = netd.bed.ns(["ping", "-c", "3", "-i", "0.2", "-s", "8000", "-W", "2", STACK_IP],
                      check=False).stdout
    assert "3 packets transmitted, 3 received" in out, out
    assert "8008 bytes from 10.0.2.15" in out


def test_kernel_neighbour_table_holds_the_stack_mac(netd: Netd) -> None:
    netd.bed.ns(["ping", "-c", "1", "-W", "2", STACK_IP], check=False)
    out = netd.bed.ns(["ip", "neigh", "show", STACK_IP]).stdout
    assert "52:54:00:12:34:56" in out, out


def test_vipernet_ping_prints_five_replies_and_statistics(netd: Netd) -> None:
    result = netd.cli("ping", GATEWAY, "-c", "5", "-i", "0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PING 10.0.2.2 (10.0.2.2) 56(84) bytes of data."
    replies = [line for line in lines if line.startswith("64 bytes from 10.0.2.2: icmp_seq=")]
    assert len(replies) == 5
    for seq, line in enumerate(replies, start=1):
        assert re.fullmatch(rf"64 bytes from 10\.0\.2\.2: icmp_seq={seq} ttl=64 "
                            r"time=\d+(\.\d+)? ms", line), line
    assert "--- 10.0.2.2 ping statistics ---" in lines
    assert re.search(r"^5 packets transmitted, 5 received, 0% packet loss, time \d+ms$",
                     result.stdout, re.M)
    match = re.search(r"^rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms$",
                      result.stdout, re.M)
    assert match is not None
    low, avg, high, _ = map(float, match.groups())
    assert 0 < low <= avg <= high < 1000


def test_vipernet_ping_to_a_missing_host_reports_total_loss(netd: Netd) -> None:
    result = netd.cli("ping", "10.0.2.99", "-c", "2", "-W", "1")
    assert result.returncode == 1
    assert re.search(r"^2 packets transmitted, 0 received, (\+\d+ errors, )?100% packet loss",
                     result.stdout, re.M), result.stdout
    assert "rtt min" not in result.stdout
    assert "Traceback" not in result.stderr


def test_vipernet_dig_resolves_through_dnsmasq(netd: Netd) -> None:
    result = netd.cli("dig", "example.test")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^example\.test\.\s+IN\s+A\s+10\.0\.2\.2$", result.stdout, re.M)
    assert netd.cli("dig", "+short", "example.test").stdout == "10.0.2.2\n"


def test_a_truncated_dns_answer_is_asked_again_over_tcp(netd: Netd) -> None:
    result = netd.cli("dig", "+short", "big.test")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(f"10.1.0.{i}" for i in range(1, 60))
    assert netd.info()["counters"].get("tcp.active_open", 0) >= 1


def test_vipernet_dig_of_a_missing_name_fails_cleanly(netd: Netd) -> None:
    result = netd.cli("dig", "missing.test")
    assert result.returncode == 1
    assert "NXDOMAIN" in result.stderr and "Traceback" not in result.stderr


def test_vipernet_ping_of_an_unknown_name_fails_in_one_line(netd: Netd) -> None:
    result = netd.cli("ping", "missing.test", "-c", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vipernet ping: missing.test: "), lines
    assert result.stdout == ""


def test_vipernet_info_json_shows_the_slirp_defaults(netd: Netd) -> None:
    import json

    result = netd.cli("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ip"] == "10.0.2.15" and info["netmask"] == "255.255.255.0"
    assert info["gateway"] == "10.0.2.2" and info["dns"] == ["10.0.2.3"]
    assert info["mac"] == "52:54:00:12:34:56" and info["mtu"] == 1500
    assert info["pid"] == netd.proc.pid or info["pid"] > 0
    assert info["offloads"]["tx_csum"] is True


@pytest.mark.parametrize("size", [1, 1400, 8192])
def test_udp_echo_through_vipernet_socket(netd: Netd, env_socket: None, udp_echo: int,
                                          size: int) -> None:
    payload = os.urandom(size)
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, (GATEWAY, udp_echo))
        data, peer = sock.recvfrom(65535)
    assert peer == (GATEWAY, udp_echo)
    assert data == payload


def test_kernel_sends_an_8k_datagram_to_a_vipernet_socket(netd: Netd, env_socket: None) -> None:
    payload = os.urandom(8192)
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        port = sock.getsockname()[1]
        sock.settimeout(5)
        script = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                  f"s.sendto(bytes.fromhex(sys.argv[1]), ('{STACK_IP}', {port})); "
                  "s.settimeout(5); d,_=s.recvfrom(65535); print(len(d), d==b'thanks')")
        sender = subprocess.Popen(netd.bed.ns_argv([sys.executable, "-c", script, payload.hex()]),
                                  stdout=subprocess.PIPE, text=True)
        data, peer = sock.recvfrom(65535)
        sock.sendto(b"thanks", peer)
        out = sender.communicate(timeout=10)[0]
    assert data == payload
    assert peer[0] == GATEWAY
    assert out.split() == ["6", "True"]


def test_connected_udp_to_a_closed_port_raises_connection_refused(netd: Netd,
                                                                  env_socket: None) -> None:
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.connect((GATEWAY, 9))  # discard port: nothing listens in the namespace
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                sock.recv(100)


def test_recv_timeout_raises_timeout_error(netd: Netd, env_socket: None) -> None:
    with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.settimeout(0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recvfrom(10)
        assert 0.25 < time.monotonic() - started < 5


TCP_SINK = """
import hashlib, socket, sys
srv = socket.socket()
srv.bind(("10.0.2.2", 0))
srv.listen(4)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
size = int(sys.argv[1])
h = hashlib.sha256()
got = 0
while got < size:
    data = conn.recv(1 << 16)
    if not data:
        break
    h.update(data)
    got += len(data)
print(got, h.hexdigest(), flush=True)
blob = bytes((i * 7) & 0xFF for i in range(size))
conn.sendall(blob)
conn.shutdown(socket.SHUT_WR)
print(hashlib.sha256(blob).hexdigest(), flush=True)
conn.recv(1)
"""


def test_tcp_bulk_both_ways_through_netd_matches_sha256(netd: Netd, env_socket: None) -> None:
    import hashlib

    size = 3 * 1024 * 1024
    server = netd.bed.start([sys.executable, "-c", TCP_SINK, str(size)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    payload = os.urandom(size)
    with vsocket.create_connection((GATEWAY, port), timeout=30) as sock:
        sock.setsockopt(vsocket.IPPROTO_TCP, vsocket.TCP_NODELAY, 1)
        assert sock.getpeername() == (GATEWAY, port)
        rows = [r for r in netd.stat()["sockets"] if r["remote"] == f"{GATEWAY}:{port}"]
        assert [(r["kind"], r["state"], r["pid"]) for r in rows] == [
            ("tcp", "ESTABLISHED", os.getpid())]
        started = time.monotonic()
        sock.sendall(payload)
        got, digest = server.stdout.readline().decode().split()
        upload = time.monotonic() - started
        assert (int(got), digest) == (size, hashlib.sha256(payload).hexdigest())
        h = hashlib.sha256()
        received = 0
        started = time.monotonic()
        with sock.makefile("rb") as stream:
            while chunk := stream.read1(1 << 18):
                h.update(chunk)
                received += len(chunk)
        download = time.monotonic() - started
        assert received == size
        assert h.hexdigest() == server.stdout.readline().decode().strip()
    print(f"netd TCP: up {size / upload / 1e6:.1f} MB/s, down {size / download / 1e6:.1f} MB/s")
    stop_process(server)


# TCP refused-connect and passive-open through netd: tests/netclient/test_kernel_mode_interop.py
# runs those very tests in both modes (netd and kernel), so they are not repeated here.


def _stat_pids(netd: Netd) -> list[int | None]:
    return [row["pid"] for row in netd.stat()["sockets"]]


def test_a_killed_client_is_cleaned_up_and_others_carry_on(netd: Netd, env_socket: None,
                                                           udp_echo: int) -> None:
    victim = subprocess.Popen([sys.executable, "-c", PARKED_CLIENT], env=netd.env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None
        victim.stdout.readline()
        wait_for(lambda: victim.pid in _stat_pids(netd), what="victim's socket in stat")
        rows = [r for r in netd.stat()["sockets"] if r["pid"] == victim.pid]
        wait_for(lambda: any(r["waiting"] for r in netd.stat()["sockets"]
                             if r["pid"] == victim.pid), what="victim parked in recv")
        assert rows and rows[0]["kind"] == "udp"
        with vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM) as other:
            other.settimeout(5)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            other.sendto(b"still here", (GATEWAY, udp_echo))
            assert other.recvfrom(100)[0] == b"still here"
        wait_for(lambda: victim.pid not in _stat_pids(netd), what="victim's sockets released")
        stat = netd.cli("stat")
        assert stat.returncode == 0
        assert f" {victim.pid} " not in stat.stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            victim.kill()
        victim.wait(timeout=10)


def _raw_channel(netd: Netd) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(netd.path)
    return sock


def _read_reply(sock: socket.socket) -> p.Message:
    decoder = p.FrameDecoder()
    while True:
        data = sock.recv(65536)
        assert data, "netd closed the channel"
        messages = decoder.feed(data)
        if messages:
            return messages[0]


def test_unknown_codes_get_an_error_reply_on_a_channel_that_stays_open(netd: Netd) -> None:
    with _raw_channel(netd) as sock:
        for code in (0x00, 0x0A, 0x30, 0x7F, 0xFF):
            sock.sendall(p.Message(code=code, request_id=code + 1, body=b"xyz").encode())
            reply = _read_reply(sock)
            assert (reply.code, reply.request_id, reply.is_reply) == (code, code + 1, True)
            assert reply.status == 38  # ENOSYS
        sock.sendall(p.Message(code=p.Code.SOCKET_CREATE, request_id=99, body=b"\x09").encode())
        assert _read_reply(sock).status == 22  # EINVAL: no such socket kind
        sock.sendall(p.Message(code=p.Code.GET_INFO, request_id=100).encode())
        reply = _read_reply(sock)
        assert reply.status == 0 and p.JsonBody.decode(reply.body).value["ip"] == STACK_IP


def test_garbage_framing_drops_only_that_client(netd: Netd) -> None:
    with _raw_channel(netd) as good, _raw_channel(netd) as bad:
        bad.sendall(b"\xff" * 64)  # a 4 GiB length: cannot be framed
        assert bad.recv(10) == b""
        good.sendall(p.Message(code=p.Code.GET_INFO, request_id=1).encode())
        assert _read_reply(good).status == 0


def test_hostile_ipc_bytes_and_messages_leave_netd_serving(netd: Netd) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=300))
    def random_bytes(data: bytes) -> None:
        with _raw_channel(netd) as sock:
            sock.sendall(data)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from([int(c) for c in p.Code]), st.binary(max_size=64))
    def random_messages(code: int, body: bytes) -> None:
        with _raw_channel(netd) as sock:
            sock.sendall(p.Message(code=code, request_id=7, body=body).encode())
            if code not in (p.Code.SOCKET_RECV, p.Code.SOCKET_RECVFROM, p.Code.SOCKET_ACCEPT,
                            p.Code.SOCKET_POLL, p.Code.SOCKET_CONNECT, p.Code.SOCKET_SEND,
                            p.Code.SOCKET_SENDTO, p.Code.PING, p.Code.DNS_RESOLVE):
                reply = _read_reply(sock)  # everything else answers at once
                assert reply.request_id == 7 and reply.is_reply

    random_bytes()
    random_messages()
    assert netd.proc.poll() is None
    info = netd.info()
    assert info["ip"] == STACK_IP
    # Every hostile channel is gone again: only our own probe remains.
    wait_for(lambda: netd.info()["clients"] == 1, what="hostile channels released")


def test_sigterm_shuts_netd_down_cleanly_and_the_capture_is_clean(netd: Netd) -> None:
    # Runs last: it stops the module's netd.
    netd.cli("ping", GATEWAY, "-c", "2", "-i", "0.2")
    netd.proc.send_signal(signal.SIGTERM)
    assert netd.proc.wait(timeout=30) == 0, (netd.bed.workdir / "netd.err").read_text()
    assert not os.path.exists(netd.path), "socket file left behind"
    tshark = require_binary("tshark")
    # Our random UDP payloads are not judged as RTCP & co. (see tests/link/tshark.py).
    out = subprocess.run([tshark, *quiet_guess_args(), "-r", netd.pcap,
                          "-o", "ip.check_checksum:TRUE",
                          "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                          "-z", "expert", "-q"], capture_output=True, text=True, timeout=60)
    report = out.stdout + out.stderr
    assert "alformed" not in report, report
    assert not re.search(r"[Bb]ad checksum|incorrect", report), report
    count = subprocess.run([tshark, "-r", netd.pcap], capture_output=True, text=True,
                           timeout=60).stdout
    assert "ICMP" in count and "DNS" in count and "UDP" in count
    # The 8 KB datagrams of the UDP tests, fragmented on the wire, reassembled by tshark with
    # checksum validation on - both ours (sent by the stack) and the kernel's.
    for source in (STACK_IP, GATEWAY):
        big = subprocess.run([tshark, *quiet_guess_args(), "-r", netd.pcap,
                              "-o", "udp.check_checksum:TRUE",
                              "-Y", f"udp.length == 8200 && ip.src == {source} && "
                                    "udp.checksum.status == 1"],
                             capture_output=True, text=True, timeout=60).stdout
        assert big.strip(), f"no checksum-verified 8 KB datagram from {source} in the capture"
