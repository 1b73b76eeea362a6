"""Interop: frames built by vipernet.wire, decoded by tshark with checksum checks on.

tshark is the reference decoder here: every checksum must read "good", every TCP option
must decode to the value we encoded, and its expert system must report no warning or
error (the canonical NOP-aligned option layout is what keeps it quiet).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.link.tshark import write_pcap
from tests.testbed import require_binary
from vipernet.wire import (
    ArpOp,
    ArpPacket,
    EthernetHeader,
    EtherType,
    IcmpEcho,
    IcmpType,
    IpProto,
    IPv4Header,
    TcpFlags,
    TcpHeader,
    TcpOptions,
    build_arp,
    build_ethernet,
    build_icmp,
    build_ipv4,
    build_tcp,
    build_udp,
)

pytestmark = pytest.mark.testbed

STACK_MAC, GATEWAY_MAC = bytes.fromhex("525400123456"), bytes.fromhex("52550a000202")
SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")
CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"]
CHECKS += ["-o", "udp.check_checksum:TRUE", "-o", "tcp.relative_sequence_numbers:FALSE"]


def ethernet(ethertype: EtherType, payload: bytes) -> bytes:
    header = EthernetHeader(dst=GATEWAY_MAC, src=STACK_MAC, ethertype=ethertype)
    return build_ethernet(header, payload)


def ipv4(proto: IpProto, payload: bytes) -> bytes:
    header = IPv4Header(src=SRC, dst=DST, proto=proto, ident=7, dont_fragment=True)
    return ethernet(EtherType.IPV4, build_ipv4(header, payload))


def tcp(flags: TcpFlags, options: TcpOptions, payload: bytes = b"") -> bytes:
    header = TcpHeader(
        src_port=40000, dst_port=80, seq=1000, ack=5000, flags=flags, window=502, options=options
    )
    return ipv4(IpProto.TCP, build_tcp(header, payload, src=SRC, dst=DST))


FRAMES = [
    ethernet(
        EtherType.ARP,
        build_arp(
            ArpPacket(
                op=ArpOp.REQUEST,
                sender_mac=STACK_MAC,
                sender_ip=SRC,
                target_mac=bytes(6),
                target_ip=DST,
            )
        )
        + bytes(18),
    ),
    ipv4(
        IpProto.ICMP,
        build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=9, seq=3, payload=b"p" * 56)),
    ),
    ipv4(IpProto.UDP, build_udp(40000, 40001, b"datagram", src=SRC, dst=DST)),
    tcp(
        TcpFlags.SYN,
        TcpOptions(mss=1460, sack_permitted=True, timestamps=(111, 0), window_scale=7),
    ),
    tcp(TcpFlags.SYN, TcpOptions(mss=536, window_scale=2)),
    tcp(
        TcpFlags.ACK,
        TcpOptions(timestamps=(222, 333), sack_blocks=((6000, 7000), (8000, 9000))),
        b"data",
    ),
    tcp(TcpFlags.ACK | TcpFlags.PSH, TcpOptions(timestamps=(444, 555)), b"x" * 1400),
]


@pytest.fixture(scope="module")
def capture() -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-wire-"))
    path = workdir / "wire.pcap"
    try:
        write_pcap(path, FRAMES)
        yield path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def tshark(*args: str) -> str:
    binary = require_binary("tshark")
    result = subprocess.run(
        [binary, *CHECKS, *args], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def fields(capture: Path, *names: str) -> list[list[str]]:
    args = ["-r", str(capture), "-T", "fields", "-E", "separator=|"]
    for name in names:
        args += ["-e", name]
    return [line.split("|") for line in tshark(*args).splitlines()]


def test_tshark_finds_every_checksum_good(capture: Path) -> None:
    rows = fields(
        capture,
        "ip.checksum.status",
        "icmp.checksum.status",
        "udp.checksum.status",
        "tcp.checksum.status",
    )
    assert len(rows) == len(FRAMES)
    assert rows[0] == ["", "", "", ""]  # ARP has no checksum
    for row in rows[1:]:
        present = [value for value in row if value]
        assert present == ["1", "1"], row  # 1 = good: the IP header and the transport


def test_tshark_decodes_our_tcp_options_to_the_values_we_encoded(capture: Path) -> None:
    rows = fields(
        capture,
        "tcp.options.mss_val",
        "tcp.options.wscale.shift",
        "tcp.options.sack_perm",
        "tcp.options.timestamp.tsval",
        "tcp.options.timestamp.tsecr",
        "tcp.options.sack_le",
        "tcp.options.sack_re",
        "tcp.len",
    )
    sack_permitted = "0402"  # tshark shows this option as its raw kind/length bytes
    assert rows[3][:5] == ["1460", "7", sack_permitted, "111", "0"]
    assert rows[4][:4] == ["536", "2", "", ""]
    assert rows[5][3:] == ["222", "333", "6000,8000", "7000,9000", "4"]
    assert rows[6][3:] == ["444", "555", "", "", "1400"]


def test_tshark_expert_reports_no_warning_or_error(capture: Path) -> None:
    report = tshark("-r", str(capture), "-q", "-z", "expert,warn")
    assert "Errors" not in report and "Warns" not in report, report
