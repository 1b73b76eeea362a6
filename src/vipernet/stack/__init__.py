"""vipernet.stack: the sans-IO protocol engine (ARP, IPv4, ICMP, UDP, TCP, sockets).

Start at :class:`vipernet.stack.stack.Stack`; the contract is in docs/architecture.md and
the details in docs/stack.md.

The names below are loaded on first use (PEP 562): a client that only needs
``vipernet.stack.socket_api`` (the netd client library, the CLI talking to netd) does not
pay for importing the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.icmp_layer import IcmpErrorEvent
    from vipernet.stack.ping import PingReply, PingSocket
    from vipernet.stack.stack import Stack
    from vipernet.stack.udp import UdpSocket

_EXPORTS = {
    "Counters": "vipernet.stack.counters",
    "IcmpErrorEvent": "vipernet.stack.icmp_layer",
    "PingReply": "vipernet.stack.ping",
    "PingSocket": "vipernet.stack.ping",
    "Stack": "vipernet.stack.stack",
    "StackConfig": "vipernet.stack.config",
    "UdpSocket": "vipernet.stack.udp",
}

__all__ = [
    "Counters",
    "IcmpErrorEvent",
    "PingReply",
    "PingSocket",
    "Stack",
    "StackConfig",
    "UdpSocket",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vipernet.stack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value
