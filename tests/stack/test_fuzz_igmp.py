"""Hostile IGMP: random and mutated messages never make the codec raise anything but
WireError, never escape Stack.receive, and random sequences of socket joins, leaves,
source filters, queries of every version and time steps keep the layer consistent (its
state is the merge of the sockets', its MACs those of its groups, its deadline in the
future of the last poll) and still answering a general query afterwards."""

from __future__ import annotations

import contextlib
import math
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stack.helpers import IP_PEER, eth, ip_packet, make_stack
from vipernet.stack.igmp_layer import merge_filters
from vipernet.wire import parse_ethernet, parse_ipv4
from vipernet.wire.errors import WireError
from vipernet.wire.igmp import (
    GroupRecord,
    IgmpType,
    RecordType,
    build_igmp_group_message,
    build_igmp_query,
    build_igmp_v3_report,
    multicast_mac,
    parse_igmp,
)

GROUPS = [IPv4Address(f"239.0.0.{i}") for i in range(1, 5)] + [IPv4Address("224.0.0.251")]
SOURCES = [IPv4Address(f"10.0.2.{i}") for i in (2, 3, 4)]
ALL_SYSTEMS = IPv4Address("224.0.0.1")


def _valid_messages() -> st.SearchStrategy[bytes]:
    group = st.sampled_from(GROUPS)
    return st.one_of(
        st.builds(lambda v, g, code, srcs: build_igmp_query(
            version=v, group=g, max_response_code=code, sources=srcs if v == 3 else ()),
            st.sampled_from([1, 2, 3]), st.sampled_from([IPv4Address(0), *GROUPS]),
            st.integers(0, 255), st.lists(st.sampled_from(SOURCES), max_size=3).map(tuple)),
        st.builds(build_igmp_group_message,
                  st.sampled_from([IgmpType.V1_MEMBERSHIP_REPORT, IgmpType.V2_MEMBERSHIP_REPORT,
                                   IgmpType.V2_LEAVE_GROUP]), group),
        st.builds(lambda recs: build_igmp_v3_report(recs), st.lists(st.builds(
            lambda t, g, s: GroupRecord(record_type=t, group=g, sources=tuple(s)),
            st.sampled_from(list(RecordType)), group,
            st.lists(st.sampled_from(SOURCES), max_size=2)), max_size=3)),
    )


def _mutated(data: st.DataObject) -> bytes:
    raw = bytearray(data.draw(_valid_messages()))
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + data.draw(st.binary(max_size=8))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_codec_raises_only_wire_errors(data: st.DataObject) -> None:
    message = data.draw(st.one_of(st.binary(max_size=64), st.just(b"")))
    if data.draw(st.booleans()):
        message = _mutated(data)
    with contextlib.suppress(WireError):
        parse_igmp(message)
    with contextlib.suppress(WireError):
        parse_igmp(message, verify_checksum=False)


OPS = st.one_of(
    st.tuples(st.just("join"), st.integers(0, 2), st.sampled_from(GROUPS)),
    st.tuples(st.just("drop"), st.integers(0, 2), st.sampled_from(GROUPS)),
    st.tuples(st.sampled_from(["add_src", "drop_src", "block", "unblock"]), st.integers(0, 2),
              st.sampled_from(GROUPS), st.sampled_from(SOURCES)),
    st.tuples(st.just("close"), st.integers(0, 2)),
    st.tuples(st.just("time"), st.floats(0, 30)),
    st.tuples(st.just("frame"), st.data()),
)
_OPTION = {"join": "IP_ADD_MEMBERSHIP", "drop": "IP_DROP_MEMBERSHIP",
           "add_src": "IP_ADD_SOURCE_MEMBERSHIP", "drop_src": "IP_DROP_SOURCE_MEMBERSHIP",
           "block": "IP_BLOCK_SOURCE", "unblock": "IP_UNBLOCK_SOURCE"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=30))
def test_random_membership_histories_stay_consistent(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    stack = make_stack()
    socks = [stack.udp_socket() for _ in range(3)]
    now = 0.0
    for op in ops:
        kind = op[0]
        if kind == "time":
            now += op[1]
            stack.poll(now)
            due = stack.igmp.next_deadline()
            assert due is None or due > now  # every timer due was fired
        elif kind == "close":
            socks[op[1]].close(now)
            socks[op[1]] = stack.udp_socket()
        elif kind == "frame":
            dst = op[1].draw(st.sampled_from([ALL_SYSTEMS, *GROUPS]))
            message = _mutated(op[1])
            stack.receive(eth(ip_packet(message, proto=2, src=IP_PEER, dst=dst, ttl=1),
                              dst=multicast_mac(dst)), now)
        else:
            group = op[2]
            value = group.packed + bytes(4) + (op[3].packed if len(op) > 3 else b"")
            with contextlib.suppress(OSError):  # refusals are part of the game
                socks[op[1]].set_group_option(_OPTION[kind], value, now)
        stack.transmit()
        _check(stack, socks, now)
    # Still alive: a general query is answered with every group joined.
    stack.receive(eth(ip_packet(build_igmp_query(max_response_code=10), proto=2, src=IP_PEER,
                                dst=ALL_SYSTEMS, ttl=1), dst=multicast_mac(ALL_SYSTEMS)), now)
    stack.poll(now + 1.1)
    reported = set()
    for frame in stack.transmit():
        header, payload = parse_ethernet(bytes(frame.data))
        if header.ethertype == 0x0800:
            ip, body = parse_ipv4(payload)
            message = parse_igmp(body) if ip.proto == 2 else None
            # A fuzzed query may have put the interface in v1/v2 mode: its answers are
            # v1/v2 reports (one group each), not v3 reports with records.
            records = getattr(message, "records", None)
            if records is not None:
                reported |= {r.group for r in records
                             if r.record_type in (RecordType.MODE_IS_INCLUDE,
                                                  RecordType.MODE_IS_EXCLUDE)}
            elif message is not None:
                reported.add(message.group)  # type: ignore[union-attr]
    if stack.igmp.version(now + 1.1) == 3:
        assert reported == set(stack.igmp.groups) - {ALL_SYSTEMS}
    assert stack.counters["stack.rx.internal_error"] == 0
    assert stack.counters["stack.poll.internal_error"] == 0


def _check(stack, socks, now: float) -> None:  # type: ignore[no-untyped-def]
    groups = stack.igmp.groups
    assert groups[ALL_SYSTEMS].mode == 2
    for group in GROUPS:
        filters = [s._groups[group] for s in socks if group in s._groups]
        merged = merge_filters(filters) if filters else None
        state = groups.get(group)
        if merged is None or (merged.mode == 1 and not merged.sources):
            assert state is None
        else:
            assert state == merged
    assert stack.igmp.macs == frozenset(multicast_mac(g) for g in groups)
    due = stack.igmp.next_deadline()
    assert due is None or math.isfinite(due)
    for sock in socks:
        for f in sock._groups.values():
            assert len(f.sources) <= 10
