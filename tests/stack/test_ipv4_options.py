"""IPv4 options: malformed ones are dropped with a Parameter Problem (as Linux), and an
echo reply carries the request's Record Route / Timestamp updated (RFC 1122 3.2.2.6)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from tests.stack.helpers import IP_A, IP_PEER, eth, ipv4s, make_stack, parse_icmp, teach_peer
from vipernet.stack import Stack
from vipernet.wire import IcmpEcho, IcmpType, IpProto, IPv4Header, build_icmp
from vipernet.wire.ipv4 import build_ipv4
from vipernet.wire.ipv4_options import RECORD_ROUTE, BadOption, check_options, echo_options

OUR = IP_A.packed


def _ready() -> Stack:
    stack = make_stack()
    teach_peer(stack)
    return stack


def _echo(options: bytes) -> bytes:
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=9, seq=1, payload=b"opt"))
    return build_ipv4(IPv4Header(src=IP_PEER, dst=IP_A, proto=IpProto.ICMP, ttl=64, ident=5,
                                 options=options), icmp)


@pytest.mark.parametrize(("options", "pointer"), [
    (bytes([7, 0, 4, 0]), 20),  # Record Route, length 0 (the black-box probe's packet)
    (bytes([7, 2, 4, 0]), 21),  # Record Route, length 2: no room for its pointer
    (bytes([7, 7, 3, 0, 0, 0, 0, 0]), 22),  # Record Route, pointer 3 < 4
    (bytes([7, 39, 4, 0]), 20),  # a length that runs past the header
    (bytes([1, 1, 1, 130]), 23),  # an option with no length octet at the very end
    (bytes([68, 3, 5, 0]), 21),  # Timestamp, length 3 < 4
    (bytes([131, 1, 0, 0]), 20),  # Loose Source Route, length 1
    (bytes([7, 9, 8]) + bytes(6), 22),  # Record Route: room for half an address only
    (bytes([7, 7, 8]) + bytes(4) + bytes([7, 7, 4]) + bytes(4), 27),  # a second one
    (bytes([68, 8, 5, 0]) + bytes(4) + bytes([68, 8, 5, 0]) + bytes(4), 28),  # ditto
    (bytes([131, 7, 4]) + bytes(4) + bytes([137, 7, 4]) + bytes(4), 27),  # two routes
    (bytes([68, 10, 9, 0]) + bytes(6), 22),  # Timestamp: half a stamp of room
    (bytes([68, 12, 9, 1]) + bytes(8), 22),  # flag 1 needs 8 octets, 4 are left
    (bytes([68, 8, 9, 0xF0]) + bytes(4), 23),  # full, and the overflow count is at 15
    (bytes([148, 3, 0, 0]), 21),  # Router Alert, length 3 < 4
])
def test_malformed_options_are_refused_pointing_at_the_bad_octet(options: bytes,
                                                                  pointer: int) -> None:
    with pytest.raises(BadOption) as bad:
        check_options(options)
    assert bad.value.pointer == pointer


@pytest.mark.parametrize("options", [
    b"", bytes([1, 1, 1, 0]), bytes([0, 99, 99, 99]),  # NOPs; EOL ends the list
    bytes([7, 7, 4, 0, 0, 0, 0, 0]),  # Record Route with room for one address
    bytes([68, 12, 5, 1]) + bytes(8),  # Timestamp, address + time
    bytes([148, 4, 0, 0]),  # Router Alert: unknown to us, well-formed
    bytes([7, 7, 8]) + bytes(4) + b"\0",  # Record Route, full: nothing to record
    bytes([68, 8, 9, 0xE0]) + bytes(4),  # Timestamp, full, overflow 14: one more fits
    bytes([68, 12, 5, 2]) + bytes(8),  # an undefined flag: Linux accepts it on receive
    bytes([68, 12, 13, 0xF3]) + bytes(8),  # prespecified, done: the overflow is not ours
    bytes([30, 2, 1, 1]),  # an unknown kind of the minimal length
])
def test_well_formed_options_pass(options: bytes) -> None:
    check_options(options)


def test_check_options_names_the_kinds_present() -> None:
    assert check_options(bytes([1, 7, 7, 4]) + bytes(4)) == {RECORD_ROUTE}


def test_a_malformed_option_is_dropped_counted_and_answered_with_parameter_problem() -> None:
    stack = _ready()
    stack.receive(eth(_echo(bytes([7, 0, 4, 0]))), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    problem = parse_icmp(body)
    assert (problem.type, problem.code) == (IcmpType.PARAMETER_PROBLEM, 0)
    assert body[4] == 20  # the pointer: the option's first octet
    assert ip.dst == IP_PEER
    assert stack.counters["ipv4.rx.bad_options"] == 1
    assert stack.counters["icmp.rx.echo_request"] == 0  # never answered as an echo
    assert stack.counters["icmp.tx.parameter_problem"] == 1


def test_an_option_running_past_the_header_gets_no_echo_reply() -> None:
    stack = _ready()
    stack.receive(eth(_echo(bytes([1, 7, 9, 4]))), 0.0)
    [(_ip, body)] = ipv4s(stack.transmit())
    assert body[0] == IcmpType.PARAMETER_PROBLEM and body[4] == 21


def test_an_echo_reply_records_our_address_in_the_record_route() -> None:
    stack = _ready()
    request = bytes([7, 11, 8]) + IP_PEER.packed + bytes(4) + b"\0"  # one hop recorded
    stack.receive(eth(_echo(request)), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    assert parse_icmp(body).type == IcmpType.ECHO_REPLY
    assert ip.options == bytes([7, 11, 12]) + IP_PEER.packed + OUR + b"\0"
    assert stack.counters["icmp.tx.echo_reply_with_options"] == 1


def test_echo_options_update_timestamps_and_count_overflow_without_truncating() -> None:
    stamps = bytes([68, 12, 5, 0]) + bytes(8)  # timestamps only, room for two
    once = echo_options(stamps, OUR, 0x80001234)
    assert once[:4] == bytes([68, 12, 9, 0]) and once[4:8] == (0x80001234).to_bytes(4, "big")
    full = bytes([68, 12, 13, 0]) + bytes(8)  # no room left: the overflow count rises
    assert echo_options(full, OUR, 1)[3] == 0x10
    with_address = bytes([68, 12, 5, 1]) + bytes(8)
    assert echo_options(with_address, OUR, 7)[4:12] == OUR + (7).to_bytes(4, "big")
    # Source routes and unknown options are not echoed; the result stays 4-aligned.
    assert echo_options(bytes([131, 7, 4]) + bytes(4) + b"\1", OUR, 1) == b""


def test_echo_options_timestamp_only_where_our_address_is_prespecified() -> None:
    ours = bytes([68, 20, 5, 3]) + OUR + bytes(4) + IP_PEER.packed + bytes(4)
    once = echo_options(ours, OUR, 9)
    assert once[2] == 13 and once[8:12] == (9).to_bytes(4, "big")
    others = bytes([68, 12, 5, 3]) + IP_PEER.packed + bytes(4)
    assert echo_options(others, OUR, 9) == others  # not ours to stamp: unchanged
    full = bytes([68, 12, 13, 3]) + IP_PEER.packed + bytes(4)
    assert echo_options(full, OUR, 9) == full  # and no overflow counted for it


def test_echo_options_leave_an_undefined_timestamp_flag_alone() -> None:
    odd = bytes([68, 12, 5, 2]) + bytes(8)
    assert echo_options(odd, OUR, 9) == odd


def test_echo_options_keep_both_record_route_and_timestamp() -> None:
    both = bytes([7, 7, 4]) + bytes(4) + bytes([68, 8, 5, 0]) + bytes(4) + b"\1"
    echoed = echo_options(both, OUR, 3)
    assert echoed[:7] == bytes([7, 7, 8]) + OUR
    assert echoed[7:15] == bytes([68, 8, 9, 0]) + (3).to_bytes(4, "big")
    assert echoed[15:] == b"\0"  # padded to 16 octets


def test_a_full_record_route_still_gets_an_echo_reply_with_it_unchanged() -> None:
    stack = _ready()
    full = bytes([7, 7, 8]) + IP_PEER.packed + b"\0"
    stack.receive(eth(_echo(full)), 0.0)
    [(ip, body)] = ipv4s(stack.transmit())
    assert parse_icmp(body).type == IcmpType.ECHO_REPLY
    assert ip.options == full


@pytest.mark.parametrize("kind", [131, 137])
def test_a_source_routed_packet_is_dropped_silently_as_linux_does(kind: int) -> None:
    stack = _ready()
    completed = bytes([kind, 7, 8]) + IP_PEER.packed + b"\1"  # we are its last hop
    stack.receive(eth(_echo(completed)), 0.0)
    assert ipv4s(stack.transmit()) == []
    assert stack.counters["ipv4.rx.source_route"] == 1
    assert stack.counters["icmp.rx.echo_request"] == 0


def test_no_parameter_problem_about_a_broadcast_or_an_icmp_error() -> None:
    stack = _ready()
    bad = bytes([7, 0, 4, 0])
    icmp = build_icmp(IcmpEcho(type=IcmpType.ECHO_REQUEST, ident=9, seq=1, payload=b"x"))
    broadcast = build_ipv4(IPv4Header(src=IP_PEER, dst=IPv4Address("10.0.2.255"),
                                      proto=IpProto.ICMP, options=bad), icmp)
    stack.receive(eth(broadcast), 0.0)
    unreachable = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + bytes(28)
    error = build_ipv4(IPv4Header(src=IP_PEER, dst=IP_A, proto=IpProto.ICMP, options=bad),
                       unreachable)
    stack.receive(eth(error), 0.0)
    fragment = build_ipv4(IPv4Header(src=IP_PEER, dst=IP_A, proto=IpProto.ICMP, options=bad,
                                     fragment_offset=8), b"later bytes")
    stack.receive(eth(fragment), 0.0)
    assert ipv4s(stack.transmit()) == []
    assert stack.counters["ipv4.rx.bad_options"] == 3
    assert stack.counters["icmp.tx.error_suppressed"] == 3


def test_parameter_problems_are_rate_limited() -> None:
    stack = _ready()
    burst = stack.config.icmp_error_burst
    for _ in range(burst + 5):
        stack.receive(eth(_echo(bytes([7, 0, 4, 0]))), 0.0)
    assert len(ipv4s(stack.transmit())) == burst
    assert stack.counters["icmp.tx.rate_limited"] == 5
