"""vhost-user: vipernet as the back-end of a QEMU ``virtio-net-pci`` device.

QEMU shares guest memory and the device's virtqueues over a UNIX socket; the guest's
driver and this back-end then exchange frames through shared rings, QEMU out of the path::

    device = VhostUserDevice.listen("/run/vn.sock")   # qemu ... -chardev socket,path=...
    device.wait_ready(30)                             # optional: negotiated capabilities

The parts, one concept each: :mod:`.protocol` (the message codec, sans-IO),
:mod:`.session` (the control plane: features, memory table, ring setup), :mod:`.memory`
(guest memory regions, bounds-checked translation), :mod:`.virtqueue` (the split ring),
:mod:`.net` (virtio-net frames in and out of rings), :mod:`.device` (sockets, eventfds,
epoll, and the link :class:`~vipernet.link.frame.Device` interface).  See
``docs/vhost-user.md``.
"""

from vipernet.link.vhost_user.device import VhostUserCounters, VhostUserDevice
from vipernet.link.vhost_user.features import OFFERED, Feature, feature_names
from vipernet.link.vhost_user.protocol import VhostUserProtocolError

__all__ = [
    "OFFERED",
    "Feature",
    "VhostUserCounters",
    "VhostUserDevice",
    "VhostUserProtocolError",
    "feature_names",
]
