"""vipernet.dhcp: a DHCPv4 client (RFC 2131/2132) that configures the stack.

* :mod:`.codec` - DHCP messages <-> bytes (typed errors, unknown options kept).
* :mod:`.frames` - the client's own Ethernet/IPv4/UDP frames (it talks before the stack
  has an address, so it owns port 68 below the stack).
* :mod:`.client` - the sans-IO state machine: DISCOVER/OFFER/REQUEST/ACK/NAK, T1 renew
  (unicast), T2 rebind (broadcast), expiry; clock and ``random.Random`` injected.
* :mod:`.driver` - :func:`acquire` (blocking first lease on a device) and
  :class:`DhcpDevice` (a device wrapper that keeps the lease alive under a running stack).
* ``vipernet netd --ip dhcp`` drives it from :mod:`vipernet.netd.dhcp_lease`.

See docs/usermode.md.
"""

from vipernet.dhcp.client import (
    DhcpClient,
    DhcpConfig,
    Lease,
    LeaseLost,
    LeaseObtained,
    LeaseRenewed,
    State,
)
from vipernet.dhcp.codec import DhcpError, DhcpFormatError, DhcpMessage, MessageType, OptionCode
from vipernet.dhcp.driver import DhcpDevice, DhcpTimeout, acquire

__all__ = [
    "DhcpClient", "DhcpConfig", "DhcpDevice", "DhcpError", "DhcpFormatError", "DhcpMessage",
    "DhcpTimeout", "Lease", "LeaseLost", "LeaseObtained", "LeaseRenewed", "MessageType",
    "OptionCode", "State", "acquire",
]
