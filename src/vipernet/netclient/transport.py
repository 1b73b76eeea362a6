"""How protocol clients (the CLI's, and the HTTP pool's default) open a TCP connection:
through netd by default.

``VIPERNET_TRANSPORT=os`` makes them use the host's own sockets instead (for testing the
protocol clients against servers on host loopback without a running netd).
"""

from __future__ import annotations

import os
import socket as _os_socket
from typing import Any


def connect(host: str, port: int, timeout: float | None = None) -> Any:
    """A connected stream socket (netd's by default) to ``host``:``port``."""
    if os.environ.get("VIPERNET_TRANSPORT", "netd") == "os":
        return _os_socket.create_connection((host, port), timeout=timeout)
    from vipernet import socket as vsocket

    return vsocket.create_connection((host, port), timeout=timeout)
