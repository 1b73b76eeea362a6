"""Broadcast and multicast through netd on a real TAP, against the namespace's kernel
(10.0.2.2): UDP broadcast both ways (SO_BROADCAST on both sides), the kernel's multicast
sender reaching a vipernet member until it leaves (the capture holding our IGMPv3 join and
leave), a vipernet sender reaching a kernel member (whose own IGMP report we see), a
general query from the namespace answered, and ``vipernet dig --mdns`` finding a small
mDNS responder.  tshark must find nothing malformed in netd's capture."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pytest

from tests.link.tshark import quiet_guess_args
from tests.netd_rig import cli_env, vipernet_cli
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary, wait_for
from vipernet import socket as vsocket
from vipernet.netclient import client as netclient
from vipernet.netclient import default

pytestmark = pytest.mark.testbed

KERNEL_RECEIVER = """
import hashlib, socket, struct, sys
port, group = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
if group != "-":
    mreqn = socket.inet_aton(group) + socket.inet_aton("10.0.2.2") + struct.pack("=i", 0)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
s.settimeout(10)
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    data, (ip, sport) = s.recvfrom(65535)
    print(ip, len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""

KERNEL_SENDER = """
import socket, sys, time
group, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.2.2"))
s.bind(("10.0.2.2", 0))  # also picks the TAP for 255.255.255.255
for i in range(count):
    s.sendto(b"datagram %06d" % i, (group, port))
    time.sleep(float(sys.argv[4]))
"""

# A general IGMPv3 query (Max Resp Code 10: 1 s) from the namespace, as a querier would.
KERNEL_QUERIER = """
import socket, sys
sys.path.insert(0, sys.argv[1])
from vipernet.wire.igmp import build_igmp_query
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.2.2"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.sendto(build_igmp_query(max_response_code=10), ("224.0.0.1", 0))
"""

# The smallest mDNS responder that answers one name: box.local A 10.0.2.2, by unicast to
# the querier's port (a QU question or a legacy port, RFC 6762 5.4 / 6.7).
MDNS_RESPONDER = """
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5353))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("224.0.0.251") + socket.inet_aton("10.0.2.2"))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(9000)
    if len(data) < 12 or data[2] & 0x80:
        continue
    labels, pos = [], 12
    while pos < len(data) and data[pos]:
        labels.append(data[pos + 1:pos + 1 + data[pos]].decode("ascii", "replace"))
        pos += 1 + data[pos]
    qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
    if ".".join(labels).lower() != "box.local" or qtype != 1:
        continue
    name = data[12:pos + 1]
    answer = name + struct.pack("!HHIH", 1, 0x8001, 120, 4) + socket.inet_aton("10.0.2.2")
    reply = struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + answer
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.0.2.2"))
    out.sendto(reply, peer)
    print("answered", peer[0], peer[1], "QU" if qclass & 0x8000 else "QM", flush=True)
"""

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


@dataclass
class Rig:
    bed: TestBed
    path: str
    pcap: str
    env: dict[str, str]

    def counters(self) -> dict[str, int]:
        with netclient.connect(self.path) as client:
            info: dict[str, Any] = client.info()
        return info["counters"]


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    bed = TestBed("mc")
    try:
        path = str(bed.workdir / "netd.sock")
        pcap = str(bed.workdir / "netd.pcap")
        env = cli_env(VIPERNET_SOCKET=path)
        argv = [sys.executable, "-m", "vipernet.cli.main", "netd", "--link", f"tap:{bed.tap}",
                "--socket", path, "--pcap", pcap, "--ip6", "off"]
        proc = bed.start(argv, env=env, stderr=open(bed.workdir / "netd.err", "wb"))  # noqa: SIM115
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, what="netd socket")
        if proc.poll() is not None:
            pytest.fail(f"netd exited: {(bed.workdir / 'netd.err').read_text()}")
        yield Rig(bed, path, pcap, env)
    finally:
        bed.close()


@pytest.fixture(autouse=True)
def through_netd(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VIPERNET_SOCKET", rig.path)
    monkeypatch.delenv("VIPER_KERNEL_ENABLE_NET", raising=False)
    default.reset_default_client()
    yield
    default.reset_default_client()


def _kernel(rig: Rig, script: str, *args: str) -> subprocess.Popen[bytes]:
    """A Python peer in the namespace (stopped by the bed's close if still running)."""
    return rig.bed.start([sys.executable, "-c", script, *args], stdout=subprocess.PIPE)


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"


def _lines(proc: subprocess.Popen[bytes], count: int) -> list[str]:
    assert proc.stdout is not None
    return [proc.stdout.readline().decode().strip() for _ in range(count)]


def _udp(port: int = 0, address: str = "0.0.0.0", *, reuse: bool = False) -> vsocket.socket:
    sock = vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM)
    if reuse:
        sock.setsockopt(vsocket.SOL_SOCKET, vsocket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock


def _mreq(group: str) -> bytes:
    """An ip_mreq: the group, and INADDR_ANY for the interface (our only one)."""
    return IPv4Address(group).packed + bytes(4)


def _tshark(rig: Rig, *args: str) -> str:
    tshark = require_binary("tshark")
    # Make netd flush its capture (at most every second, when a frame passes).
    time.sleep(1.1)
    rig.bed.ns(["ping", "-c", "1", "-W", "2", STACK_IP], check=False)
    return subprocess.run([tshark, *quiet_guess_args(), "-r", rig.pcap, *args],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def test_broadcast_both_ways_with_the_kernel(rig: Rig) -> None:
    payloads = [os.urandom(200), os.urandom(1400)]
    receiver = _kernel(rig, KERNEL_RECEIVER, "6100", "-", "2")
    _ready(receiver)
    sender = _udp()
    with pytest.raises(PermissionError):
        sender.sendto(b"no", ("255.255.255.255", 6100))
    with pytest.raises(PermissionError):
        sender.connect(("10.0.2.255", 6100))
    # Over the socket's descriptor, the stack's EACCES for a directed broadcast comes with
    # the next call (as every sendto error there does: docs/netd-protocol.md).
    sender.sendto(b"no", ("10.0.2.255", 6100))
    sender.settimeout(2)
    with pytest.raises(PermissionError):
        sender.recvfrom(10)
    sender.setsockopt(vsocket.SOL_SOCKET, vsocket.SO_BROADCAST, 1)
    sender.sendto(payloads[0], ("10.0.2.255", 6100))
    sender.sendto(payloads[1], ("255.255.255.255", 6100))
    got = _lines(receiver, 2)
    assert got == [f"{STACK_IP} {len(p)} {hashlib.sha256(p).hexdigest()}" for p in payloads]
    sender.close()
    # The kernel broadcasts to us: the socket on INADDR_ANY gets both, the one bound to
    # our unicast address on the same port neither.
    anyone = _udp(6101, reuse=True)
    unicast = _udp(6101, STACK_IP, reuse=True)
    anyone.settimeout(5)
    unicast.settimeout(0.5)
    for target in ("10.0.2.255", "255.255.255.255"):
        kernel = _kernel(rig, KERNEL_SENDER, target, "6101", "1", "0")
        kernel.wait(10)
        data, source = anyone.recvfrom(100)
        assert (data, source[0]) == (b"datagram 000000", GATEWAY)
    with pytest.raises(TimeoutError):
        unicast.recvfrom(100)
    anyone.close()
    unicast.close()


def test_kernel_multicast_reaches_a_member_until_it_leaves(rig: Rig) -> None:
    member = _udp(6200)
    member.setsockopt(vsocket.IPPROTO_IP, vsocket.IP_ADD_MEMBERSHIP, _mreq("239.7.7.7"))
    member.settimeout(5)
    kernel = _kernel(rig, KERNEL_SENDER, "239.7.7.7", "6200", "200", "0.02")
    try:
        seen = [member.recvfrom(100) for _ in range(5)]
        assert all(d.startswith(b"datagram ") and s[0] == GATEWAY for d, s in seen)
        member.setsockopt(vsocket.IPPROTO_IP, vsocket.IP_DROP_MEMBERSHIP, _mreq("239.7.7.7"))
        member.settimeout(0.3)
        with pytest.raises(TimeoutError):  # what was already in flight, then nothing
            while True:
                member.recvfrom(100)
        member.settimeout(1.0)
        with pytest.raises(TimeoutError):
            member.recvfrom(100)
        assert kernel.poll() is None  # the sender was still sending all along
    finally:
        kernel.kill()
        member.close()
    assert rig.counters()["eth.rx.not_for_us"] > 0  # the MAC filter dropped the rest
    records = _tshark(rig, "-Y", "igmp && ip.src == 10.0.2.15 && igmp.maddr == 239.7.7.7",
                      "-T", "fields", "-e", "igmp.version", "-e", "igmp.record_type",
                      "-e", "ip.dst", "-e", "ip.ttl")
    rows = [line.split("\t") for line in records.splitlines()]
    # IGMPv3 CHANGE_TO_EXCLUDE {} (join), then CHANGE_TO_INCLUDE {} (leave) twice; the
    # join's repeat is sent only if it came due before the leave replaced it (RFC 3376 5.1).
    kinds = [r[1] for r in rows]
    assert kinds[0] == "4" and kinds[-2:] == ["3", "3"] and len(kinds) in (3, 4), records
    assert all(r[0] == "3" and r[2] == "224.0.0.22" and r[3] == "1" for r in rows), records


def test_vipernet_multicast_reaches_a_kernel_member(rig: Rig) -> None:
    receiver = _kernel(rig, KERNEL_RECEIVER, "6300", "239.8.8.8", "1")
    _ready(receiver)
    payload = os.urandom(1000)
    sender = _udp()
    sender.sendto(payload, ("239.8.8.8", 6300))
    assert _lines(receiver, 1) == [f"{STACK_IP} 1000 {hashlib.sha256(payload).hexdigest()}"]
    sender.close()
    out = _tshark(rig, "-o", "udp.check_checksum:TRUE", "-Y", "ip.dst == 239.8.8.8 && udp",
                  "-T", "fields", "-e", "eth.dst",
                  "-e", "ip.ttl", "-e", "udp.checksum.status")
    assert out.split() == ["01:00:5e:08:08:08", "1", "1"], out  # our MAC, TTL 1, good sum
    reports = _tshark(rig, "-Y", "igmp && ip.src == 10.0.2.2", "-T", "fields",
                      "-e", "igmp.maddr")
    assert "239.8.8.8" in reports  # the kernel announced its membership


def test_a_general_query_is_answered(rig: Rig) -> None:
    member = _udp(6400)
    member.setsockopt(vsocket.IPPROTO_IP, vsocket.IP_ADD_MEMBERSHIP, _mreq("239.9.9.9"))
    try:
        before = rig.counters().get("igmp.rx.query_v3", 0)
        rig.bed.ns([sys.executable, "-c", KERNEL_QUERIER, SRC])
        wait_for(lambda: rig.counters().get("igmp.tx.report_v3", 0) > 0 and
                 rig.counters().get("igmp.rx.query_v3", 0) > before, timeout=5,
                 what="the query counted")
        time.sleep(1.2)  # Max Resp Time 1 s
        out = _tshark(rig, "-Y", "igmp && ip.src == 10.0.2.15 && igmp.record_type == 2",
                      "-T", "fields", "-e", "igmp.maddr")
        assert "239.9.9.9" in out.split(), out  # MODE_IS_EXCLUDE {}: a current-state answer
    finally:
        member.close()


def test_dig_mdns_finds_a_responder(rig: Rig) -> None:
    responder = _kernel(rig, MDNS_RESPONDER)
    _ready(responder)
    done = vipernet_cli("dig", "--mdns", "box.local", "+short", "--timeout", "5", env=rig.env,
                        timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "10.0.2.2"), done.stderr
    assert _lines(responder, 1)[0].endswith("QU")
    miss = vipernet_cli("dig", "--mdns", "nobody.local", "--timeout", "1", env=rig.env,
                        timeout=30)
    assert miss.returncode == 1 and "no mDNS answer" in miss.stderr


def test_the_capture_is_clean(rig: Rig) -> None:
    bad = _tshark(rig, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                  "-Y", "_ws.malformed || ip.checksum.status == 0 || udp.checksum.status == 0"
                  " || igmp.checksum.status == 0")
    assert bad == ""
    assert "igmp" in _tshark(rig, "-Y", "igmp", "-T", "fields", "-e", "frame.protocols")


KERNEL_TCP_SINK = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.2", 6400)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
while c.recv(65536):
    pass
"""


def test_stat_i_shows_a_live_connection_s_tcp_internals(rig: Rig) -> None:
    # Not multicast: this module's netd and kernel are a convenient live pair.  After a
    # few hundred KB to the kernel, the connection's line under `stat -i` carries a
    # measured RTT and the congestion window, and a clean link retransmitted nothing.
    sink = _kernel(rig, KERNEL_TCP_SINK)
    _ready(sink)
    conn = vsocket.create_connection((GATEWAY, 6400), timeout=10)
    try:
        conn.sendall(os.urandom(300_000))
        time.sleep(0.3)
        result = vipernet_cli("stat", "-i", env=rig.env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        row = next(i for i, line in enumerate(lines) if f"{GATEWAY}:6400" in line)
        info = dict(part.split(":", 1) for part in lines[row + 1].split())
        assert float(info["srtt"].removesuffix("ms")) > 0
        assert int(info["cwnd"]) > 0 and info["retrans"] == "0"
        assert int(info["unacked"]) >= 0 and int(info["snd_wnd"]) > 0
        plain = vipernet_cli("stat", env=rig.env).stdout
        assert "srtt:" not in plain
    finally:
        conn.close()
