"""Chaos through netd: concurrent bidirectional transfers while other clients die.

Issue 16's stall (a survivor's connection stopped for good after other clients were
SIGKILLed) was seen about once in ten runs of one such round on a loaded machine.  To
catch an event that happens once in 20 rounds with 95 % confidence takes
ln(0.05) / ln(1 - 1/20) = 59 rounds: CI runs :data:`DEFAULT_ROUNDS` = 60, each a different
seed, beside :data:`DEFAULT_LOAD` CPU-burning processes: the stall needs a starved echo
server (its window closes under netd's data).  On the commit before the fix, 60 rounds
without load passed, and with 3 burners two runs out of two stalled, at rounds 2 and 10.
For long soaks:

    VIPERNET_CHAOS_ROUNDS=2000 VIPERNET_CHAOS_LOAD=4 pytest tests/netd/test_chaos.py

(``VIPERNET_CHAOS_LOAD`` sets the number of burners, 0 for none; ``VIPERNET_CHAOS_SEED``
fixes the first seed, to replay a failed round.)
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.netd.chaos import ROLES, chaos_rig, plan

pytestmark = pytest.mark.testbed

DEFAULT_ROUNDS = 60
DEFAULT_LOAD = 3


def test_a_round_is_a_pure_function_of_its_seed() -> None:
    assert plan(1234) == plan(1234)
    seen = {c.role for seed in range(200) for c in plan(seed)}
    assert seen == set(ROLES)
    for seed in range(2000):
        clients = plan(seed)
        assert any(c.survivor for c in clients)
        # A survivor is never killed, and moves an amount it can finish in time.
        assert all(c.kill_at is None and c.bytes <= 40 << 20 for c in clients if c.survivor)


def test_survivors_finish_intact_and_netd_forgets_the_dead() -> None:
    rounds = int(os.environ.get("VIPERNET_CHAOS_ROUNDS", DEFAULT_ROUNDS))
    load = int(os.environ.get("VIPERNET_CHAOS_LOAD", DEFAULT_LOAD))
    first = int(os.environ.get("VIPERNET_CHAOS_SEED", random.randrange(1 << 30)))
    start = time.monotonic()
    moved = 0
    slowest = 0.0
    with chaos_rig(load=load) as rig:
        for seed in range(first, first + rounds):
            report = rig.round(seed)
            moved += report.moved
            slowest = max(slowest, report.seconds)
        with rig.client() as auditor:
            counters = auditor.info()["netd_counters"]
    print(f"\nchaos: {rounds} rounds from seed {first}, {moved / 1e6:.0f} MB each way "
          f"by survivors, slowest round {slowest:.1f} s, {time.monotonic() - start:.0f} s, "
          f"load {load}")
    assert counters.get("watchdog.stalls", 0) == 0, "a connection stalled on the way"
    assert counters.get("watchdog.lost_wakeups", 0) == 0, "netd lost a wake-up"
