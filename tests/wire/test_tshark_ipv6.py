"""Interop: IPv6 frames built by vipernet.wire, decoded by tshark with checksum checks on.

Every ICMPv6 and UDP checksum must read "good", the NDP/MLD fields must decode to what we
encoded, and tshark's expert system must report no warning or error.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from tests.link.tshark import write_pcap
from tests.testbed import require_binary
from vipernet.wire import (
    EthernetHeader,
    IPv6Header,
    MulticastAddressRecord,
    RouterAdvertisement,
    build_ethernet,
    build_icmpv6_error,
    build_ipv6_packet,
    internet_checksum,
    link_local_from_mac,
    multicast_mac,
    pseudo_header_sum_v6,
    solicited_node,
)
from vipernet.wire.icmpv6 import build_echo_request
from vipernet.wire.ipv6_ext import build_fragment_header, build_router_alert_header
from vipernet.wire.mld import build_mld_report
from vipernet.wire.ndp import (
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_router_advertisement,
    build_router_solicitation,
)
from vipernet.wire.ndp_options import MtuOption, PrefixInformation, RecursiveDnsServer

pytestmark = pytest.mark.testbed

MAC, PEER_MAC = bytes.fromhex("525400123456"), bytes.fromhex("52550a000202")
LL, PEER_LL = link_local_from_mac(MAC), link_local_from_mac(PEER_MAC)
A, B = IPv6Address("fd01::15"), IPv6Address("fd01::2")
ALL_NODES, ALL_ROUTERS = IPv6Address("ff02::1"), IPv6Address("ff02::2")
MLDV2_ROUTERS = IPv6Address("ff02::16")


def frame(src: IPv6Address, dst: IPv6Address, nxt: int, payload: bytes, hops: int = 64) -> bytes:
    eth_dst = multicast_mac(dst) if dst.is_multicast else PEER_MAC
    packet = build_ipv6_packet(
        IPv6Header(src=src, dst=dst, next_header=nxt, hop_limit=hops), payload
    )
    return build_ethernet(EthernetHeader(dst=eth_dst, src=MAC, ethertype=0x86DD), packet)


def ndp(src: IPv6Address, dst: IPv6Address, message: bytes) -> bytes:
    return frame(src, dst, 58, message, hops=255)


def udp_over_ipv6(payload: bytes) -> bytes:
    """What the stack will do until udp.py takes IPv6 addresses: the same checksum
    functions, seeded with the IPv6 pseudo-header."""
    head = struct.pack("!HHHH", 40000, 40001, 8 + len(payload), 0)
    csum = internet_checksum(head + payload, pseudo_header_sum_v6(A, B, 17, 8 + len(payload)))
    return head[:6] + (csum or 0xFFFF).to_bytes(2, "big") + payload


RA = RouterAdvertisement(
    cur_hop_limit=64,
    managed=True,
    router_lifetime=1800,
    options=(
        PrefixInformation(
            prefix_length=64,
            on_link=True,
            autonomous=True,
            valid_lifetime=3600,
            preferred_lifetime=1800,
            prefix=IPv6Network("fd01::/64").network_address,
        ),
        MtuOption(mtu=1500),
        RecursiveDnsServer(lifetime=600, servers=(IPv6Address("fd01::53"),)),
    ),
)
REPORT = build_mld_report(
    [MulticastAddressRecord(record_type=4, multicast_address=solicited_node(LL))], LL
)
INVOKING = build_ipv6_packet(IPv6Header(src=B, dst=A, next_header=17), bytes(1400))
FRAMES = [
    frame(A, B, 58, build_echo_request(7, 1, b"p" * 56, A, B)),
    ndp(LL, ALL_ROUTERS, build_router_solicitation(LL, MAC)),
    ndp(
        IPv6Address("::"), solicited_node(A), build_neighbor_solicitation(A, IPv6Address("::"), MAC)
    ),
    ndp(A, solicited_node(B), build_neighbor_solicitation(B, A, MAC)),
    ndp(A, B, build_neighbor_advertisement(A, A, B, MAC)),
    ndp(PEER_LL, ALL_NODES, build_router_advertisement(RA, PEER_LL)),
    frame(LL, MLDV2_ROUTERS, 0, build_router_alert_header(58) + REPORT, hops=1),
    frame(A, B, 58, build_icmpv6_error(1, 4, INVOKING, A, B)),
    frame(A, B, 44, build_fragment_header(17, 0, True, 0x1234) + bytes(16)),
    frame(A, B, 17, udp_over_ipv6(b"query")),
]


@pytest.fixture(scope="module")
def capture() -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-wire6-"))
    path = workdir / "wire6.pcap"
    try:
        write_pcap(path, FRAMES)
        yield path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def tshark(*args: str) -> str:
    binary = require_binary("tshark")
    checks = ["-o", "udp.check_checksum:TRUE"]
    result = subprocess.run(
        [binary, *checks, *args], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def fields(capture: Path, *names: str) -> list[list[str]]:
    args = ["-r", str(capture), "-T", "fields", "-E", "separator=|"]
    for name in names:
        args += ["-e", name]
    return [line.split("|") for line in tshark(*args).splitlines()]


def test_tshark_finds_every_icmpv6_checksum_good(capture: Path) -> None:
    rows = fields(capture, "icmpv6.checksum.status", "icmpv6.type")
    assert len(rows) == len(FRAMES)
    for row in rows[:-2]:
        assert row[0] == "1", row  # 1 = good
    assert [row[1] for row in rows[:-2]] == ["128", "133", "135", "135", "136", "134", "143", "1"]


def test_tshark_finds_the_udp_checksum_over_the_ipv6_pseudo_header_good(capture: Path) -> None:
    assert fields(capture, "udp.checksum.status")[-1] == ["1"]


def test_tshark_decodes_our_ndp_and_mld_fields(capture: Path) -> None:
    rows = fields(
        capture,
        "icmpv6.nd.ns.target_address",
        "icmpv6.opt.linkaddr",
        "icmpv6.opt.prefix",
        "icmpv6.opt.mtu",
        "icmpv6.opt.rdnss",
        "icmpv6.mldr.mar.multicast_address",
        "ipv6.fraghdr.ident",
    )
    assert rows[3][0] == str(B) and rows[3][1] == "52:54:00:12:34:56"
    assert rows[2][1] == ""  # DAD: no source link-layer address
    assert rows[5][2:5] == ["fd01::", "1500", "fd01::53"]
    assert rows[6][5] == str(solicited_node(LL))
    assert rows[8][6] == "0x00001234"


def test_tshark_expert_reports_no_warning_or_error(capture: Path) -> None:
    report = tshark("-r", str(capture), "-q", "-z", "expert,warn")
    assert "Errors" not in report and "Warns" not in report, report
