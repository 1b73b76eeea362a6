"""What the IPv6 neighbour-discovery engines ask their caller to do.

:mod:`vipernet.stack.neighbor_cache` and :mod:`vipernet.stack.ipv6_addrconf` are pure logic:
they take plain values (addresses, flags, lifetimes) and the time, and hand back these small
frozen values.  The IPv6 layer turns each into packets (it owns the ICMPv6/NDP/MLD codecs),
socket errors or log lines.  Keeping the vocabulary in one file means the layer that glues
things together matches on one closed set, and the engines never import a codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from vipernet.stack.arp_cache import QueuedPacket


@dataclass(frozen=True, slots=True, kw_only=True)
class SendNeighborSolicitation:
    """Send an NS for ``target`` to ``destination`` (RFC 4861 7.2.2, RFC 4862 5.4.2).

    ``destination`` is the target's solicited-node group for address resolution and DAD, or
    the target itself for a NUD probe (then ``link_destination`` is the cached MAC to send
    it to; ``None`` means the group's 33:33:xx:xx:xx:xx MAC).  A DAD probe has
    ``from_unspecified`` set: it goes out from ``::`` and, as 7.1.1 requires of such a
    message, without a Source Link-Layer Address option (``include_source_lla`` False).
    For the others the caller picks the source (7.2.2: preferably the source of the packet
    that prompted the solicitation) and includes its MAC.
    """

    target: IPv6Address
    destination: IPv6Address
    include_source_lla: bool
    from_unspecified: bool = False
    link_destination: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRouterSolicitation:
    """Send an RS to all-routers (ff02::2) from ``source`` with our MAC (RFC 4861 6.3.7).

    We only solicit once a link-local address is usable, so ``source`` is always that address
    and the Source Link-Layer Address option is always allowed.
    """

    source: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class SendQueued:
    """Resolution finished: send ``packets`` (held while INCOMPLETE) to ``link_address``."""

    address: IPv6Address
    link_address: bytes
    packets: tuple[QueuedPacket, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionFailed:
    """``address`` did not answer (RFC 4861 7.3.3: the entry is deleted).

    ``packets`` are the ones held while INCOMPLETE (empty when a PROBE failed: those packets
    went out with the old MAC), for the caller to answer with EHOSTUNREACH or an ICMPv6
    Destination Unreachable, code 3 "address unreachable" (RFC 4861 7.2.2).  ``is_router``
    lets the caller stop preferring that default router (6.3.6).
    """

    address: IPv6Address
    packets: tuple[QueuedPacket, ...]
    is_router: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterFlagCleared:
    """An NA said ``address`` is no longer a router (RFC 4861 7.2.5): remove it from the
    default router list and from the destination cache entries that use it."""

    address: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroup:
    """Listen to ``group`` and announce it with an MLDv2 report (RFC 4862 5.4.2, RFC 3810)."""

    group: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroup:
    """Stop listening to ``group`` (an MLDv2 state-change report) once no address needs it."""

    group: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressReady:
    """``address`` passed DAD: it may now be a source address and be answered for."""

    address: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressDuplicate:
    """DAD found another node using ``address`` (RFC 4862 5.4.5): it is not used.

    When the interface identifier was generated with RFC 7217 a new tentative address
    (DAD_Counter + 1) follows in the same action list; if the link-local address derived
    from the MAC was duplicate, an :class:`Ipv6Disabled` follows instead.
    """

    address: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressRemoved:
    """``address`` is gone (its valid lifetime ran out, or it was regenerated): sockets bound
    to it should be told (EADDRNOTAVAIL)."""

    address: IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Ipv6Disabled:
    """IP operation on the interface stops (RFC 4862 5.4.5: a hardware-derived link-local
    address is duplicate, so the MAC itself is in use twice).  ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NdTimersChanged:
    """An RA changed BaseReachableTime or RetransTimer (RFC 4861 6.3.4): hand both (in
    seconds) to :meth:`NeighborCache.set_timers`."""

    base_reachable_time: float
    retrans_timer: float


# What NeighborCache methods return.
NeighborAction = SendNeighborSolicitation | SendQueued | ResolutionFailed | RouterFlagCleared

# What AddrConf methods return.
AddrConfAction = (SendNeighborSolicitation | SendRouterSolicitation | JoinGroup | LeaveGroup
                  | AddressReady | AddressDuplicate | AddressRemoved | Ipv6Disabled
                  | NdTimersChanged)
