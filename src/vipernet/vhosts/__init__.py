"""Virtual hosts: many identities (MAC + IP, sockets of their own) on one wire.

:class:`VirtualHosts` runs a small :class:`~vipernet.stack.Stack` per host and switches
frames between them and the device (:mod:`.switch`); :class:`SwitchedDevice` puts them
under netd's runtime next to netd's own stack (:mod:`.device`); :class:`HostsLoop` drives
them alone in real time, as the load tool does (:mod:`.loop`).  ``docs/vhosts.md`` is the
guide.
"""

from vipernet.vhosts.device import SwitchedDevice
from vipernet.vhosts.host_stack import HostStack
from vipernet.vhosts.loop import HostsLoop
from vipernet.vhosts.ranges import HostRange, HostRangeError, mac_for, parse_host_range
from vipernet.vhosts.switch import HostExists, VirtualHosts

__all__ = ["HostExists", "HostRange", "HostRangeError", "HostStack", "HostsLoop",
           "SwitchedDevice", "VirtualHosts", "mac_for", "parse_host_range"]
