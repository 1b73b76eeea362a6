"""asyncio streams over a real netd (memory link to a peer stack with a TCP echo)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netd_rig import PEER, memory_netd
from vipernet.netclient import aio


@pytest.fixture
def netd_path(tmp_path: Path) -> Iterator[str]:
    with memory_netd(tmp_path, name="mem") as path:
        yield path


def test_streams_echo_lines_and_bulk_through_netd(netd_path: str) -> None:
    async def session() -> None:
        reader, writer = await aio.open_connection(PEER, 7, path=netd_path, timeout=10)
        assert writer.get_extra_info("peername") == (PEER, 7)
        writer.write(b"hello\nworld\n")
        await writer.drain()
        assert await reader.readline() == b"hello\n"
        assert await reader.readuntil(b"\n") == b"world\n"
        payload = random.randbytes(100_000)
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 20) == payload
        writer.write_eof()
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()

    asyncio.run(session())


def test_concurrent_connections_share_the_loop(netd_path: str) -> None:
    async def one(n: int) -> bytes:
        reader, writer = await aio.open_connection(PEER, 7, path=netd_path, timeout=10)
        writer.write(b"conn %d\n" % n)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await writer.wait_closed()
        return line

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one(n) for n in range(5)))

    assert asyncio.run(main()) == [b"conn %d\n" % n for n in range(5)]


def test_refused_connection_raises_connection_refused(netd_path: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(aio.open_connection(PEER, 1, path=netd_path, timeout=10))


def test_missing_netd_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="netd is not running"):
        asyncio.run(aio.open_connection(PEER, 7, path=str(tmp_path / "absent.sock")))
