"""The process-wide client: netd, or the in-process stack in kernel mode.

:func:`default_client` picks netd at ``$VIPERNET_SOCKET`` or, with
``VIPER_KERNEL_ENABLE_NET=1``, a stack in this process (:mod:`.inprocess`).  It lives
apart from :mod:`.client` so that neither :mod:`.client` nor :mod:`.inprocess` imports the
other's importer: the dependency runs one way, default -> inprocess -> client.
"""

from __future__ import annotations

import os
import threading

from vipernet.netclient.client import NetClient, connect

_lock = threading.Lock()
_default: tuple[int, NetClient] | None = None


def kernel_mode() -> bool:
    return os.environ.get("VIPER_KERNEL_ENABLE_NET", "0") == "1"


def default_client() -> NetClient:
    """The process-wide client (created on first use; a new one after fork)."""
    global _default
    with _lock:
        pid = os.getpid()
        if _default is not None and _default[0] == pid and not _broken(_default[1]):
            return _default[1]
        if kernel_mode():
            from vipernet.netclient.inprocess import in_process_client

            client = in_process_client()
        else:
            client = connect()
        _default = (pid, client)
        return client


def _broken(client: NetClient) -> bool:
    return bool(getattr(client.channel, "broken", False))


def reset_default_client() -> None:
    """Forget the process-wide client (tests; after changing VIPERNET_SOCKET)."""
    global _default
    with _lock:
        if _default is not None and _default[0] == os.getpid():
            _default[1].close_channel()
        _default = None
