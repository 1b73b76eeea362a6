"""IPv6 on the user-mode link (libslirp's layout), no root: a guest stack with ``ip6="auto"``
forms a fec0::/64 address from the gateway's Router Advertisement, learns fec0::3 by RDNSS,
and its TCP/UDP to [fec0::2]:P reaches real host sockets on [::1]:P."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from tests.slirp.rig import HostServer, Rig
from vipernet.link.frame import Frame
from vipernet.slirp.config import GATEWAY_MAC, SlirpConfig
from vipernet.slirp.device import SlirpDevice
from vipernet.slirp.router_adv import (
    MAX_INITIAL_RTR_ADVERT_INTERVAL,
    MAX_RA_DELAY_TIME,
    MAX_RTR_ADV_INTERVAL,
    MIN_DELAY_BETWEEN_RAS,
    MIN_RTR_ADV_INTERVAL,
    Advertiser,
)
from vipernet.stack import StackConfig
from vipernet.stack.socket_api import AF_INET6
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet
from vipernet.wire.icmpv6 import Icmpv6Other, parse_icmpv6
from vipernet.wire.ipv6 import (
    ALL_NODES,
    IPv6Header,
    build_ipv6_packet,
    link_local_from_mac,
    multicast_mac,
    parse_ipv6,
)
from vipernet.wire.ndp import RouterAdvertisement, build_router_advertisement, parse_ndp
from vipernet.wire.ndp_options import (
    PrefixInformation,
    RecursiveDnsServer,
    SourceLinkLayerAddress,
    first_option,
)

GATEWAY6 = IPv6Address("fec0::2")
DNS6 = IPv6Address("fec0::3")
PREFIX = IPv6Network("fec0::/64")
GUEST_MAC = StackConfig().mac
GATEWAY_LINK_LOCAL = link_local_from_mac(GATEWAY_MAC)


def slaac_address(rig: Rig) -> IPv6Address | None:
    for info in rig.guest.nd.addrconf.addresses(time.monotonic()):
        if info.origin == "slaac" and info.state == "preferred" and info.address in PREFIX:
            return info.address
    return None


def ipv6_rig(config: SlirpConfig | None = None) -> Rig:
    """A guest with the netd default ``ip6="auto"``, once it has its SLAAC address."""
    rig = Rig(config, guest=StackConfig(ip6="auto"))
    try:
        rig.until(lambda: slaac_address(rig) is not None, timeout=15)
    except BaseException:
        rig.close()
        raise
    return rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = ipv6_rig()
    yield r
    r.close()


def router_advertisements(frames: list[Frame]) -> list[tuple[Any, RouterAdvertisement]]:
    """(IPv6 header, RA) of every valid RA among ``frames``."""
    found = []
    for frame in frames:
        data = frame.data
        if len(data) < 14 + 41 or data[12:14] != b"\x86\xdd" or data[14 + 6] != 58:
            continue
        header, payload = parse_ipv6(memoryview(data)[14:])
        message = parse_icmpv6(payload, header.src, header.dst)  # checks the checksum
        if isinstance(message, Icmpv6Other) and message.type == 134:
            ra = parse_ndp(134, message.body, header.src, header.dst)
            assert isinstance(ra, RouterAdvertisement)
            found.append((header, ra))
    return found


def test_the_guest_forms_a_fec0_address_by_slaac_and_learns_fec0_3_by_rdnss() -> None:
    rig = Rig(guest=StackConfig(ip6="auto"))  # DAD and router discovery as netd runs them
    rig.to_guest = []
    try:
        rig.until(lambda: slaac_address(rig) is not None, timeout=15)
        now = time.monotonic()
        ac = rig.guest.nd.addrconf
        # Modified EUI-64 of the guest's MAC in the advertised prefix (RFC 4862 5.5.3).
        assert slaac_address(rig) == IPv6Address("fec0::5054:ff:fe12:3456")
        assert ac.dns_servers(now) == [DNS6]
        assert ac.routers(now) == [GATEWAY_LINK_LOCAL]
        assert PREFIX in ac.prefixes(now)
        # The RA as it crossed the link: from the gateway's link-local, to all-nodes, hop
        # limit 255, a default router, the prefix on-link and autonomous, RDNSS fec0::3.
        [(header, ra), *_] = router_advertisements(rig.to_guest)
        assert header.src == GATEWAY_LINK_LOCAL and header.dst == ALL_NODES
        assert header.hop_limit == 255 and ra.router_lifetime > 0
        info = first_option(ra.options, PrefixInformation)
        assert info is not None and info.network == PREFIX
        assert info.on_link and info.autonomous and info.preferred_lifetime > 0
        rdnss = first_option(ra.options, RecursiveDnsServer)
        assert rdnss is not None and rdnss.servers == (DNS6,) and rdnss.lifetime > 0
        slla = first_option(ra.options, SourceLinkLayerAddress)
        assert slla is not None and slla.address == GATEWAY_MAC
        # The guest's Router Solicitation was heard (and answered, rate-limited).
        rig.until(lambda: rig.device.counters["ndp.ra_sent"] >= 2, timeout=10)
        assert rig.device.counters["ndp.rs"] >= 1
        assert rig.device.counters["internal_error"] == 0
    finally:
        rig.close()


def test_the_gateway_answers_ping6_on_fec0_2(rig: Rig) -> None:
    ping = rig.guest.pings6.open_socket()
    ping.send_echo(GATEWAY6, 1, b"hello6", time.monotonic())
    replies = []

    def got() -> bool:
        try:
            replies.append(ping.recv_reply())
        except BlockingIOError:
            return False
        return True

    rig.until(got)
    assert replies[0].src == GATEWAY6 and replies[0].payload == b"hello6"
    # The guest resolved fec0::2 by NS; the answer came from the device, with R set.
    entry = rig.guest.nd.neighbors.entries(time.monotonic())[GATEWAY6]
    assert entry.link_address == GATEWAY_MAC and entry.is_router


def test_tcp_to_fec0_2_reaches_a_host_server_on_ipv6_loopback_both_ways(rig: Rig) -> None:
    up, down = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    seen: list[tuple[str, str, bytes]] = []

    def handler(conn: socket.socket) -> None:
        digest = hashlib.sha256()
        while data := conn.recv(65536):
            digest.update(data)
        seen.append((conn.getsockname()[0], conn.getpeername()[0], digest.digest()))
        conn.sendall(digest.digest() + down)

    server = HostServer(handler, host="::1")
    try:
        sock = rig.connect((str(GATEWAY6), server.port), family=AF_INET6)
        assert sock.take_error() is None
        assert sock.getpeername()[:2] == (str(GATEWAY6), server.port)
        view, sent = memoryview(up), [0]

        def push() -> bool:
            while sent[0] < len(up):
                try:
                    sent[0] += sock.send(view[sent[0]:sent[0] + 65536], time.monotonic())
                except BlockingIOError:
                    return False
            return True

        rig.until(push, timeout=60)
        sock.shutdown(socket.SHUT_WR, time.monotonic())
        got = bytearray()

        def drain() -> bool:
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    return False
                if not data:
                    return True
                got.extend(data)

        rig.until(drain, timeout=60)
        assert seen == [("::1", "::1", hashlib.sha256(up).digest())]  # a real IPv6 socket
        assert bytes(got[:32]) == hashlib.sha256(up).digest()
        assert hashlib.sha256(got[32:]).digest() == hashlib.sha256(down).digest()
        sock.close(time.monotonic())
        rig.until(lambda: not rig.device._relays, timeout=10)
        assert rig.device.counters["tcp.flows"] == 1 and not server.errors
    finally:
        server.close()


def test_a_closed_host_port_on_ipv6_loopback_is_refused_to_the_guest(rig: Rig) -> None:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]  # nobody listens there once closed
    sock = rig.connect((str(GATEWAY6), port), family=AF_INET6)
    assert sock.take_error() == errno.ECONNREFUSED
    assert rig.device.counters["tcp.host_refused"] == 1


def udp6_echo_server(host: str = "::1") -> tuple[socket.socket, threading.Thread]:
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                           socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.settimeout(0.1)

    def serve() -> None:
        while server.fileno() >= 0:
            try:
                data, peer = server.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            server.sendto(b"echo:" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def udp6_round_trip(rig: Rig, address: tuple[str, int], payload: bytes
                    ) -> tuple[bytes, tuple[Any, ...]]:
    sock = rig.guest.udp_socket(AF_INET6)
    sock.sendto(payload, address, time.monotonic())
    result: list[tuple[bytes, tuple[Any, ...]]] = []

    def got() -> bool:
        try:
            result.append(sock.recvfrom(65535))
        except BlockingIOError:
            return False
        return True

    rig.until(got)
    sock.close(time.monotonic())
    return result[0]


@pytest.mark.parametrize("size", [100, 3000])  # 3000: fragmented both ways
def test_udp_to_fec0_2_reaches_a_host_server_on_ipv6_loopback_and_the_reply_comes_back(
        rig: Rig, size: int) -> None:
    server, thread = udp6_echo_server()
    try:
        port = server.getsockname()[1]
        payload = os.urandom(size)
        data, peer = udp6_round_trip(rig, (str(GATEWAY6), port), payload)
        assert data == b"echo:" + payload
        assert peer == (str(GATEWAY6), port, 0, 0)
        assert rig.device.counters["udp.to_host"] == 1 and rig.device.counters["udp.flows"] == 1
    finally:
        server.close()
        thread.join(timeout=5)


def test_a_refused_ipv6_datagram_comes_back_as_port_unreachable(rig: Rig) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    sock = rig.guest.udp_socket(AF_INET6)
    sock.connect((str(GATEWAY6), port), time.monotonic())
    sock.send(b"anyone?", time.monotonic())
    assert rig.recv_errors(sock) == [errno.ECONNREFUSED]
    assert rig.device.counters["udp.unreachable_sent"] == 1


def test_dns_at_fec0_3_goes_to_the_same_upstream_as_10_0_2_3() -> None:
    server, thread = udp6_echo_server("127.0.0.1")  # the IPv4 resolver both addresses use
    rig = ipv6_rig(SlirpConfig(dns_upstream=("127.0.0.1", server.getsockname()[1])))
    try:
        data, peer = udp6_round_trip(rig, (str(DNS6), 53), b"query")
        assert data == b"echo:query" and peer == (str(DNS6), 53, 0, 0)
        # fec0::3 was resolved by NS, answered with the gateway's MAC (not as a router).
        entry = rig.guest.nd.neighbors.entries(time.monotonic())[DNS6]
        assert entry.link_address == GATEWAY_MAC and not entry.is_router
        assert rig.device.counters["ndp.na_sent"] >= 1
    finally:
        rig.close()
        server.close()
        thread.join(timeout=5)


def test_a_real_dns_query_to_fec0_3_is_answered_by_the_host_resolver() -> None:
    import dns.message
    import dns.rrset

    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind(("127.0.0.1", 0))
    resolver.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            wire, peer = resolver.recvfrom(65535)
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            reply.answer.append(dns.rrset.from_text("example.test.", 60, "IN", "AAAA",
                                                    "2001:db8::77"))
            resolver.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    rig = ipv6_rig(SlirpConfig(dns_upstream=resolver.getsockname()))
    try:
        query = dns.message.make_query("example.test", "AAAA")
        wire, _peer = udp6_round_trip(rig, (str(DNS6), 53), query.to_wire())
        answer = dns.message.from_wire(wire)
        assert answer.id == query.id
        assert [str(r) for rrset in answer.answer for r in rrset] == ["2001:db8::77"]
    finally:
        rig.close()
        resolver.close()
        thread.join(timeout=5)


def test_restrict_refuses_other_ipv6_destinations_but_not_the_gateway() -> None:
    server = HostServer(lambda conn: conn.sendall(b"loopback6"), host="::1")
    rig = ipv6_rig(SlirpConfig(restrict=True))
    try:
        refused = rig.connect(("2001:db8::1", 80), family=AF_INET6)
        assert refused.take_error() == errno.ECONNREFUSED
        assert rig.device.counters["tcp.refused"] == 1
        ok = rig.connect((str(GATEWAY6), server.port), family=AF_INET6)
        assert ok.take_error() is None
        got = bytearray()

        def read() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.extend(ok.recv(100))
            return bytes(got) == b"loopback6"

        rig.until(read)
    finally:
        rig.close()
        server.close()


def test_other_fec0_addresses_belong_to_nobody(rig: Rig) -> None:
    """fec0::/64 is on-link: the guest asks for fec0::9 by NS, nobody answers (as nobody
    answers ARP for 10.0.2.9), and nothing is relayed."""
    sock = rig.connect(("fec0::9", 80), family=AF_INET6, timeout=15)
    assert sock.take_error() == errno.EHOSTUNREACH
    assert rig.device.counters["tcp.flows"] == 0 and rig.device.counters["ndp.na_sent"] == 0


def test_where_ipv6_destinations_go() -> None:
    config = SlirpConfig(dns_upstream=("127.0.0.1", 5353))
    assert config.host_target(GATEWAY6, 8080) == ("::1", 8080)
    assert config.host_target(DNS6, 53) == ("127.0.0.1", 5353)
    assert config.host_target(DNS6, 80) is None
    assert config.host_target(IPv6Address("2001:db8::1"), 443) == ("2001:db8::1", 443)
    for refused in ("fec0::9", "fe80::1", "ff02::1", "::", "::1", "::ffff:1.2.3.4"):
        assert config.host_target(IPv6Address(refused), 80) is None, refused
    restricted = SlirpConfig(restrict=True, dns_upstream=("127.0.0.1", 5353))
    assert restricted.host_target(IPv6Address("2001:db8::1"), 443) is None
    assert restricted.host_target(GATEWAY6, 1) == ("::1", 1)
    assert restricted.host_target(DNS6, 53) == ("127.0.0.1", 5353)


def test_ipv6_off_keeps_the_link_ipv4_only() -> None:
    config = SlirpConfig.from_argument("ipv6=off")
    assert not config.ipv6 and SlirpConfig.from_argument("ipv6=on").ipv6
    rig = Rig(config, guest=StackConfig(ip6="auto"))
    try:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            rig.step()
        assert rig.device.counters["ndp.ra_sent"] == 0
        assert rig.device.counters["guest.ipv6_off"] >= 1
        assert slaac_address(rig) is None and rig.guest.nd.addrconf.routers(end) == []
    finally:
        rig.close()


def test_router_advertisements_follow_rfc_4861_timing() -> None:
    rng = random.Random(7)
    ads = Advertiser(100.0, rng)
    assert not ads.take(99.9) and ads.take(100.0)  # the first one at once
    first_gap = ads.due - 100.0
    assert 0 < first_gap <= MAX_INITIAL_RTR_ADVERT_INTERVAL
    # A solicitation right after an RA is answered no sooner than 3 s after it.
    ads.solicited(100.5)
    assert ads.due == min(100.0 + first_gap, 100.0 + MIN_DELAY_BETWEEN_RAS)
    # Much later, one is answered within MAX_RA_DELAY_TIME.
    ads.take(ads.due)
    later = ads.due + 1000.0
    ads.due = later + 50.0
    ads.solicited(later)
    assert later <= ads.due <= later + MAX_RA_DELAY_TIME
    # After the initial ones, unsolicited RAs are MinRtrAdvInterval..MaxRtrAdvInterval apart.
    when = ads.due
    for _ in range(10):
        assert ads.take(when)
        gap = ads.due - when
        when = ads.due
    assert MIN_RTR_ADV_INTERVAL <= gap <= MAX_RTR_ADV_INTERVAL


def test_a_guest_router_advertisement_is_not_taken_by_the_gateway(rig: Rig) -> None:
    """Only the device advertises: an RA from the guest must not give the gateway stack
    routes or prefixes (it would then send replies the guest's way)."""
    src = link_local_from_mac(GUEST_MAC)
    forged = RouterAdvertisement(router_lifetime=1800, options=(PrefixInformation(
        prefix_length=64, on_link=True, autonomous=True, valid_lifetime=0,
        preferred_lifetime=0, prefix=IPv6Address("fec0::")),))
    icmp = build_router_advertisement(forged, src)
    ip = build_ipv6_packet(IPv6Header(src=src, dst=ALL_NODES, next_header=58, hop_limit=255),
                           icmp)
    frame = build_ethernet(EthernetHeader(dst=multicast_mac(ALL_NODES), src=GUEST_MAC,
                                          ethertype=EtherType.IPV6), ip)
    rig.device.send(Frame(frame), time.monotonic())
    assert rig.device.counters["ndp.guest_router_message"] == 1
    assert rig.device.gateway.nd.addrconf.routers(time.monotonic()) == []
    assert PREFIX in rig.device.gateway.nd.addrconf.prefixes(time.monotonic())


def test_an_unsolicited_frame_burst_never_breaks_the_device() -> None:
    """RS, NS and NAT paths driven straight, with no guest stack: counted, not raised."""
    device = SlirpDevice(SlirpConfig(), rng=random.Random(0))
    try:
        for data in (b"\x33\x33\x00\x00\x00\x02" + GUEST_MAC + b"\x86\xdd" + bytes(60),
                     b"\x52\x54\x00\x12\x35\x02" + GUEST_MAC + b"\x86\xdd" + bytes(40)):
            device.send(Frame(data), 0.0)
            device.receive(0.01)
        assert device.counters["internal_error"] == 0
    finally:
        device.close()
