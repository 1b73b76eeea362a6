"""IPv6 interface identifiers and the addresses derived from an address.

* :func:`modified_eui64` — the interface identifier from a 48-bit MAC (RFC 4291 appendix A):
  ``ff:fe`` goes in the middle and the universal/local bit is inverted, so a locally
  administered MAC gives an identifier with the "u" bit clear, as the RFC wants.
* :func:`stable_privacy_iid` — RFC 7217's semantically opaque identifier: the same on the
  same network and prefix (so a server's logs and firewall rules keep working), different on
  every other prefix (so the host cannot be followed from network to network, which the
  MAC-derived identifier allows — RFC 7721).
* :func:`solicited_node` and :func:`multicast_mac` are the wire package's, re-exported for
  the ND engines (RFC 4291 2.7.1, RFC 2464 7).
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv6Address, IPv6Network

from vipernet.errors import UsageError
from vipernet.wire.ipv6 import LINK_LOCAL_PREFIX, eui64_interface_id, multicast_mac, solicited_node

__all__ = ["LINK_LOCAL_PREFIX", "is_reserved_iid", "modified_eui64", "multicast_mac",
           "solicited_node", "stable_privacy_iid", "with_iid"]

# RFC 5453's reserved interface identifiers, as (first, last) 64-bit values: subnet-router
# anycast (all zero), the Proxy Mobile IPv6 range, and the reserved subnet anycast range.
_RESERVED_IIDS = (
    (0x0000_0000_0000_0000, 0x0000_0000_0000_0000),
    (0x0200_5EFF_FE00_0000, 0x0200_5EFF_FEFF_FFFF),
    (0xFDFF_FFFF_FFFF_FF80, 0xFDFF_FFFF_FFFF_FFFF),
)


def modified_eui64(mac: bytes) -> bytes:
    """The 8-byte modified EUI-64 identifier of a 6-byte MAC (RFC 4291 appendix A)."""
    return eui64_interface_id(mac).to_bytes(8, "big")


def is_reserved_iid(iid: bytes) -> bool:
    """True for the identifiers RFC 5453 keeps out of stateless autoconfiguration."""
    value = int.from_bytes(iid, "big")
    return any(first <= value <= last for first, last in _RESERVED_IIDS)


def stable_privacy_iid(prefix: IPv6Network, net_iface: str, network_id: bytes,
                       dad_counter: int, secret_key: bytes) -> bytes:
    """RFC 7217 section 5's RID, truncated to a 64-bit interface identifier.

    F is HMAC-SHA-256 keyed by ``secret_key`` — a PRF as 5.1 asks, from the standard library
    rather than a hand-made construction.  Every input is length-prefixed so that no two
    different tuples hash the same bytes.  A result RFC 5453 reserves moves on to the next
    DAD_Counter, as section 5 says; the caller sees only the usable identifier.
    """
    if len(secret_key) < 16:
        raise UsageError(f"RFC 7217 wants a secret key of at least 128 bits, got "
                         f"{len(secret_key) * 8}")
    if not 0 <= dad_counter < 256:
        raise UsageError(f"dad_counter={dad_counter} violates 0 <= dad_counter < 256")
    counter = dad_counter
    while True:
        fields = (prefix.network_address.packed[: (prefix.prefixlen + 7) // 8],
                  bytes((prefix.prefixlen,)), net_iface.encode(), network_id,
                  counter.to_bytes(4, "big"))
        message = b"".join(len(f).to_bytes(2, "big") + f for f in fields)
        iid = hmac.new(secret_key, message, hashlib.sha256).digest()[:8]
        if not is_reserved_iid(iid):
            return iid
        counter += 1


def with_iid(prefix: IPv6Network, iid: bytes) -> IPv6Address:
    """The address made of a /64 ``prefix`` and an 8-byte interface identifier."""
    if prefix.prefixlen != 64 or len(iid) != 8:
        raise UsageError(f"SLAAC joins a /64 and a 64-bit identifier, got /{prefix.prefixlen}"
                         f" and {len(iid) * 8} bits")
    return IPv6Address(prefix.network_address.packed[:8] + iid)
