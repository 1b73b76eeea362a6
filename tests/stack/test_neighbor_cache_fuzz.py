"""Random event sequences against the neighbour cache: nothing raises, nothing outgrows its
bounds, and the deadline it reports is never in the past once polled."""

from __future__ import annotations

import random
from ipaddress import IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.nd_actions import ResolutionFailed, SendQueued
from vipernet.stack.neighbor_cache import NeighborCache, NudState

ADDRS = [IPv6Address(f"fe80::{i}") for i in range(1, 13)]
LLAS = [None, bytes.fromhex("020000000001"), bytes.fromhex("020000000002"),
        bytes.fromhex("010000000003"), b"\x02"]

events = st.lists(st.tuples(
    st.sampled_from(["send", "na", "ns", "ra", "redirect", "confirm", "poll", "timers",
                     "flush"]),
    st.sampled_from(ADDRS), st.sampled_from(LLAS), st.booleans(), st.booleans(),
    st.booleans(), st.floats(min_value=0.0, max_value=8.0)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(0, 2**32))
def test_random_events_never_raise_or_outgrow_the_bounds(
        sequence: list[tuple[str, IPv6Address, bytes | None, bool, bool, bool, float]],
        seed: int) -> None:
    config = StackConfig(nd_cache_limit=6, nd_pending_limit=3, nd_queue_limit=2,
                         nd_gc_threshold=4)
    cache = NeighborCache(config, Counters(), random.Random(seed))
    now = 0.0
    queued: set[bytes] = set()
    for n, (kind, addr, lla, a, b, c, step) in enumerate(sequence):
        now += step
        if kind == "send":
            if cache.lookup_for_send(addr, now) is None:
                packet = (b"%d" % n, None)
                actions = cache.enqueue(addr, packet, now)
                queued.add(packet[0])
            else:
                actions = []
        elif kind == "na":
            actions = cache.na_received(addr, lla, solicited=a, override=b, router=c, now=now)
        elif kind == "ns":
            actions = cache.ns_received(addr, lla, now)
        elif kind == "ra":
            actions = cache.ra_received(addr, lla, now)
        elif kind == "redirect":
            actions = cache.redirect_received(addr, lla, target_is_router=a, now=now)
        elif kind == "confirm":
            cache.confirm(addr, now)
            actions = []
        elif kind == "timers":
            cache.set_timers(step * 10 if a else None, step / 4 if b else None)
            actions = []
        elif kind == "flush":
            actions = cache.flush()
        else:
            actions = cache.poll(now)
            deadline = cache.next_deadline()
            assert deadline is None or deadline > now
        for action in actions:
            if isinstance(action, SendQueued | ResolutionFailed):
                assert len(action.packets) <= config.nd_queue_limit
        entries = cache.entries(now)
        assert len(entries) <= config.nd_cache_limit
        pending = sum(1 for e in entries.values() if e.state is NudState.INCOMPLETE)
        assert pending == cache.pending <= config.nd_pending_limit
        for info in entries.values():
            assert info.queued <= config.nd_queue_limit
            assert (info.link_address is None) == (info.state is NudState.INCOMPLETE)
            assert info.queued == 0 or info.state is NudState.INCOMPLETE
