"""IGMP and UDP broadcast/multicast, sans-IO: the IGMP codec, the host's membership state
machine (reports on join and leave, answers to queries, v2/v1 compatibility), and the UDP
socket rules (SO_BROADCAST, who gets a broadcast, group delivery, source filters, loop, TTL,
the Linux option layouts and errnos)."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address

import pytest

from tests.stack.helpers import IP_A, IP_PEER, MAC_A, eth, ip_packet, make_stack, udp_frame
from vipernet.link.frame import Frame
from vipernet.stack import Stack
from vipernet.stack.igmp_layer import FilterMode, GroupFilter, merge_filters
from vipernet.wire import parse_ethernet, parse_ipv4, parse_udp
from vipernet.wire.errors import WireError
from vipernet.wire.igmp import (
    GroupRecord,
    IgmpGroupMessage,
    IgmpQuery,
    IgmpType,
    IgmpV3Report,
    RecordType,
    build_igmp_group_message,
    build_igmp_query,
    build_igmp_v3_report,
    decode_code,
    encode_code,
    multicast_mac,
    parse_igmp,
)

GROUP = IPv4Address("239.1.2.3")
OTHER = IPv4Address("10.0.2.9")
BROADCAST = IPv4Address("10.0.2.255")
LIMITED = IPv4Address("255.255.255.255")
ANY = IPv4Address(0)
ALL_SYSTEMS = IPv4Address("224.0.0.1")


def mreq(group: IPv4Address, interface: IPv4Address = ANY) -> bytes:
    return group.packed + interface.packed


def mreq_source(group: IPv4Address, source: IPv4Address) -> bytes:
    return group.packed + bytes(4) + source.packed  # Linux order: group, interface, source


def igmp_out(stack: Stack) -> list[tuple[bytes, IPv4Address, object, bytes]]:
    """(dst MAC, IP dst, parsed IGMP, IP options) of every IGMP frame the stack sent."""
    out = []
    for frame in stack.transmit():
        header, payload = parse_ethernet(bytes(frame.data))
        if header.ethertype != 0x0800:
            continue
        ip, body = parse_ipv4(payload)
        if ip.proto == 2:
            assert ip.ttl == 1 and ip.tos == 0xC0
            out.append((header.dst, ip.dst, parse_igmp(body), ip.options))
    return out


def query_frame(query: bytes, dst: IPv4Address = ALL_SYSTEMS) -> Frame:
    return eth(ip_packet(query, proto=2, src=IP_PEER, dst=dst, ttl=1), dst=multicast_mac(dst))


def group_udp(data: bytes, *, group: IPv4Address = GROUP, src: IPv4Address = IP_PEER,
              dport: int = 5353) -> Frame:
    frame = udp_frame(data, dport=dport, src=src, dst=group)
    return Frame(multicast_mac(group) + bytes(frame.data)[6:])


def udp_out(stack: Stack) -> list[tuple[bytes, object, bytes]]:
    out = []
    for frame in stack.transmit():
        header, payload = parse_ethernet(bytes(frame.data))
        if header.ethertype != 0x0800:
            continue
        ip, body = parse_ipv4(payload)
        if ip.proto == 17:
            out.append((header.dst, ip, bytes(parse_udp(body, src=ip.src, dst=ip.dst)[1])))
    return out


# -- the codec --------------------------------------------------------------------------------

def test_codec_round_trips_every_message() -> None:
    records = (GroupRecord(record_type=RecordType.CHANGE_TO_EXCLUDE, group=GROUP),
               GroupRecord(record_type=RecordType.ALLOW_NEW_SOURCES, group=GROUP,
                           sources=(OTHER, IP_PEER), aux_data=b"abcd"))
    assert parse_igmp(build_igmp_v3_report(records)) == IgmpV3Report(records=records)
    for kind in (IgmpType.V1_MEMBERSHIP_REPORT, IgmpType.V2_MEMBERSHIP_REPORT,
                 IgmpType.V2_LEAVE_GROUP):
        assert parse_igmp(build_igmp_group_message(kind, GROUP)) == IgmpGroupMessage(
            type=kind, group=GROUP)
    q3 = parse_igmp(build_igmp_query(group=GROUP, sources=(OTHER,), max_response_code=0x8F))
    assert isinstance(q3, IgmpQuery) and q3.version == 3 and q3.sources == (OTHER,)
    assert q3.max_response_time == pytest.approx((0x1F << 3) / 10)
    q2 = parse_igmp(build_igmp_query(version=2, max_response_code=25))
    assert isinstance(q2, IgmpQuery) and q2.version == 2 and q2.max_response_time == 2.5
    q1 = parse_igmp(build_igmp_query(version=1))
    assert isinstance(q1, IgmpQuery) and q1.version == 1 and q1.is_general


def test_codes_and_mac_mapping() -> None:
    assert [decode_code(encode_code(v)) for v in (0, 127, 128, 1000)] == [0, 127, 128, 992]
    assert multicast_mac(IPv4Address("224.0.0.251")) == bytes.fromhex("01005e0000fb")
    # The ninth bit is lost: 239.129.2.3 and 224.1.2.3 share an address (RFC 1112 6.4).
    assert multicast_mac(IPv4Address("239.129.2.3")) == multicast_mac(IPv4Address("224.1.2.3"))


@pytest.mark.parametrize(("message", "field"), [
    (b"\x11\x64\x00", "length"),
    (build_igmp_query(group=GROUP)[:11] + b"\x01", "checksum"),
    (bytes(build_igmp_query(version=2))[:2] + b"\x00\x00" + bytes(4), "checksum"),
])
def test_codec_refuses_hostile_input(message: bytes, field: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_igmp(message)
    assert caught.value.field == field


def test_codec_refuses_bad_fields_with_good_checksums() -> None:
    from vipernet.wire.checksum import internet_checksum

    def fixed(raw: bytes) -> bytes:
        body = bytearray(raw)
        body[2:4] = b"\0\0"
        body[2:4] = internet_checksum(body).to_bytes(2, "big")
        return bytes(body)

    cases = {
        "length": fixed(build_igmp_query(version=2) + b"\0\0"),  # 10 bytes: no query
        "sources": fixed(build_igmp_query(group=GROUP)[:10] + b"\0\x09"),
        "group": fixed(b"\x16\0\0\0" + OTHER.packed),
        "type": fixed(b"\x13\0\0\0" + GROUP.packed),
        "records": fixed(b"\x22\0\0\0\0\0\0\x02"),
        "record_length": fixed(b"\x22\0\0\0\0\0\0\x01\x01\0\0\x05" + GROUP.packed),
    }
    for field, message in cases.items():
        with pytest.raises(WireError) as caught:
            parse_igmp(message)
        assert caught.value.field == field, field


def test_merge_is_rfc3376_section_3_2() -> None:
    a, b, c = (IPv4Address(f"10.0.0.{i}") for i in (1, 2, 3))
    inc = FilterMode.INCLUDE
    exc = FilterMode.EXCLUDE
    assert merge_filters([GroupFilter(inc, frozenset({a})), GroupFilter(inc, frozenset({b}))]
                         ) == GroupFilter(inc, frozenset({a, b}))
    assert merge_filters([GroupFilter(exc, frozenset({a, b})), GroupFilter(exc, frozenset({b, c})),
                          GroupFilter(inc, frozenset({b}))]) == GroupFilter(exc, frozenset())


# -- the membership state machine --------------------------------------------------------------

def join(stack: Stack, group: IPv4Address = GROUP, now: float = 0.0):  # type: ignore[no-untyped-def]
    sock = stack.udp_socket()
    sock.bind(("0.0.0.0", 5353))
    sock.set_group_option("IP_ADD_MEMBERSHIP", mreq(group), now)
    return sock


def test_join_reports_twice_and_leave_reports_twice() -> None:
    stack = make_stack()
    stack.transmit()
    sock = join(stack)
    sent = igmp_out(stack)
    assert [(m[0], m[1]) for m in sent] == [(multicast_mac(IPv4Address("224.0.0.22")),
                                             IPv4Address("224.0.0.22"))]
    assert sent[0][2] == IgmpV3Report(records=(
        GroupRecord(record_type=RecordType.CHANGE_TO_EXCLUDE, group=GROUP),))
    assert sent[0][3] == b"\x94\x04\x00\x00"  # Router Alert
    due = stack.next_deadline()
    assert due is not None and 0 <= due <= 1.0
    stack.poll(due)
    assert len(igmp_out(stack)) == 1  # the repeat (robustness 2)
    stack.poll(5.0)
    assert igmp_out(stack) == [] and stack.next_deadline() is None
    assert multicast_mac(GROUP) in stack.igmp.macs
    sock.close(6.0)
    left = igmp_out(stack)
    assert [m[2] for m in left] == [IgmpV3Report(records=(
        GroupRecord(record_type=RecordType.CHANGE_TO_INCLUDE, group=GROUP),))]
    assert multicast_mac(GROUP) not in stack.igmp.macs


def test_general_and_group_queries_are_answered_within_max_resp_time() -> None:
    stack = make_stack()
    sock = join(stack)
    stack.poll(3.0)
    stack.transmit()
    stack.receive(query_frame(build_igmp_query(max_response_code=20)), 10.0)
    due = stack.next_deadline()
    assert due is not None and 10.0 <= due <= 12.0
    stack.poll(12.0)
    assert [m[2] for m in igmp_out(stack)] == [IgmpV3Report(records=(
        GroupRecord(record_type=RecordType.MODE_IS_EXCLUDE, group=GROUP),))]
    # A group-and-source query: we listen to every source, so the asked one is IS_IN.
    stack.receive(query_frame(build_igmp_query(group=GROUP, sources=(OTHER,)), GROUP), 20.0)
    stack.poll(31.0)
    assert [m[2] for m in igmp_out(stack)] == [IgmpV3Report(records=(
        GroupRecord(record_type=RecordType.MODE_IS_INCLUDE, group=GROUP, sources=(OTHER,)),))]
    # A query for a group we are not in is ignored.
    stack.receive(query_frame(build_igmp_query(group=IPv4Address("239.9.9.9")),
                              IPv4Address("239.9.9.9")), 40.0)
    assert stack.igmp.next_deadline() is None
    sock.close(41.0)


def test_v2_querier_switches_to_v2_reports_and_leaves() -> None:
    stack = make_stack()
    stack.receive(query_frame(build_igmp_query(version=2, max_response_code=10)), 0.0)
    assert stack.igmp.version(1.0) == 2
    sock = join(stack, now=1.0)
    sent = igmp_out(stack)
    assert [(m[1], m[2]) for m in sent] == [(GROUP, IgmpGroupMessage(
        type=IgmpType.V2_MEMBERSHIP_REPORT, group=GROUP))]
    stack.poll(15.0)
    assert len(igmp_out(stack)) == 1  # the repeat, within v2's 10 s interval
    stack.receive(query_frame(build_igmp_query(version=2, max_response_code=10)), 20.0)
    # Another member's report for the group cancels our pending answer (RFC 2236 3).
    other = build_igmp_group_message(IgmpType.V2_MEMBERSHIP_REPORT, GROUP)
    stack.receive(query_frame(other, GROUP), 20.1)
    stack.poll(30.0)
    assert igmp_out(stack) == []
    assert stack.counters["igmp.report_suppressed"] == 1
    sock.close(31.0)
    assert [(m[1], m[2]) for m in igmp_out(stack)] == [(IPv4Address("224.0.0.2"), IgmpGroupMessage(
        type=IgmpType.V2_LEAVE_GROUP, group=GROUP))]
    assert stack.igmp.version(300.0) == 3  # the older querier timed out


def test_v1_querier_means_v1_reports_and_no_leave() -> None:
    stack = make_stack()
    stack.receive(query_frame(build_igmp_query(version=1)), 0.0)
    sock = join(stack, now=1.0)
    assert [m[2] for m in igmp_out(stack)] == [IgmpGroupMessage(
        type=IgmpType.V1_MEMBERSHIP_REPORT, group=GROUP)]
    sock.close(2.0)
    assert igmp_out(stack) == []


def test_source_filters_report_allow_and_block_and_filter_datagrams() -> None:
    stack = make_stack()
    sock = stack.udp_socket()
    sock.bind(("", 5353))
    sock.set_group_option("IP_ADD_SOURCE_MEMBERSHIP", mreq_source(GROUP, IP_PEER), 0.0)
    assert [m[2] for m in igmp_out(stack)] == [IgmpV3Report(records=(GroupRecord(
        record_type=RecordType.ALLOW_NEW_SOURCES, group=GROUP, sources=(IP_PEER,)),))]
    stack.receive(group_udp(b"from the peer"), 1.0)
    stack.receive(group_udp(b"from another", src=OTHER), 1.0)
    assert sock.recvfrom(100) == (b"from the peer", (str(IP_PEER), 5000))
    with pytest.raises(BlockingIOError):
        sock.recvfrom(100)
    assert stack.counters["ipv4.rx.multicast_filtered"] == 1
    # Dropping the last source leaves the group (INCLUDE {}).
    sock.set_group_option("IP_DROP_SOURCE_MEMBERSHIP", mreq_source(GROUP, IP_PEER), 2.0)
    assert [m[2] for m in igmp_out(stack)] == [IgmpV3Report(records=(GroupRecord(
        record_type=RecordType.BLOCK_OLD_SOURCES, group=GROUP, sources=(IP_PEER,)),))]
    assert not stack.igmp.listening(GROUP)


# -- UDP: broadcast ---------------------------------------------------------------------------

def test_broadcast_needs_so_broadcast_and_goes_to_the_broadcast_mac() -> None:
    stack = make_stack()
    sock = stack.udp_socket()
    for dst in (LIMITED, BROADCAST):
        with pytest.raises(PermissionError):
            sock.sendto(b"x", (str(dst), 9), 0.0)
        with pytest.raises(PermissionError):
            sock.connect((str(dst), 9), 0.0)
    sock.setsockopt("SO_BROADCAST", 1)
    sock.sendto(b"hello", ("255.255.255.255", 9), 0.0)
    sock.sendto(b"hello", ("10.0.2.255", 9), 0.0)
    sent = udp_out(stack)
    assert [(mac, ip.dst) for mac, ip, _ in sent] == [  # type: ignore[attr-defined]
        (b"\xff" * 6, LIMITED), (b"\xff" * 6, BROADCAST)]


def test_broadcast_reaches_any_and_broadcast_bound_sockets_only() -> None:
    stack = make_stack()
    anyone = stack.udp_socket()
    anyone.setsockopt("SO_REUSEADDR", 1)
    anyone.bind(("0.0.0.0", 6000))
    unicast = stack.udp_socket()
    unicast.setsockopt("SO_REUSEADDR", 1)
    unicast.bind((str(IP_A), 6000))
    directed = stack.udp_socket()
    directed.setsockopt("SO_REUSEADDR", 1)
    directed.bind(("10.0.2.255", 6000))
    frame = udp_frame(b"to all", dport=6000, dst=BROADCAST)
    stack.receive(Frame(b"\xff" * 6 + bytes(frame.data)[6:]), 0.0)
    assert anyone.recv(100) == b"to all" and directed.recv(100) == b"to all"
    with pytest.raises(BlockingIOError):
        unicast.recv(100)
    # Unicast to our address goes to the socket bound to it, only.
    stack.receive(udp_frame(b"just me", dport=6000), 0.0)
    assert unicast.recv(100) == b"just me"
    with pytest.raises(BlockingIOError):
        anyone.recv(100)
    assert stack.counters["icmp.tx.dest_unreachable"] == 0


def test_port_sharing_needs_reuseaddr_on_both() -> None:
    stack = make_stack()
    first = stack.udp_socket()
    first.bind(("", 7000))
    second = stack.udp_socket()
    second.setsockopt("SO_REUSEADDR", 1)
    with pytest.raises(OSError) as caught:
        second.bind(("", 7000))
    assert caught.value.errno == errno.EADDRINUSE


def test_our_broadcast_loops_back_to_our_own_listener() -> None:
    stack = make_stack()
    listener = stack.udp_socket()
    listener.bind(("", 6001))
    sender = stack.udp_socket()
    sender.setsockopt("SO_BROADCAST", 1)
    sender.sendto(b"loop", ("10.0.2.255", 6001), 0.0)
    stack.transmit()
    assert listener.recvfrom(100) == (b"loop", (str(IP_A), sender.getsockname()[1]))


# -- UDP: multicast ---------------------------------------------------------------------------

def test_group_datagrams_reach_every_member_and_stop_after_leave() -> None:
    stack = make_stack()
    members = []
    for _ in range(2):
        sock = stack.udp_socket()
        sock.setsockopt("SO_REUSEADDR", 1)
        sock.bind(("", 5353))
        sock.setsockopt("IP_MULTICAST_ALL", 0)
        members.append(sock)
    members[0].set_group_option("IP_ADD_MEMBERSHIP", mreq(GROUP), 0.0)
    members[1].set_group_option("IP_ADD_MEMBERSHIP", mreq(GROUP, IP_A), 0.0)
    stack.receive(group_udp(b"one"), 1.0)
    assert [m.recv(10) for m in members] == [b"one", b"one"]
    members[0].set_group_option("IP_DROP_MEMBERSHIP", mreq(GROUP), 2.0)
    stack.receive(group_udp(b"two"), 3.0)
    assert members[1].recv(10) == b"two"
    with pytest.raises(BlockingIOError):
        members[0].recv(10)  # IP_MULTICAST_ALL off: not joined, not delivered
    members[1].close(4.0)
    stack.receive(group_udp(b"three"), 5.0)
    assert stack.counters["eth.rx.not_for_us"] == 1  # the MAC filter dropped it
    members[0].close(6.0)


def test_multicast_send_ttl_loop_and_mac() -> None:
    stack = make_stack()
    member = join(stack)
    stack.transmit()
    sender = stack.udp_socket()
    sender.sendto(b"hi group", (str(GROUP), 5353), 0.0)
    [(mac, ip, data)] = udp_out(stack)
    assert mac == multicast_mac(GROUP) and ip.ttl == 1 and data == b"hi group"  # type: ignore[attr-defined]
    assert member.recv(100) == b"hi group"  # IP_MULTICAST_LOOP on by default
    sender.setsockopt("IP_MULTICAST_LOOP", 0)
    sender.setsockopt("IP_MULTICAST_TTL", 7)
    sender.sendto(b"again", (str(GROUP), 5353), 0.0)
    [(_mac, ip, _data)] = udp_out(stack)
    assert ip.ttl == 7  # type: ignore[attr-defined]
    with pytest.raises(BlockingIOError):
        member.recv(100)
    sender.setsockopt("IP_MULTICAST_TTL", 0)  # only looped, and loop is off: nothing
    sender.sendto(b"nowhere", (str(GROUP), 5353), 0.0)
    assert udp_out(stack) == []


@pytest.mark.parametrize(("option", "value", "code"), [
    ("IP_ADD_MEMBERSHIP", b"\xef\x01\x02", errno.EINVAL),  # short
    ("IP_ADD_MEMBERSHIP", mreq(OTHER), errno.EINVAL),  # not a group
    ("IP_ADD_MEMBERSHIP", mreq(GROUP, OTHER), errno.ENODEV),  # not our interface
    ("IP_ADD_MEMBERSHIP", GROUP.packed + bytes(4) + struct.pack("=i", 7), errno.ENODEV),
    ("IP_DROP_MEMBERSHIP", mreq(GROUP), errno.EADDRNOTAVAIL),
    ("IP_ADD_SOURCE_MEMBERSHIP", mreq(GROUP), errno.EINVAL),  # 8 bytes, not 12
    ("IP_DROP_SOURCE_MEMBERSHIP", mreq_source(GROUP, OTHER), errno.EADDRNOTAVAIL),
    ("IP_MULTICAST_IF", OTHER.packed, errno.EADDRNOTAVAIL),
    ("IPV6_JOIN_GROUP", bytes(20), errno.ENOPROTOOPT),  # on an AF_INET socket
])
def test_option_errors_are_linux_errnos(option: str, value: bytes, code: int) -> None:
    sock = make_stack().udp_socket()
    with pytest.raises(OSError) as caught:
        sock.set_group_option(option, value, 0.0)
    assert caught.value.errno == code


def test_option_limits_and_double_join() -> None:
    stack = make_stack()
    sock = stack.udp_socket()
    sock.set_group_option("IP_MULTICAST_IF", IP_A.packed, 0.0)
    sock.set_group_option("IP_MULTICAST_IF", struct.pack("=4s4si", bytes(4), bytes(4), 1), 0.0)
    sock.set_group_option("IP_ADD_MEMBERSHIP", mreq(GROUP), 0.0)
    with pytest.raises(OSError) as caught:
        sock.set_group_option("IP_ADD_MEMBERSHIP", mreq(GROUP), 0.0)
    assert caught.value.errno == errno.EADDRINUSE
    # An any-source member may not add a source filter on top (Linux: EINVAL once sources)
    sock.set_group_option("IP_BLOCK_SOURCE", mreq_source(GROUP, OTHER), 0.0)
    with pytest.raises(OSError) as caught:
        sock.set_group_option("IP_ADD_SOURCE_MEMBERSHIP", mreq_source(GROUP, OTHER), 0.0)
    assert caught.value.errno == errno.EINVAL
    for i in range(19):
        sock.set_group_option("IP_ADD_MEMBERSHIP", mreq(IPv4Address(f"239.0.0.{i + 1}")), 0.0)
    with pytest.raises(OSError) as caught:
        sock.set_group_option("IP_ADD_MEMBERSHIP", mreq(IPv4Address("239.0.1.1")), 0.0)
    assert caught.value.errno == errno.ENOBUFS
    with pytest.raises(OSError) as caught:
        sock.setsockopt("IP_MULTICAST_TTL", 256)
    assert caught.value.errno == errno.EINVAL
    sock.close(1.0)
    assert list(stack.igmp.groups) == [IPv4Address("224.0.0.1")]


def test_a_socket_bound_to_the_group_gets_only_that_group() -> None:
    stack = make_stack()
    bound = stack.udp_socket()
    bound.bind((str(GROUP), 5353))
    bound.set_group_option("IP_ADD_MEMBERSHIP", mreq(GROUP), 0.0)
    assert bound.getsockname() == (str(GROUP), 5353)
    stack.receive(udp_frame(b"unicast", dport=5353), 0.0)
    stack.receive(group_udp(b"group"), 0.0)
    assert bound.recv(100) == b"group"
    with pytest.raises(BlockingIOError):
        bound.recv(100)


def test_ipv6_join_group_goes_through_mld() -> None:
    from ipaddress import IPv6Address

    stack = make_stack(ip6="auto")
    sock = stack.udp_socket(int(socket.AF_INET6))
    group = IPv6Address("ff02::fb")
    sock.set_group_option("IPV6_JOIN_GROUP", group.packed + struct.pack("=i", 0), 0.0)
    assert stack.mld.listening(group)
    sock.set_group_option("IPV6_LEAVE_GROUP", group.packed + struct.pack("=i", 0), 1.0)
    assert not stack.mld.listening(group)
    assert MAC_A  # the unicast MAC is untouched by any of this
