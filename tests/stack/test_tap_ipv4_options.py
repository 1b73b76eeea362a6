"""IPv4 options and overlapping fragments on a real TAP, judged against Linux in the same
run (test bed).

Each probe is a list of hand-made IP packets sent from the namespace through a raw
``IP_HDRINCL`` socket twice: to the stack at 10.0.2.15 over the TAP, and to the
namespace's own kernel at 10.0.2.3 over ``lo`` (the kernel validates options and
reassembles on local delivery exactly as for a packet from a wire).  The verdicts — echo
reply, Parameter Problem and its pointer, or silence — must be Linux's, and the stack must
count why it refused.  The one deliberate difference (a fragment lying inside one we
hold, with other bytes) is checked on its own.  Then the kernel's own ``ping -R`` and
``ping -T`` show that Linux accepts the options our echo replies carry.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from tests.testbed import DNS_SERVER, GATEWAY, STACK_IP, TestBed
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig
from vipernet.wire.checksum import internet_checksum

pytestmark = pytest.mark.testbed

# Runs inside the namespace: sends the packets (hex) with IP_HDRINCL and prints, as JSON,
# the ICMP messages from their destination that come back within the wait:
# [type, code, pointer] each (the pointer octet means something for type 12 only).
PROBE = r"""
import json, socket, sys, time
dst, packets, wait = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
rx.settimeout(0.05)
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for packet in packets:
    tx.sendto(bytes.fromhex(packet), (dst, 0))
seen = []
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        data, (src, _) = rx.recvfrom(65535)
    except socket.timeout:
        continue
    if src == dst:
        hlen = (data[0] & 0x0F) * 4
        seen.append([data[hlen], data[hlen + 1], data[hlen + 4]])
print(json.dumps(seen))
"""

ECHO_REPLY, PARAMETER_PROBLEM = 0, 12
Verdict = list[tuple[int, int]]  # (type, pointer or 0) per message that came back


@dataclass
class Rig:
    bed: TestBed
    stack: Stack
    runtime: Runtime

    def probe(self, dst: str, packets: list[bytes], wait: float = 0.5) -> Verdict:
        out = self.bed.ns([sys.executable, "-c", PROBE, dst,
                           json.dumps([p.hex() for p in packets]), str(wait)])
        return [(kind, pointer if kind == PARAMETER_PROBLEM else 0)
                for kind, _code, pointer in json.loads(out.stdout)]

    def counters(self) -> dict[str, int]:
        return self.runtime.call(self.stack.counters.snapshot)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    from vipernet.link.tap import TapDevice

    bed = TestBed("v4o")
    try:
        device = TapDevice.open(bed.tap, netns=bed.name)
        try:
            stack = Stack(StackConfig(), capabilities=device.capabilities, now=time.monotonic(),
                          rng=random.Random())
            runtime = Runtime(stack, device)
            runtime.start_thread()
            try:
                bed.ns(["ping", "-n", "-c", "1", "-W", "5", STACK_IP])  # ARP settled both ways
                yield Rig(bed, stack, runtime)
            finally:
                runtime.close()
                assert stack.counters["stack.rx.internal_error"] == 0
        finally:
            device.close()
    finally:
        bed.close()


def _ip(dst: str, payload: bytes, *, options: bytes = b"", ident: int = 0x4242,
        offset: int = 0, more: bool = False) -> bytes:
    """An IPv4 packet from the namespace's 10.0.2.2, with its header checksum right."""
    hlen = 20 + len(options)
    header = bytearray(
        bytes([0x40 | hlen // 4, 0]) + (hlen + len(payload)).to_bytes(2, "big")
        + ident.to_bytes(2, "big") + ((0x2000 if more else 0) | offset // 8).to_bytes(2, "big")
        + bytes([64, 1, 0, 0]) + IPv4Address(GATEWAY).packed + IPv4Address(dst).packed
        + options)
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


def _echo(ident: int, payload: bytes = b"options probe") -> bytes:
    body = bytes([8, 0, 0, 0]) + ident.to_bytes(2, "big") + (1).to_bytes(2, "big") + payload
    return body[:2] + internet_checksum(body).to_bytes(2, "big") + body[4:]


def _ping_with(options: bytes) -> Callable[[str], list[bytes]]:
    return lambda dst: [_ip(dst, _echo(len(options)), options=options)]


def _fragments(ident: int, cuts: list[tuple[int, int]], replace: bytes | None = None
               ) -> Callable[[str], list[bytes]]:
    """An 80-byte echo request cut into (start, end) pieces, sent in that order; with
    ``replace`` the pieces that neither start nor end the datagram carry those bytes."""
    echo = _echo(ident, b"o" * 72)

    def build(dst: str) -> list[bytes]:
        out = []
        for start, end in cuts:
            data = echo[start:end]
            if replace is not None and start > 0 and end < len(echo):
                data = replace[:end - start]
            out.append(_ip(dst, data, ident=ident, offset=start, more=end < len(echo)))
        return out
    return build


PP = PARAMETER_PROBLEM
# name: (packets for a destination, Linux's verdict, the stack's counter that moves)
CASES: dict[str, tuple[Callable[[str], list[bytes]], Verdict, str]] = {
    "record route of length 0": (_ping_with(bytes([7, 0, 4, 0])), [(PP, 20)],
                                 "ipv4.rx.bad_options"),
    "an option running past the header": (_ping_with(bytes([1, 7, 40, 4])), [(PP, 21)],
                                          "ipv4.rx.bad_options"),
    "record route with half an address of room": (
        _ping_with(bytes([7, 9, 8]) + bytes(9)), [(PP, 22)], "ipv4.rx.bad_options"),
    "two record routes": (_ping_with(bytes([7, 7, 8]) + bytes(4) + bytes([7, 7, 4]) + bytes(6)),
                          [(PP, 27)], "ipv4.rx.bad_options"),
    "timestamp whose overflow is at 15": (_ping_with(bytes([68, 8, 9, 0xF0]) + bytes(4)),
                                          [(PP, 23)], "ipv4.rx.bad_options"),
    "timestamp+address with room for a stamp only": (
        _ping_with(bytes([68, 12, 9, 1]) + bytes(8)), [(PP, 22)], "ipv4.rx.bad_options"),
    "router alert of length 3": (_ping_with(bytes([148, 3, 0, 0])), [(PP, 21)],
                                 "ipv4.rx.bad_options"),
    "a completed loose source route": (_ping_with(bytes([131, 7, 8, 10, 0, 2, 2, 1])), [],
                                       "ipv4.rx.source_route"),
    "a timestamp flag RFC 791 does not define": (
        _ping_with(bytes([68, 12, 5, 2]) + bytes(8)), [(ECHO_REPLY, 0)], "icmp.tx.echo_reply"),
    "an unknown option kind": (_ping_with(bytes([30, 2, 1, 1])), [(ECHO_REPLY, 0)],
                               "icmp.tx.echo_reply"),
    "a valid record route": (_ping_with(bytes([7, 11, 4]) + bytes(9)), [(ECHO_REPLY, 0)],
                             "icmp.tx.echo_reply_with_options"),
    "fragments overlapping with identical bytes": (
        _fragments(0x5101, [(0, 32), (24, 48), (32, 80)]), [], "ipv4.reasm.overlap_drop"),
    "a fragment sent twice": (_fragments(0x5102, [(0, 32), (0, 32), (32, 80)]),
                              [(ECHO_REPLY, 0)], "ipv4.reasm.duplicate"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_stack_answers_a_probe_as_linux_does_and_counts_it(rig: Rig, name: str) -> None:
    packets, expected, counter = CASES[name]
    linux = rig.probe(DNS_SERVER, packets(DNS_SERVER))
    before = rig.counters().get(counter, 0)
    ours = rig.probe(STACK_IP, packets(STACK_IP))
    assert linux == expected, f"this kernel answers {linux}: the table is out of date"
    assert ours == linux
    assert rig.counters()[counter] == before + 1


def test_a_different_fragment_inside_one_we_hold_drops_the_datagram(rig: Rig) -> None:
    # Linux ignores such a fragment as a duplicate (whatever its bytes) and reassembles;
    # we drop the datagram, as for any overlap that is not an exact duplicate
    # (docs/stack.md, Reassembly).
    packets = _fragments(0x5103, [(0, 32), (8, 16), (32, 80)], replace=b"X" * 8)
    assert rig.probe(DNS_SERVER, packets(DNS_SERVER)) == [(ECHO_REPLY, 0)]
    before = rig.counters().get("ipv4.reasm.conflicting_overlap", 0)
    assert rig.probe(STACK_IP, packets(STACK_IP)) == []
    assert rig.counters()["ipv4.reasm.conflicting_overlap"] == before + 1


def _ping(rig: Rig, *args: str) -> str:
    out = rig.bed.ns(["ping", "-n", "-c", "1", "-W", "3", *args, STACK_IP], check=False)
    assert " 1 received" in out.stdout, out.stdout + out.stderr
    return out.stdout


def test_kernel_ping_record_route_shows_the_stack_once_on_the_round_trip(rig: Rig) -> None:
    # The kernel records itself when it sends the request and again when the reply
    # arrives; the stack records itself once, when it sends the reply.
    out = _ping(rig, "-R")
    route = re.findall(r"^(?:RR:)?\s+(\d+\.\d+\.\d+\.\d+)\s*$", out, re.MULTILINE)
    assert route == [GATEWAY, STACK_IP, GATEWAY], out


def test_kernel_ping_timestamps_carry_the_stacks_entry(rig: Rig) -> None:
    out = _ping(rig, "-T", "tsandaddr")
    assert re.search(rf"^\s+{re.escape(STACK_IP)}\s", out, re.MULTILINE), out
    out = _ping(rig, "-T", "tsonly")
    assert "TS:" in out, out
