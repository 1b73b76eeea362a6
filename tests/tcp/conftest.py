"""Options for the TCP tests.

``--seeds N`` (or the environment variable ``VIPERNET_TCP_SEEDS=N``) sets how many seeded
lossy-link simulations ``test_simulation.py`` runs (default 500).  pytest honours
``pytest_addoption`` only in conftest files it loads at start-up, so ``--seeds`` works when
the run names this directory (``pytest tests/tcp --seeds 5000``); from the repository root
use the environment variable.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 500


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seeds", type=int, default=None,
                     help="number of TCP simulation seeds (default 500, or $VIPERNET_TCP_SEEDS)")


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
