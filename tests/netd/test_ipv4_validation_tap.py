"""IPv4 validation against the real stack: hand-made packets from the test namespace's
kernel (a raw IP_HDRINCL socket) to netd on the TAP, and what comes back on a raw ICMP
socket.  The black-box probes of issue 16: a Record Route of length 0, an option running
past the header, overlapping fragments with identical bytes, and a valid Record Route.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.netd_rig import cli_env
from tests.testbed import TestBed, wait_for
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed

# Runs inside the namespace: sends one probe (a list of IP packets, hex) and prints, as
# JSON, every ICMP message from 10.0.2.15 that arrives within the wait.
PROBE = r"""
import json, socket, sys, time
packets = [bytes.fromhex(h) for h in json.loads(sys.argv[1])]
wait = float(sys.argv[2])
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
rx.settimeout(0.05)
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
for packet in packets:
    tx.sendto(packet, ("10.0.2.15", 0))
seen = []
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        data, (src, _) = rx.recvfrom(65535)
    except socket.timeout:
        continue
    if src != "10.0.2.15":
        continue
    hlen = (data[0] & 0x0F) * 4
    seen.append({"type": data[hlen], "code": data[hlen + 1], "pointer": data[hlen + 4],
                 "options": data[20:hlen].hex()})
print(json.dumps(seen))
"""

STACK = bytes([10, 0, 2, 15])
PEER = bytes([10, 0, 2, 2])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(payload: bytes, *, options: bytes = b"", ident: int = 0x4242, offset: int = 0,
        more: bool = False, ihl_words: int | None = None) -> bytes:
    """An IPv4 packet, header checksum right; ``ihl_words`` may lie about the options."""
    hlen = 20 + len(options)
    flags = (0x2000 if more else 0) | offset // 8
    header = bytearray(bytes([0x40 | (ihl_words or hlen // 4), 0]) +
                       (hlen + len(payload)).to_bytes(2, "big") + ident.to_bytes(2, "big") +
                       flags.to_bytes(2, "big") + bytes([64, 1, 0, 0]) + PEER + STACK +
                       options)
    header[10:12] = _checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


def _echo(ident: int, payload: bytes = b"validation probe") -> bytes:
    body = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big") + payload
    return body[:2] + _checksum(body).to_bytes(2, "big") + body[4:]


@dataclass
class Bed:
    bed: TestBed
    path: str

    def probe(self, packets: list[bytes], wait: float = 1.0) -> list[dict[str, Any]]:
        out = self.bed.ns([sys.executable, "-c", PROBE, json.dumps([p.hex() for p in packets]),
                           str(wait)])
        result: list[dict[str, Any]] = json.loads(out.stdout)
        return result

    def counters(self) -> dict[str, int]:
        with netclient.connect(self.path) as client:
            counters: dict[str, int] = client.info()["counters"]
            return counters


@pytest.fixture(scope="module")
def tap() -> Iterator[Bed]:
    bed = TestBed("v4")
    try:
        path = str(bed.workdir / "netd.sock")
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path], env=cli_env())
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None
        bed.ns(["ping", "-c", "1", "-W", "5", "10.0.2.15"])  # ARP settled both ways
        yield Bed(bed, path)
    finally:
        bed.close()


ECHO_REPLY, PARAMETER_PROBLEM = 0, 12


def test_a_record_route_of_length_zero_gets_a_parameter_problem_not_a_reply(tap: Bed) -> None:
    before = tap.counters().get("ipv4.rx.bad_options", 0)
    seen = tap.probe([_ip(_echo(1), options=bytes([7, 0, 4, 0]))])
    assert [(m["type"], m["code"], m["pointer"]) for m in seen] == [(PARAMETER_PROBLEM, 0, 20)]
    assert tap.counters()["ipv4.rx.bad_options"] == before + 1


def test_an_option_running_past_the_header_gets_a_parameter_problem(tap: Bed) -> None:
    seen = tap.probe([_ip(_echo(2), options=bytes([1, 7, 40, 4]))])
    assert [(m["type"], m["pointer"]) for m in seen] == [(PARAMETER_PROBLEM, 21)]


def test_a_valid_record_route_comes_back_with_the_stack_recorded(tap: Bed) -> None:
    record_route = bytes([7, 11, 4]) + bytes(8) + b"\0"  # room for two addresses
    seen = tap.probe([_ip(_echo(3), options=record_route)])
    assert [m["type"] for m in seen] == [ECHO_REPLY]
    options = bytes.fromhex(seen[0]["options"])
    assert options[:2] == bytes([7, 11])
    recorded = [options[i:i + 4] for i in range(3, options[2] - 1, 4)]
    assert STACK in recorded, recorded  # the stack wrote itself into the route


def test_overlapping_fragments_with_identical_bytes_are_dropped_like_linux(tap: Bed) -> None:
    echo = _echo(4, b"o" * 64)
    first = _ip(echo[:32], ident=0x5151, more=True)
    overlap = _ip(echo[24:48], ident=0x5151, offset=24, more=True)  # same bytes, re-cut
    last = _ip(echo[32:], ident=0x5151, offset=32)
    before = tap.counters().get("ipv4.reasm.overlap_drop", 0)
    assert tap.probe([first, overlap, last]) == []
    assert tap.counters()["ipv4.reasm.overlap_drop"] == before + 1
    # The same fragments without the overlap -- one of them sent twice -- are answered.
    again = [_ip(echo[:32], ident=0x5252, more=True), _ip(echo[:32], ident=0x5252, more=True),
             _ip(echo[32:], ident=0x5252, offset=32)]
    assert [m["type"] for m in tap.probe(again)] == [ECHO_REPLY]


def test_netd_is_still_healthy_after_the_probes(tap: Bed) -> None:
    out = tap.bed.ns(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.2.15"], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    subprocess.run(["true"], check=True)
