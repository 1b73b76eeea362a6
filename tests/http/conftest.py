from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from vipernet.http import Client, Timeouts


def os_connect(host: str, port: int, timeout: float | None) -> Any:
    return socket.create_connection((host, port), timeout=timeout)


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(connect=os_connect, timeouts=Timeouts(connect=5, read=5)) as c:
        yield c
