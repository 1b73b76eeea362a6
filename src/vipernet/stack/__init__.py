"""vipernet.stack: the sans-IO protocol engine (ARP, IPv4, ICMP, UDP, TCP, sockets).

Start at :class:`vipernet.stack.stack.Stack`; the contract is in docs/architecture.md and
the details in docs/stack.md.
"""

from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.icmp_layer import IcmpErrorEvent
from vipernet.stack.ping import PingReply, PingSocket
from vipernet.stack.stack import Stack
from vipernet.stack.udp import UdpSocket

__all__ = [
    "Counters",
    "IcmpErrorEvent",
    "PingReply",
    "PingSocket",
    "Stack",
    "StackConfig",
    "UdpSocket",
]
