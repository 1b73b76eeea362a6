"""Options for the TCP tests.

``--seeds N`` (or the environment variable ``VIPERNET_TCP_SEEDS=N``) sets how many seeded
lossy-link simulations ``test_simulation.py`` runs (default 500).  The option itself is
declared in ``tests/conftest.py``: pytest honours ``pytest_addoption`` only in the conftest
files it loads at start-up, and that one is loaded however the run is started.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 500


def seed_count(config: pytest.Config) -> int:
    try:
        opt = config.getoption("seeds")
    except ValueError:
        opt = None
    if opt:
        return int(opt)
    return int(os.environ.get("VIPERNET_TCP_SEEDS", DEFAULT_SEEDS))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        metafunc.parametrize("sim_seed", range(seed_count(metafunc.config)))
