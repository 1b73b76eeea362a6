"""vipernet.gateway: the user-mode gateway on its own, serving other machines' NICs.

``vipernet gateway`` is what QEMU's ``-netdev user`` (libslirp) and passt are: NAT to
host sockets, DHCP, a DNS relay, port forwards — vipernet's :mod:`vipernet.slirp` — for a
QEMU guest, a TAP, or a rootless network namespace, with no vipernet stack of ours on
the guest's side.

* :mod:`.wire` - :class:`GuestWire`: one guest device joined to its own gateway.
* :mod:`.ports` - where guests come from (QEMU stream/dgram, TAP, vhost-user).
* :mod:`.server` - :class:`Gateway`: the loop over every port and wire.

See docs/gateway.md.
"""

from vipernet.gateway.server import Gateway, GatewayConfig
from vipernet.gateway.wire import GuestWire

__all__ = ["Gateway", "GatewayConfig", "GuestWire"]
