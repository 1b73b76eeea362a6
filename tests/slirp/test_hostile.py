"""Hostile and malformed guest frames: counted drops, never an exception or an internal error."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vipernet.link.frame import Frame, Offload
from vipernet.slirp.config import GATEWAY_MAC, SlirpConfig
from vipernet.slirp.device import SlirpDevice
from vipernet.slirp.nat import adjust_checksum, inspect
from vipernet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum_v6
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4
from vipernet.wire.ipv6 import (
    ALL_ROUTERS,
    IPv6Header,
    build_ipv6_packet,
    link_local_from_mac,
    multicast_mac,
    solicited_node,
)
from vipernet.wire.ndp import build_neighbor_solicitation, build_router_solicitation
from vipernet.wire.tcp import TcpFlags, TcpHeader, build_tcp
from vipernet.wire.udp import build_udp

GUEST_MAC = bytes.fromhex("525400123456")
GUEST = IPv4Address("10.0.2.15")
GUEST6 = IPv6Address("fec0::5054:ff:fe12:3456")
GUEST_LL = link_local_from_mac(GUEST_MAC)


def frame_for(ip_packet: bytes) -> bytes:
    return build_ethernet(EthernetHeader(dst=GATEWAY_MAC, src=GUEST_MAC,
                                         ethertype=EtherType.IPV4), ip_packet)


def tcp_syn(dst: str, port: int) -> bytes:
    tcp = build_tcp(TcpHeader(src_port=40000, dst_port=port, seq=1, ack=0, flags=TcpFlags.SYN,
                              window=1000), b"", src=GUEST, dst=IPv4Address(dst))
    return frame_for(build_ipv4(IPv4Header(src=GUEST, dst=IPv4Address(dst), proto=IpProto.TCP),
                                tcp))


def udp_datagram(dst: str, port: int, payload: bytes) -> bytes:
    udp = build_udp(40001, port, payload, src=GUEST, dst=IPv4Address(dst))
    return frame_for(build_ipv4(IPv4Header(src=GUEST, dst=IPv4Address(dst), proto=IpProto.UDP),
                                udp))


def frame6(ip_packet: bytes, dst_mac: bytes = GATEWAY_MAC) -> bytes:
    return build_ethernet(EthernetHeader(dst=dst_mac, src=GUEST_MAC, ethertype=EtherType.IPV6),
                          ip_packet)


def tcp6_syn(dst: str, port: int) -> bytes:
    """A SYN over IPv6: build_tcp sums an IPv4 pseudo-header, so the checksum is redone."""
    to = IPv6Address(dst)
    segment = bytearray(build_tcp(TcpHeader(src_port=40000, dst_port=port, seq=1, ack=0,
                                            flags=TcpFlags.SYN, window=1000), b"",
                                  src=IPv4Address(0), dst=IPv4Address(0)))
    segment[16:18] = bytes(2)
    segment[16:18] = internet_checksum(segment, pseudo_header_sum_v6(
        GUEST6, to, 6, len(segment))).to_bytes(2, "big")
    return frame6(build_ipv6_packet(IPv6Header(src=GUEST6, dst=to, next_header=6),
                                    bytes(segment)))


def udp6_datagram(dst: str, port: int, payload: bytes) -> bytes:
    to = IPv6Address(dst)
    return frame6(build_ipv6_packet(IPv6Header(src=GUEST6, dst=to, next_header=17),
                                    build_udp(40001, port, payload, src=GUEST6, dst=to)))


def ndp6(icmp: bytes, dst: IPv6Address) -> bytes:
    return frame6(build_ipv6_packet(IPv6Header(src=GUEST_LL, dst=dst, next_header=58,
                                               hop_limit=255), icmp), multicast_mac(dst))


DNS6 = IPv6Address("fec0::3")
SEEDS = [tcp_syn("10.0.2.9", 80), tcp_syn("10.0.2.2", 9), udp_datagram("10.0.2.9", 53, b"q"),
         udp_datagram("10.0.2.3", 9, b"x" * 40), tcp6_syn("fec0::2", 9),
         tcp6_syn("2001:db8::1", 80), udp6_datagram("fec0::3", 9, b"x" * 40),
         ndp6(build_router_solicitation(GUEST_LL, GUEST_MAC), ALL_ROUTERS),
         ndp6(build_neighbor_solicitation(DNS6, GUEST_LL, GUEST_MAC), solicited_node(DNS6))]


def _sink_port() -> int:
    """A loopback port this module holds for both TCP and UDP: where every relay goes."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(64)
        _SINKS.extend((udp, tcp))
        return port
    raise RuntimeError("no loopback port free for both TCP and UDP")


_SINKS: list[socket.socket] = []


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkConfig(SlirpConfig):
    """Whatever a fuzzed frame names, the relay only ever reaches this test's own sockets
    (never a port another test on this machine listens on)."""

    sink: int = 0

    def host_target(self, dst: IPv4Address | IPv6Address, port: int, *,
                    resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int] | None:
        if SlirpConfig.host_target(self, dst, port, resolv_conf=resolv_conf) is None:
            return None
        return ("127.0.0.1", self.sink)


def new_device(*, max_flows: int = 4096) -> SlirpDevice:
    sink = _sink_port() if not _SINKS else int(_SINKS[0].getsockname()[1])
    return SlirpDevice(SinkConfig(sink=sink, dns_upstream=("127.0.0.1", sink),
                                  max_flows=max_flows), rng=random.Random(0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_from_the_guest_are_dropped_quietly(data: bytes) -> None:
    device = new_device()
    try:
        device.send(Frame(data), 0.0)
        device.receive(0.01)
        assert device.counters["internal_error"] == 0
    finally:
        device.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.integers(min_value=0, max_value=80),
       st.binary(min_size=1, max_size=6), st.booleans())
def test_corrupted_real_frames_never_break_the_gateway(seed: bytes, at: int, junk: bytes,
                                                      partial: bool) -> None:
    data = bytearray(seed)
    data[at:at + len(junk)] = junk
    device = new_device()
    try:
        offload = Offload(needs_csum=True, csum_start=34, csum_offset=16) if partial else None
        device.send(Frame(bytes(data), offload), 0.0)
        for frame in device.receive(0.01):
            assert len(frame.data) >= 14
        assert device.counters["internal_error"] == 0
    finally:
        device.close()


def test_a_syn_to_a_restricted_destination_gets_an_rst_with_a_valid_checksum() -> None:
    device = SlirpDevice(SlirpConfig(restrict=True), rng=random.Random(0))
    try:
        device.send(Frame(tcp_syn("192.0.2.1", 80)), 0.0)
        [rst] = [f for f in device.receive(0.0) if inspect(f.data) is not None]
        packet = inspect(rst.data)
        assert packet is not None and packet.tcp_flags & TcpFlags.RST
        assert packet.src == IPv4Address("192.0.2.1").packed and packet.dport == 40000
        segment = bytes(rst.data[34:])
        from vipernet.wire.tcp import parse_tcp

        header, _ = parse_tcp(segment, src=IPv4Address("192.0.2.1"), dst=GUEST)
        assert header.ack == 2
    finally:
        device.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=64).filter(lambda b: len(b) % 2 == 0),
       st.integers(min_value=0, max_value=9), st.binary(min_size=2, max_size=2))
def test_incremental_checksum_update_matches_a_full_recomputation(
        data: bytes, word: int, new: bytes) -> None:
    at = (word * 2) % len(data)
    changed = data[:at] + new + data[at + 2:]
    # All-zero data sums to +0, which RFC 1624's arithmetic yields as -0: never the case
    # for a real header (its addresses are not zero), so such inputs are left out.
    assume(any(data) and any(changed))
    before = internet_checksum(data)
    assert adjust_checksum(before, data[at:at + 2], new, complemented=True) == \
        internet_checksum(changed)
    partial_before = ones_complement_sum(data)
    assert adjust_checksum(partial_before, data[at:at + 2], new, complemented=False) == \
        ones_complement_sum(changed)


def test_a_handshake_the_guest_never_finishes_is_dropped_with_its_host_socket() -> None:
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    device = SlirpDevice(SlirpConfig(handshake_timeout=1.0), rng=random.Random(0))
    try:
        device.send(Frame(tcp_syn("10.0.2.2", port)), 0.0)
        end = time.monotonic() + 10
        while device._relays and next(iter(device._relays)).connecting:
            assert time.monotonic() < end
            device.receive(0.1)  # the host connect completes; the SYN goes in
        assert len(device._relays) == 1
        device.receive(30.0)  # the sweep: no ACK from the guest ever came
        assert not device._relays
        assert device.counters["tcp.handshake_timeout"] == 1
    finally:
        device.close()
        server.close()


def test_ipv6_seeds_are_answered_as_a_router_would() -> None:
    """The seeds themselves are good: an RST for the refused SYN, an NA for fec0::3."""
    device = SlirpDevice(SlirpConfig(restrict=True), rng=random.Random(0))
    try:
        device.send(Frame(tcp6_syn("2001:db8::1", 80)), 0.0)
        device.send(Frame(SEEDS[-1]), 0.0)
        device.send(Frame(SEEDS[-2]), 0.0)
        assert device.counters["tcp.rst_sent"] == 1 and device.counters["ndp.na_sent"] == 1
        assert device.counters["ndp.rs"] == 1 and device.counters["ndp.malformed"] == 0
        [rst] = [f for f in device.receive(0.0) if inspect(f.data) is not None]
        packet = inspect(rst.data)
        assert packet is not None and packet.ipv6 and packet.tcp_flags & TcpFlags.RST
        assert packet.src == IPv6Address("2001:db8::1").packed and packet.dport == 40000
        segment = bytes(rst.data[54:])
        assert internet_checksum(segment, pseudo_header_sum_v6(
            IPv6Address("2001:db8::1"), GUEST6, 6, len(segment))) == 0
        assert int.from_bytes(segment[8:12], "big") == 2  # acks the SYN
    finally:
        device.close()


def test_the_number_of_flows_is_capped() -> None:
    device = new_device(max_flows=2)
    try:
        for port in (1001, 1002, 1003):
            device.send(Frame(udp_datagram("10.0.2.2", port, b"x")), 0.0)
        assert len(device.flows) == 2 and device.counters["nat.full"] == 1
    finally:
        device.close()
