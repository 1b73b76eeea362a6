"""vipernet.slirp: user-mode networking, no root needed (QEMU SLiRP's layout).

* :mod:`.device` - :class:`SlirpDevice`, a link whose far end is a gateway at 10.0.2.2
  and fec0::2 (a second vipernet stack) that answers ARP/NDP and ping and relays TCP/UDP
  to host sockets (fec0::2 -> [::1]); DNS at 10.0.2.3 and fec0::3 goes to the host's
  resolver; optional host->guest TCP port forwards.
* :mod:`.hostside` - the host-socket half of the device: connects, splice pump, UDP,
  idle sweep, port forwards.
* :mod:`.nat` - the address/port translation in front of the gateway stack (pure).
* :mod:`.relay` - one relayed TCP connection and the non-blocking splice between sockets.
* :mod:`.replies` - frames the gateway makes itself (RST, ARP for 10.0.2.3, DHCP, the
  Router and Neighbor Advertisements).
* :mod:`.dhcp_server` - the gateway's one-address DHCP server (``--ip dhcp``).
* :mod:`.router_adv` - the gateway's Router Advertisement (fec0::/64 for SLAAC, RDNSS
  fec0::3) and its RFC 4861 schedule (pure).
* :mod:`.config` - :class:`SlirpConfig` and the ``--link user:OPTIONS`` syntax.
* :mod:`.passt` - ``--link passt``: Debian's passt as the far end instead.

See docs/usermode.md.
"""

from vipernet.slirp.config import Forward, SlirpConfig, SlirpConfigError
from vipernet.slirp.device import SlirpDevice

__all__ = ["Forward", "SlirpConfig", "SlirpConfigError", "SlirpDevice"]
