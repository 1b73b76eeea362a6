"""Suite-wide pytest options (pytest honours pytest_addoption only in the top conftest)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seeds",
        type=int,
        default=None,
        help="number of seeds for the lossy-link TCP simulation (default: 500, as in CI)",
    )


@pytest.fixture(scope="session")
def simulation_seeds(request: pytest.FixtureRequest) -> int:
    """How many seeded simulations to run: --seeds N, else $VIPERNET_TCP_SEEDS, else 500."""
    import os

    value = request.config.getoption("--seeds")
    if value is None:
        value = int(os.environ.get("VIPERNET_TCP_SEEDS", "500"))
    return int(value)
