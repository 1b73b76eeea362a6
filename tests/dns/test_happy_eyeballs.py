"""The sans-IO Happy Eyeballs (RFC 8305) race: resolution delay, interleaving, pacing."""

from __future__ import annotations

import errno

import pytest

from vipernet.dns.happy_eyeballs import (
    Action,
    CancelAttempt,
    Connected,
    Failed,
    HappyEyeballs,
    StartAttempt,
    Wait,
)
from vipernet.stack.socket_api import AF_INET, AF_INET6

V6 = ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
V4 = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def drain(he: HappyEyeballs, now: float) -> list[Action]:
    """Call next_action the way a caller does: until Wait, Connected or Failed."""
    actions: list[Action] = []
    while True:
        action = he.next_action(now)
        actions.append(action)
        if isinstance(action, Wait | Connected | Failed):
            return actions


def until(action: Action) -> float | None:
    assert isinstance(action, Wait), action
    return action.until


def starts(actions: list[Action]) -> list[StartAttempt]:
    return [a for a in actions if isinstance(a, StartAttempt)]


def test_aaaa_first_starts_ipv6_at_once() -> None:
    he = HappyEyeballs(0.0)
    assert drain(he, 0.0) == [Wait(None)]
    he.addresses_resolved(AF_INET6, V6[:1], 0.01)
    actions = drain(he, 0.01)
    assert actions[0] == StartAttempt(1, AF_INET6, V6[0])
    assert actions[-1] == Wait(None)  # no more addresses; wait for A or the outcome


def test_a_first_waits_resolution_delay_then_ipv4() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET, V4[:1], 0.01)
    (wait,) = drain(he, 0.01)
    deadline = until(wait)
    assert deadline == pytest.approx(0.06)
    assert drain(he, 0.059) == [wait]
    assert deadline is not None
    actions = drain(he, deadline)  # the caller sleeps until the deadline it was given
    assert actions[0] == StartAttempt(1, AF_INET, V4[0])


def test_aaaa_within_resolution_delay_goes_first() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET, V4[:2], 0.01)
    (wait,) = drain(he, 0.01)
    assert until(wait) == pytest.approx(0.06)
    he.addresses_resolved(AF_INET6, V6[:2], 0.03)
    actions = drain(he, 0.03)
    assert actions[0] == StartAttempt(1, AF_INET6, V6[0])
    assert until(actions[1]) == pytest.approx(0.28)


def test_preferred_lookup_failure_ends_resolution_delay() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET, V4[:1], 0.01)
    he.resolution_failed(AF_INET6, OSError(errno.ENOENT, "no AAAA"), 0.02)
    assert starts(drain(he, 0.02)) == [StartAttempt(1, AF_INET, V4[0])]


def race_order(he: HappyEyeballs, count: int) -> list[tuple[int, str]]:
    """Start ``count`` attempts by failing each one, returning their (family, address)."""
    order: list[tuple[int, str]] = []
    now = 1.0
    for _ in range(count):
        (start,) = starts(drain(he, now))
        order.append((start.family, start.address))
        he.attempt_failed(start.attempt_id, OSError(errno.ECONNREFUSED, "refused"), now)
        now += 0.01
    return order


def test_interleaves_families_v6_first() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6, 0.0)
    he.addresses_resolved(AF_INET, V4, 0.0)
    assert race_order(he, 6) == [
        (AF_INET6, V6[0]),
        (AF_INET, V4[0]),
        (AF_INET6, V6[1]),
        (AF_INET, V4[1]),
        (AF_INET6, V6[2]),
        (AF_INET, V4[2]),
    ]


def test_first_family_count_puts_more_preferred_at_head() -> None:
    he = HappyEyeballs(0.0, first_family_count=2)
    he.addresses_resolved(AF_INET6, V6, 0.0)
    he.addresses_resolved(AF_INET, V4, 0.0)
    families = [family for family, _ in race_order(he, 6)]
    assert families == [AF_INET6, AF_INET6, AF_INET, AF_INET6, AF_INET, AF_INET]


def test_prefer_ipv4_interleaves_v4_first() -> None:
    he = HappyEyeballs(0.0, prefer_ipv6=False)
    he.addresses_resolved(AF_INET6, V6[:2], 0.0)
    he.addresses_resolved(AF_INET, V4[:2], 0.0)
    families = [family for family, _ in race_order(he, 4)]
    assert families == [AF_INET, AF_INET6, AF_INET, AF_INET6]


def test_attempt_delay_paces_starts() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6, 0.0)
    he.addresses_resolved(AF_INET, V4[:1], 0.0)
    assert drain(he, 0.0) == [StartAttempt(1, AF_INET6, V6[0]), Wait(0.25)]
    assert drain(he, 0.2) == [Wait(0.25)]
    assert drain(he, 0.25) == [StartAttempt(2, AF_INET, V4[0]), Wait(0.5)]
    assert drain(he, 0.5) == [StartAttempt(3, AF_INET6, V6[1]), Wait(0.75)]


def test_failure_starts_next_at_once() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6[:2], 0.0)
    he.addresses_resolved(AF_INET, [], 0.0)
    drain(he, 0.0)
    he.attempt_failed(1, OSError(errno.ENETUNREACH, "unreachable"), 0.03)
    assert drain(he, 0.03) == [StartAttempt(2, AF_INET6, V6[1]), Wait(None)]


def test_failure_with_another_in_flight_keeps_pacing() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6, 0.0)
    he.addresses_resolved(AF_INET, [], 0.0)
    drain(he, 0.0)
    drain(he, 0.25)  # attempt 2 starts
    he.attempt_failed(1, OSError(errno.ETIMEDOUT, "timed out"), 0.3)
    assert drain(he, 0.3) == [Wait(0.5)]


def test_success_cancels_others_and_stops() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6, 0.0)
    he.addresses_resolved(AF_INET, V4, 0.0)
    drain(he, 0.0)
    drain(he, 0.25)
    drain(he, 0.5)  # attempts 1, 2, 3 in flight
    he.attempt_succeeded(2, 0.6)
    assert drain(he, 0.6) == [
        CancelAttempt(1),
        CancelAttempt(3),
        Connected(2, AF_INET, V4[0]),
    ]
    # Nothing new starts afterwards, whatever else is reported.
    he.attempt_failed(1, OSError(errno.ECANCELED, "cancelled"), 0.7)
    he.attempt_succeeded(3, 0.7)
    he.addresses_resolved(AF_INET6, ["2001:db8::99"], 0.7)
    assert drain(he, 5.0) == [Connected(2, AF_INET, V4[0])]


def test_all_attempts_fail_reports_last_error() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6[:1], 0.0)
    he.addresses_resolved(AF_INET, V4[:1], 0.0)
    drain(he, 0.0)
    drain(he, 0.25)
    first = OSError(errno.ENETUNREACH, "v6 unreachable")
    last = OSError(errno.ECONNREFUSED, "v4 refused")
    he.attempt_failed(1, first, 0.3)
    assert drain(he, 0.3) == [Wait(None)]
    he.attempt_failed(2, last, 0.4)
    (action,) = drain(he, 0.4)
    assert isinstance(action, Failed)
    assert action.error is last


def test_failed_waits_for_outstanding_lookup() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, V6[:1], 0.0)
    drain(he, 0.0)
    he.attempt_failed(1, OSError(errno.ENETUNREACH, "unreachable"), 0.1)
    assert drain(he, 0.1) == [Wait(None)]
    he.addresses_resolved(AF_INET, V4[:1], 0.2)
    assert starts(drain(he, 0.2)) == [StartAttempt(2, AF_INET, V4[0])]


def test_both_lookups_fail() -> None:
    he = HappyEyeballs(0.0)
    error = OSError(errno.ENOENT, "no such name")
    he.resolution_failed(AF_INET6, error, 0.01)
    assert drain(he, 0.01) == [Wait(None)]
    he.resolution_failed(AF_INET, error, 0.02)
    (action,) = drain(he, 0.02)
    assert isinstance(action, Failed)
    assert action.error is error


def test_no_addresses_at_all_is_host_unreachable() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, [], 0.01)
    he.addresses_resolved(AF_INET, [], 0.02)
    (action,) = drain(he, 0.02)
    assert isinstance(action, Failed)
    assert action.error.errno == errno.EHOSTUNREACH


@pytest.mark.parametrize(
    ("requested", "used"), [(0.0, 0.1), (0.05, 0.1), (0.25, 0.25), (1.5, 1.5), (10.0, 2.0)]
)
def test_attempt_delay_is_clamped(requested: float, used: float) -> None:
    he = HappyEyeballs(0.0, attempt_delay=requested)
    assert he.attempt_delay == used
    he.addresses_resolved(AF_INET6, V6[:2], 0.0)
    assert drain(he, 0.0)[-1] == Wait(used)


def test_duplicates_removed() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET6, [V6[0], V6[0], "2001:DB8:0::1"], 0.0)
    he.addresses_resolved(AF_INET, [V4[0], V4[0]], 0.0)
    he.addresses_resolved(AF_INET, [V4[0]], 0.0)  # a repeated answer adds nothing
    assert race_order(he, 2) == [(AF_INET6, V6[0]), (AF_INET, V4[0])]
    (action,) = drain(he, 2.0)
    assert isinstance(action, Failed)


def test_late_addresses_merged_into_interleaving() -> None:
    he = HappyEyeballs(0.0)
    he.addresses_resolved(AF_INET, V4, 0.0)
    assert starts(drain(he, 0.05)) == [StartAttempt(1, AF_INET, V4[0])]
    # AAAA arrives after the Resolution Delay: IPv6 takes the next slot, then alternation.
    he.addresses_resolved(AF_INET6, V6[:2], 0.1)
    (wait,) = drain(he, 0.1)
    assert until(wait) == pytest.approx(0.3)
    got = [starts(drain(he, t))[0] for t in (0.3, 0.55, 0.8, 1.05)]
    assert [(s.family, s.address) for s in got] == [
        (AF_INET6, V6[0]),
        (AF_INET, V4[1]),
        (AF_INET6, V6[1]),
        (AF_INET, V4[2]),
    ]
    assert drain(he, 1.3) == [Wait(None)]


def test_bad_input_rejected() -> None:
    he = HappyEyeballs(0.0)
    with pytest.raises(ValueError):
        he.addresses_resolved(99, ["192.0.2.1"], 0.0)
    with pytest.raises(ValueError):
        he.addresses_resolved(AF_INET, ["2001:db8::1"], 0.0)
    with pytest.raises(ValueError):
        he.attempt_failed(7, OSError(errno.ECONNREFUSED, "refused"), 0.0)
    with pytest.raises(ValueError):
        HappyEyeballs(0.0, first_family_count=0)
