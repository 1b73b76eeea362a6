"""The IPv6 neighbour cache: every row of RFC 4861 appendix C, the 7.2.5 NA table, timers on
a manual clock, queue and table bounds."""

from __future__ import annotations

import random
from ipaddress import IPv6Address
from typing import Any

import pytest

from vipernet.errors import UsageError
from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.nd_actions import (
    ResolutionFailed,
    RouterFlagCleared,
    SendNeighborSolicitation,
    SendQueued,
)
from vipernet.stack.neighbor_cache import NeighborCache, NudState

PEER = IPv6Address("fe80::1")
SOLICITED = IPv6Address("ff02::1:ff00:1")
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
P1 = (b"packet-1", None)
P2 = (b"packet-2", None)


def make_cache(seed: int = 7, **kw: Any) -> tuple[NeighborCache, Counters]:
    counters = Counters()
    return NeighborCache(StackConfig(**kw), counters, random.Random(seed)), counters


def state(cache: NeighborCache, now: float, addr: IPv6Address = PEER) -> NudState | None:
    return cache.state_of(addr, now)


def incomplete(now: float = 0.0, **kw: Any) -> NeighborCache:
    cache, _ = make_cache(**kw)
    cache.enqueue(PEER, P1, now)
    return cache


def reachable(now: float = 0.0, **kw: Any) -> NeighborCache:
    cache = incomplete(now, **kw)
    cache.na_received(PEER, MAC1, solicited=True, override=False, router=False, now=now)
    return cache


def stale(now: float = 0.0, **kw: Any) -> NeighborCache:
    cache, _ = make_cache(**kw)
    cache.ns_received(PEER, MAC1, now)
    return cache


def delay(now: float = 0.0, **kw: Any) -> NeighborCache:
    cache = stale(now, **kw)
    assert cache.lookup_for_send(PEER, now) == MAC1
    return cache


def probe(now: float = 0.0, **kw: Any) -> NeighborCache:
    cache = delay(now, **kw)
    cache.poll(now + 5.0)
    return cache


NOT_INCOMPLETE = [(reachable, NudState.REACHABLE), (stale, NudState.STALE),
                  (delay, NudState.DELAY), (probe, NudState.PROBE)]


# -- no entry ----------------------------------------------------------------------------------

def test_no_entry_packet_to_send_creates_incomplete_and_sends_multicast_ns() -> None:
    cache, _ = make_cache()
    assert cache.lookup_for_send(PEER, 0.0) is None
    actions = cache.enqueue(PEER, P1, 0.0)
    assert actions == [SendNeighborSolicitation(target=PEER, destination=SOLICITED,
                                                include_source_lla=True)]
    assert state(cache, 0.0) is NudState.INCOMPLETE
    assert cache.next_deadline() == 1.0


@pytest.mark.parametrize("learn", ["ns", "rs", "ra", "redirect"])
def test_no_entry_ns_rs_ra_redirect_with_lla_creates_stale(learn: str) -> None:
    cache, _ = make_cache()
    if learn == "redirect":
        cache.redirect_received(PEER, MAC1, target_is_router=True, now=0.0)
    else:
        getattr(cache, f"{learn}_received")(PEER, MAC1, 0.0)
    [info] = cache.entries(0.0).values()
    assert info.state is NudState.STALE and info.link_address == MAC1
    assert info.is_router == (learn in ("ra", "redirect"))


def test_no_entry_na_is_ignored() -> None:
    cache, counters = make_cache()
    assert cache.na_received(PEER, MAC1, solicited=True, override=True, router=False,
                             now=0.0) == []
    assert len(cache) == 0 and counters["nd.na.no_entry"] == 1


def test_no_entry_ns_without_lla_creates_nothing() -> None:
    cache, _ = make_cache()
    cache.ns_received(PEER, None, 0.0)
    assert len(cache) == 0


# -- INCOMPLETE ------------------------------------------------------------------------------------

def test_incomplete_retransmits_every_retrans_timer_then_fails_with_the_queue() -> None:
    cache = incomplete()
    cache.enqueue(PEER, P2, 0.2)
    assert cache.poll(0.99) == []
    for t in (1.0, 2.0):
        [ns] = cache.poll(t)
        assert isinstance(ns, SendNeighborSolicitation) and ns.destination == SOLICITED
        assert cache.next_deadline() == t + 1.0
    [failed] = cache.poll(3.0)
    assert failed == ResolutionFailed(address=PEER, packets=(P1, P2), is_router=False)
    assert len(cache) == 0 and cache.pending == 0 and cache.next_deadline() is None


def test_incomplete_na_solicited_becomes_reachable_and_sends_queue() -> None:
    cache = incomplete()
    actions = cache.na_received(PEER, MAC1, solicited=True, override=False, router=True,
                                now=0.5)
    assert actions == [SendQueued(address=PEER, link_address=MAC1, packets=(P1,))]
    assert state(cache, 0.5) is NudState.REACHABLE
    assert cache.is_router(PEER) and cache.pending == 0


@pytest.mark.parametrize("override", [False, True])
def test_incomplete_na_unsolicited_records_lla_becomes_stale_then_delay_as_queue_goes(
        override: bool) -> None:
    cache = incomplete()
    [sent] = cache.na_received(PEER, MAC1, solicited=False, override=override, router=False,
                               now=0.5)
    assert isinstance(sent, SendQueued)
    # 7.3.3: the queued packets were just sent to a STALE entry, so DELAY starts.
    assert state(cache, 0.5) is NudState.DELAY


def test_incomplete_na_without_tlla_is_dropped() -> None:
    cache = incomplete()
    assert cache.na_received(PEER, None, solicited=True, override=True, router=False,
                             now=0.5) == []
    assert state(cache, 0.5) is NudState.INCOMPLETE


@pytest.mark.parametrize("learn", ["ns", "ra"])
def test_incomplete_ns_or_ra_with_lla_records_it_and_sends_queue(learn: str) -> None:
    cache = incomplete()
    [sent] = getattr(cache, f"{learn}_received")(PEER, MAC1, 0.5)
    assert sent == SendQueued(address=PEER, link_address=MAC1, packets=(P1,))
    assert state(cache, 0.5) is NudState.DELAY


def test_incomplete_ns_without_lla_changes_nothing() -> None:
    cache = incomplete()
    assert cache.ns_received(PEER, None, 0.5) == []
    assert state(cache, 0.5) is NudState.INCOMPLETE


def test_incomplete_upper_layer_confirmation_changes_nothing() -> None:
    cache = incomplete()
    cache.confirm(PEER, 0.5)
    assert state(cache, 0.5) is NudState.INCOMPLETE


# -- !INCOMPLETE and NA (RFC 4861 7.2.5 II and I) ------------------------------------------------

@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
@pytest.mark.parametrize("override", [False, True])
@pytest.mark.parametrize("tlla", [MAC1, None])
def test_not_incomplete_na_solicited_same_or_no_lla_becomes_reachable(
        make: Any, before: NudState, override: bool, tlla: bytes | None) -> None:
    cache = make(0.0)
    cache.na_received(PEER, tlla, solicited=True, override=override, router=False, now=6.0)
    assert state(cache, 6.0) is NudState.REACHABLE
    assert cache.entries(6.0)[PEER].link_address == MAC1


@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
def test_not_incomplete_na_solicited_override_different_lla_records_it_reachable(
        make: Any, before: NudState) -> None:
    cache = make(0.0)
    cache.na_received(PEER, MAC2, solicited=True, override=True, router=False, now=6.0)
    info = cache.entries(6.0)[PEER]
    assert (info.state, info.link_address) == (NudState.REACHABLE, MAC2)


@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
def test_not_incomplete_na_unsolicited_override_different_lla_records_it_stale(
        make: Any, before: NudState) -> None:
    cache = make(0.0)
    cache.na_received(PEER, MAC2, solicited=False, override=True, router=False, now=6.0)
    info = cache.entries(6.0)[PEER]
    assert (info.state, info.link_address) == (NudState.STALE, MAC2)


@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
@pytest.mark.parametrize("override", [False, True])
@pytest.mark.parametrize("tlla", [MAC1, None])
def test_not_incomplete_na_unsolicited_same_or_no_lla_leaves_state_updates_router_flag(
        make: Any, before: NudState, override: bool, tlla: bytes | None) -> None:
    cache = make(0.0)
    cache.na_received(PEER, tlla, solicited=False, override=override, router=True, now=0.0)
    assert state(cache, 0.0) is before
    assert cache.is_router(PEER)


def test_reachable_na_no_override_different_lla_becomes_stale_keeping_the_old_lla() -> None:
    cache = reachable()
    cache.na_received(PEER, MAC2, solicited=True, override=False, router=True, now=1.0)
    info = cache.entries(1.0)[PEER]
    assert (info.state, info.link_address, info.is_router) == (NudState.STALE, MAC1, False)


@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE[1:])
@pytest.mark.parametrize("solicited", [False, True])
def test_stale_delay_probe_na_no_override_different_lla_is_ignored(
        make: Any, before: NudState, solicited: bool) -> None:
    cache = make(0.0)
    cache.na_received(PEER, MAC2, solicited=solicited, override=False, router=True, now=6.0)
    info = cache.entries(6.0)[PEER]
    assert (info.state, info.link_address, info.is_router) == (before, MAC1, False)


def test_na_clearing_the_router_flag_tells_the_caller() -> None:
    cache, _ = make_cache()
    cache.ra_received(PEER, MAC1, 0.0)
    actions = cache.na_received(PEER, MAC1, solicited=False, override=False, router=False,
                                now=1.0)
    assert actions == [RouterFlagCleared(address=PEER)]
    assert not cache.is_router(PEER)


def test_na_with_a_multicast_tlla_is_dropped() -> None:
    cache, counters = make_cache()
    cache.enqueue(PEER, P1, 0.0)
    cache.na_received(PEER, bytes.fromhex("333300000001"), solicited=True, override=True,
                      router=False, now=0.1)
    assert state(cache, 0.1) is NudState.INCOMPLETE and counters["nd.na.bad_lla"] == 1


# -- !INCOMPLETE and NS/RS/RA/Redirect (7.2.3, 6.3.4, 8.3) ----------------------------------------

@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
def test_not_incomplete_ns_with_different_lla_updates_it_and_becomes_stale(
        make: Any, before: NudState) -> None:
    cache = make(0.0)
    cache.ns_received(PEER, MAC2, 6.0)
    info = cache.entries(6.0)[PEER]
    assert (info.state, info.link_address) == (NudState.STALE, MAC2)


@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
def test_not_incomplete_ns_with_same_lla_changes_nothing(make: Any, before: NudState) -> None:
    cache = make(0.0)
    cache.ns_received(PEER, MAC1, 0.0)
    assert state(cache, 0.0) is before


def test_ns_never_changes_the_router_flag_but_ra_and_redirect_set_it() -> None:
    cache, _ = make_cache()
    cache.ra_received(PEER, None, 0.0)
    assert len(cache) == 0  # an RA without an option creates nothing
    cache.ra_received(PEER, MAC1, 0.0)
    cache.ns_received(PEER, MAC2, 1.0)
    assert cache.is_router(PEER)
    other = IPv6Address("fe80::2")
    cache.ns_received(other, MAC2, 1.0)
    assert not cache.is_router(other)
    cache.redirect_received(other, None, target_is_router=True, now=1.0)
    assert cache.is_router(other)


def test_multicast_or_unspecified_sources_are_never_learnt() -> None:
    cache, counters = make_cache()
    cache.ns_received(IPv6Address("::"), MAC1, 0.0)
    cache.ns_received(IPv6Address("ff02::1"), MAC1, 0.0)
    cache.ns_received(PEER, bytes.fromhex("010000000001"), 0.0)
    assert len(cache) == 0
    assert counters["nd.learn.bad_source"] == 2 and counters["nd.learn.bad_lla"] == 1


# -- upper layer, sending, timers ------------------------------------------------------------------

@pytest.mark.parametrize(("make", "before"), NOT_INCOMPLETE)
def test_not_incomplete_upper_layer_confirmation_becomes_reachable(
        make: Any, before: NudState) -> None:
    cache = make(0.0)
    cache.confirm(PEER, 6.0)
    assert state(cache, 6.0) is NudState.REACHABLE
    assert cache.next_deadline() is None


def test_reachable_times_out_to_stale_after_reachable_time() -> None:
    cache = reachable()
    limit = cache.reachable_time
    assert 15.0 <= limit <= 45.0
    assert cache.next_deadline() is None  # no wake-up just to age an entry
    assert state(cache, limit - 0.01) is NudState.REACHABLE
    assert state(cache, limit) is NudState.STALE


def test_reachable_sending_keeps_reachable() -> None:
    cache = reachable()
    assert cache.lookup_for_send(PEER, 1.0) == MAC1
    assert state(cache, 1.0) is NudState.REACHABLE


def test_stale_sending_a_packet_starts_delay() -> None:
    cache = stale()
    assert cache.next_deadline() is None
    assert cache.lookup_for_send(PEER, 2.0) == MAC1
    assert state(cache, 2.0) is NudState.DELAY
    assert cache.next_deadline() == 7.0


def test_reachable_timed_out_then_sending_goes_straight_to_delay() -> None:
    cache = reachable()
    later = cache.reachable_time + 1.0
    assert cache.lookup_for_send(PEER, later) == MAC1
    assert state(cache, later) is NudState.DELAY


def test_delay_timeout_sends_unicast_probe_and_enters_probe() -> None:
    cache = delay()
    assert cache.poll(4.99) == []
    [ns] = cache.poll(5.0)
    assert ns == SendNeighborSolicitation(target=PEER, destination=PEER,
                                          include_source_lla=True, link_destination=MAC1)
    assert state(cache, 5.0) is NudState.PROBE
    assert cache.lookup_for_send(PEER, 5.0) == MAC1  # still usable while probing


def test_probe_retransmits_then_deletes_the_entry() -> None:
    cache = probe()
    for t in (6.0, 7.0):
        [ns] = cache.poll(t)
        assert isinstance(ns, SendNeighborSolicitation) and ns.link_destination == MAC1
    [failed] = cache.poll(8.0)
    assert failed == ResolutionFailed(address=PEER, packets=(), is_router=False)
    assert len(cache) == 0


def test_probe_answered_by_solicited_na_is_reachable_again() -> None:
    cache = probe()
    cache.na_received(PEER, MAC1, solicited=True, override=False, router=False, now=5.5)
    assert state(cache, 5.5) is NudState.REACHABLE
    assert cache.poll(10.0) == []


def test_reachable_time_is_drawn_from_the_injected_rng_between_half_and_one_and_a_half() -> None:
    times = {make_cache(seed)[0].reachable_time for seed in range(50)}
    assert all(15.0 <= t <= 45.0 for t in times) and len(times) > 40
    assert make_cache(3)[0].reachable_time == make_cache(3)[0].reachable_time


def test_set_timers_redraws_reachable_time_and_changes_retransmissions() -> None:
    cache, _ = make_cache()
    cache.set_timers(base_reachable=10.0, retrans=0.5)
    assert 5.0 <= cache.reachable_time <= 15.0
    cache.enqueue(PEER, P1, 0.0)
    assert cache.next_deadline() == 0.5
    cache.set_timers(base_reachable=1e9, retrans=0.0)  # clamped; 0 means unspecified
    assert cache.reachable_time <= 3600 * 1.5 and cache.retrans_timer == 0.5


def test_reachable_time_is_redrawn_every_few_hours() -> None:
    cache, _ = make_cache()
    first = cache.reachable_time
    cache.poll(0.0)
    cache.poll(7200.0)
    assert cache.reachable_time != first


# -- bounds ---------------------------------------------------------------------------------------

def test_queue_keeps_the_newest_packets_and_counts_the_dropped() -> None:
    cache, counters = make_cache(nd_queue_limit=2)
    for i in range(5):
        cache.enqueue(PEER, (b"%d" % i, None), 0.0)
    [sent] = cache.na_received(PEER, MAC1, solicited=True, override=True, router=False, now=0.1)
    assert isinstance(sent, SendQueued)
    assert sent.packets == ((b"3", None), (b"4", None))
    assert counters["nd.queue.overflow"] == 3


def test_too_many_destinations_resolving_drops_the_packet() -> None:
    cache, counters = make_cache(nd_pending_limit=2)
    for i in range(3):
        cache.enqueue(IPv6Address(f"fe80::{i + 1}"), P1, 0.0)
    assert cache.pending == 2 and len(cache) == 2
    assert counters["nd.queue.too_many_destinations"] == 1


def test_enqueue_for_a_resolved_entry_hands_the_packet_back() -> None:
    cache = stale()
    assert cache.enqueue(PEER, P1, 1.0) == [SendQueued(address=PEER, link_address=MAC1,
                                                       packets=(P1,))]
    assert state(cache, 1.0) is NudState.DELAY


def test_enqueue_refuses_multicast() -> None:
    cache, _ = make_cache()
    with pytest.raises(UsageError):
        cache.enqueue(IPv6Address("ff02::1"), P1, 0.0)


def test_full_table_evicts_stale_non_routers_first_then_oldest() -> None:
    cache, counters = make_cache(nd_cache_limit=3)
    router, busy, idle = (IPv6Address(f"fe80::{i}") for i in (1, 2, 3))
    cache.ra_received(router, MAC1, 0.0)
    cache.ns_received(busy, MAC1, 0.0)
    cache.confirm(busy, 0.0)
    cache.ns_received(idle, MAC1, 1.0)
    cache.ns_received(IPv6Address("fe80::4"), MAC1, 2.0)
    assert idle not in cache.entries(2.0) and router in cache.entries(2.0)
    cache.ns_received(IPv6Address("fe80::5"), MAC1, 3.0)
    assert IPv6Address("fe80::4") not in cache.entries(3.0)  # the STALE non-router
    cache.confirm(IPv6Address("fe80::5"), 3.0)
    cache.ns_received(IPv6Address("fe80::6"), MAC1, 4.0)
    assert router not in cache.entries(4.0)  # STALE before REACHABLE, whatever the role
    assert busy in cache.entries(4.0) and counters["nd.cache.evicted"] == 3


def test_table_full_of_unresolved_entries_refuses_new_ones() -> None:
    cache, counters = make_cache(nd_cache_limit=2, nd_pending_limit=8)
    for i in range(2):
        cache.enqueue(IPv6Address(f"fe80::{i + 1}"), P1, 0.0)
    assert cache.enqueue(IPv6Address("fe80::9"), P1, 0.0) == []
    cache.ns_received(IPv6Address("fe80::a"), MAC1, 0.0)
    assert len(cache) == 2
    assert counters["nd.queue.table_full"] == 1 and counters["nd.learn.table_full"] == 1


def test_idle_stale_entries_above_gc_threshold_are_collected() -> None:
    cache, counters = make_cache(nd_gc_threshold=2, nd_gc_stale_time=60.0)
    for i in range(5):
        cache.ns_received(IPv6Address(f"fe80::{i + 1}"), MAC1, float(i))
    cache.poll(30.0)
    assert len(cache) == 5
    cache.poll(63.0)  # entries 1..4 idle >= 60 s; only 3 needed to reach the threshold
    assert len(cache) == 2 and counters["nd.cache.collected"] == 3
    assert set(cache.entries(63.0)) == {IPv6Address("fe80::4"), IPv6Address("fe80::5")}


def test_flush_returns_queued_packets_as_failed() -> None:
    cache = incomplete()
    cache.ns_received(IPv6Address("fe80::2"), MAC1, 0.0)
    assert cache.flush() == [ResolutionFailed(address=PEER, packets=(P1,), is_router=False)]
    assert len(cache) == 0 and cache.pending == 0 and cache.next_deadline() is None


def test_entries_show_state_names_for_display() -> None:
    cache = delay()
    info = cache.entries(0.0)[PEER]
    assert str(info.state) == "DELAY" and info.queued == 0
    assert cache.is_probably_reachable(PEER, 0.0)
    assert not incomplete().is_probably_reachable(PEER, 0.0)
