"""Suite-wide pytest options (pytest honours pytest_addoption only in start-up conftests)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seeds", type=int, default=None,
                     help="number of TCP simulation seeds (default 500, or $VIPERNET_TCP_SEEDS)")
