"""Issue 15 item 3 (DNS), end to end: a server that only sends malformed replies makes the
real ``vipernet dig`` fail at once with one line that names the server, how many replies
it sent and what is wrong with them, and netd counts each reason in ``dns.malformed.KIND``.

The rig is test_dig_misbehaving_server's (netd on a TAP, our own UDP server on
10.0.2.3:53 in the namespace); the server here builds a correct reply with dnspython and
breaks it one way per mode, bytewise.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.dns.test_dig_misbehaving_server import DnsServer, Netd, netd_on_a_bed
from tests.testbed import DNS_SERVER, stop_process, wait_for

pytestmark = pytest.mark.testbed

SERVER = r"""
import socket, struct, sys, time
import dns.message, dns.rrset

mode = sys.argv[1]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[2], 53))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    print(time.monotonic(), flush=True)
    query = dns.message.from_wire(data)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "10.0.2.2"))
    wire = response.to_wire()
    answer = 12 + len(query.question[0].name.to_wire()) + 4  # the answer's owner name
    assert wire[answer:answer + 2] == b"\xc0\x0c"
    if mode == "pointer_loop":  # the owner name points at itself
        wire = wire[:answer] + struct.pack(">H", 0xC000 | answer) + wire[answer + 2:]
    elif mode == "pointer_past_end":
        wire = wire[:answer] + struct.pack(">H", 0xC000 | 0x3FF0) + wire[answer + 2:]
    elif mode == "rdlength":  # an additional TXT record claiming 200 bytes, holding 6
        wire = (wire[:10] + struct.pack(">H", 1) + wire[12:] + b"\xc0\x0c"
                + struct.pack(">HHIH", 16, 1, 60, 200) + b"\x05hello")
    elif mode == "counts":  # the header announces 3 answers, the message holds 1
        wire = wire[:6] + struct.pack(">H", 3) + wire[8:]
    elif mode == "label":  # a label of the reserved type 0x40 as the owner name
        wire = wire[:answer] + b"\x41a\x00" + wire[answer + 2:]
    elif mode == "truncated":  # ends inside the answer's TYPE/CLASS/TTL
        wire = wire[:answer + 5]
    sock.sendto(wire, peer)
"""

# mode -> (the counter's KIND, the reason dig prints)
CASES = {
    "pointer_loop": ("pointer_loop", "compression pointer loop"),
    "pointer_past_end": ("pointer_past_end",
                         f"compression pointer to offset {0x3FF0}, past the end"),
    "rdlength": ("rdlength", "RDLENGTH 200 past the end"),
    "counts": ("counts", "record counts larger than the message"),
    "label": ("label", "bad label (type 0x40)"),
    "truncated": ("truncated", "cut short"),
}


@pytest.fixture(scope="module")
def netd() -> Iterator[Netd]:
    yield from netd_on_a_bed("dm")


@dataclass
class BrokenServer(DnsServer):
    mode: str = ""


@pytest.fixture
def server(netd: Netd, request: pytest.FixtureRequest) -> Iterator[BrokenServer]:
    proc = netd.bed.start([sys.executable, "-c", SERVER, request.param, DNS_SERVER],
                          stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    running = BrokenServer(proc, mode=request.param)
    reader = threading.Thread(target=running.read, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        yield running
    finally:
        stop_process(proc)
        reader.join(5)


@pytest.mark.parametrize("server", list(CASES), indirect=True)
def test_only_malformed_replies_fail_at_once_naming_server_count_and_reason(
        netd: Netd, server: BrokenServer) -> None:
    mode = server.mode
    kind, reason = CASES[mode]
    name = f"{mode.replace('_', '-')}.test"
    before = netd.dns_counters()
    result, exited = netd.dig(name, "--timeout", "5")
    assert (result.returncode, result.stdout) == (1, "")
    # One line: the name, the server, how many replies, why (not "timed out").
    assert result.stderr == (f"vipernet dig: {name}: {DNS_SERVER} sent 3 malformed replies "
                             f"({reason})\n")
    wait_for(lambda: len(server.queries) == 3, timeout=5, what="three queries")
    assert exited - server.queries[0] < 1.0  # each reply moved on at once: no waiting out 5 s
    after = netd.dns_counters()
    assert after.get(f"dns.malformed.{kind}", 0) == before.get(f"dns.malformed.{kind}", 0) + 3
    assert after.get("dns.malformed", 0) == before.get("dns.malformed", 0) + 3
    assert after.get("dns.attempt_timeouts", 0) == before.get("dns.attempt_timeouts", 0)


@pytest.mark.parametrize("server", ["truncated"], indirect=True)
def test_info_counters_list_the_reason(netd: Netd, server: BrokenServer) -> None:
    from tests.netd_rig import vipernet_cli

    netd.dig("counted.test", "--timeout", "2")
    result = vipernet_cli("info", "--counters", env=netd.env)
    assert result.returncode == 0, result.stderr
    assert "dns.malformed.truncated" in result.stdout
