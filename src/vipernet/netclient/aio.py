"""asyncio streams over the vipernet stack: ``reader, writer = await open_connection(host, port)``.

A vipernet TCP socket has a real descriptor (netd's fd data plane), so plain asyncio works
on it: this module only makes the socket, connects it without blocking the loop, and hands
it to :func:`asyncio.open_connection`.  The reader and writer are asyncio's own
(:class:`asyncio.StreamReader` / :class:`asyncio.StreamWriter`), with everything they offer
(``readline``, ``readexactly``, ``start_tls``, ``get_extra_info``...).  In kernel mode
(``VIPER_KERNEL_ENABLE_NET=1``) it uses the in-process stack, like every vipernet socket.

Servers need nothing from here: ``asyncio.start_server(handler, sock=listener)`` with a
listening ``vipernet.socket`` works as it is.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vipernet.netclient.client import NetClient, connect
from vipernet.netclient.default import default_client
from vipernet.netclient.sockets import AF_INET, SOCK_STREAM, socket

_clients: dict[str, NetClient] = {}  # one channel per netd path named by callers
_lock = threading.Lock()


def _client(path: str | None) -> NetClient:
    if path is None:
        return default_client()
    with _lock:
        client = _clients.get(path)
        if client is None or getattr(client.channel, "broken", False):
            client = _clients[path] = connect(path)
        return client


async def open_connection(host: str, port: int, *, path: str | None = None,
                          timeout: float | None = None,
                          **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host``:``port`` through netd at ``path`` (default: as configured) and
    return asyncio streams; ``timeout`` bounds the connect, ``kwargs`` go to
    :func:`asyncio.open_connection` (``limit``, ``ssl``, ``server_hostname``...)."""
    sock = socket(AF_INET, SOCK_STREAM, client=_client(path))
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        target = await loop.run_in_executor(None, sock._address, (host, port))  # DNS
        await asyncio.wait_for(loop.sock_connect(sock, target), timeout)  # type: ignore[arg-type]
        return await asyncio.open_connection(sock=sock, **kwargs)
    except BaseException:
        sock.close()
        raise
