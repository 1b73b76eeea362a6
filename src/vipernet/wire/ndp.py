"""Neighbor Discovery messages (RFC 4861 4): RS, RA, NS, NA and Redirect.

NDP messages are ICMPv6 types 133-137; :func:`parse_ndp` decodes the body of an
:class:`~vipernet.wire.icmpv6.Icmpv6Other` (after the checksum, which
:func:`~vipernet.wire.icmpv6.parse_icmpv6` has verified) and applies the validity checks
of RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2 and 8.1 that depend on the message alone and its
addresses: minimum lengths, option lengths (in :mod:`vipernet.wire.ndp_options`), a
target that is not multicast, the rules for an unspecified source (DAD), a link-local
source for router messages.  A message that fails raises :class:`WireError`; RFC 4861
says to drop it silently.

Two checks need the IPv6 header and the ICMPv6 code, which this module does not see:
the hop limit must be 255 (proof that no router forwarded it) and the code 0.  The
stack calls :func:`ndp_message_valid` for those.  Checks that need state (a Redirect
from our current first-hop router) stay in the stack.

The builders return the whole ICMPv6 message with its checksum, ready to follow an
IPv6 header with hop limit 255 and next header 58.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar

from vipernet.wire.errors import WireError, WireUsageError, truncated
from vipernet.wire.icmpv6 import Icmpv6Type, build_icmpv6
from vipernet.wire.ipv6 import ALL_NODES, ALL_ROUTERS, is_solicited_node, solicited_node
from vipernet.wire.ndp_options import (
    NdpOption,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    build_ndp_options,
    first_option,
    parse_ndp_options,
)

Bytes = bytes | bytearray | memoryview

NDP_HOP_LIMIT = 255
_RA = struct.Struct("!BBHII")  # cur hop limit, flags, router lifetime, reachable, retrans
_M_FLAG, _O_FLAG = 0x80, 0x40
_R_FLAG, _S_FLAG, _OVERRIDE_FLAG = 0x80, 0x40, 0x20


def ndp_message_valid(hop_limit: int, code: int) -> bool:
    """RFC 4861's header checks the parser cannot see: hop limit 255 and ICMP code 0."""
    return hop_limit == NDP_HOP_LIMIT and code == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterSolicitation:
    TYPE: ClassVar[int] = Icmpv6Type.ROUTER_SOLICITATION
    options: tuple[NdpOption, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterAdvertisement:
    TYPE: ClassVar[int] = Icmpv6Type.ROUTER_ADVERTISEMENT
    cur_hop_limit: int = 0  # 0: unspecified by this router
    managed: bool = False  # M: addresses from DHCPv6
    other_config: bool = False  # O: other configuration from DHCPv6
    router_lifetime: int = 0  # seconds; 0: not a default router
    reachable_time: int = 0  # milliseconds; 0: unspecified
    retrans_timer: int = 0  # milliseconds; 0: unspecified
    other_flags: int = 0  # the six low flag bits (RFC 4191 Prf, RFC 4389 P, ...) as sent
    options: tuple[NdpOption, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighborSolicitation:
    TYPE: ClassVar[int] = Icmpv6Type.NEIGHBOR_SOLICITATION
    target: IPv6Address
    options: tuple[NdpOption, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighborAdvertisement:
    TYPE: ClassVar[int] = Icmpv6Type.NEIGHBOR_ADVERTISEMENT
    target: IPv6Address
    router: bool = False  # R
    solicited: bool = False  # S
    override: bool = False  # O
    options: tuple[NdpOption, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    TYPE: ClassVar[int] = Icmpv6Type.REDIRECT
    target: IPv6Address  # the better first hop (or the destination itself, on-link)
    destination: IPv6Address
    options: tuple[NdpOption, ...] = ()


NdpMessage = (
    RouterSolicitation
    | RouterAdvertisement
    | NeighborSolicitation
    | NeighborAdvertisement
    | Redirect
)

# ICMPv6 body length (after the checksum) of each message's fixed part.
_FIXED = {133: 4, 134: 12, 135: 20, 136: 20, 137: 36}


def _bad(field: str, value: object, reason: str) -> WireError:
    return WireError("ndp", field, value, reason)


def parse_ndp(icmp_type: int, body: Bytes, src: IPv6Address, dst: IPv6Address) -> NdpMessage:
    """Decode and validate the body (after the checksum) of an NDP message."""
    fixed = _FIXED.get(icmp_type)
    if fixed is None:
        raise _bad("type", icmp_type, "type in 133..137")
    view = memoryview(body)
    if len(view) < fixed:
        raise truncated("ndp", len(view) + 4, fixed + 4)
    options = parse_ndp_options(view[fixed:])
    if icmp_type == Icmpv6Type.ROUTER_SOLICITATION:
        if src.is_unspecified and first_option(options, SourceLinkLayerAddress) is not None:
            raise _bad("source_link_layer_address", "present", "absent when src is ::")
        return RouterSolicitation(options=options)
    if icmp_type == Icmpv6Type.ROUTER_ADVERTISEMENT:
        if not src.is_link_local:
            raise _bad("src", src, "src is link-local (RFC 4861 6.1.2)")
        hops, flags, lifetime, reachable, retrans = _RA.unpack_from(view)
        return RouterAdvertisement(
            cur_hop_limit=hops,
            managed=bool(flags & _M_FLAG),
            other_config=bool(flags & _O_FLAG),
            router_lifetime=lifetime,
            reachable_time=reachable,
            retrans_timer=retrans,
            other_flags=flags & 0x3F,
            options=options,
        )
    target = _target(view[4:20])
    if icmp_type == Icmpv6Type.NEIGHBOR_SOLICITATION:
        if src.is_unspecified:  # duplicate address detection (RFC 4862 5.4.2)
            if not is_solicited_node(dst):
                raise _bad("dst", dst, "dst is solicited-node multicast when src is ::")
            if first_option(options, SourceLinkLayerAddress) is not None:
                raise _bad("source_link_layer_address", "present", "absent when src is ::")
        return NeighborSolicitation(target=target, options=options)
    if icmp_type == Icmpv6Type.NEIGHBOR_ADVERTISEMENT:
        flags = view[0]
        if dst.is_multicast and flags & _S_FLAG:
            raise _bad("solicited", 1, "solicited == 0 when dst is multicast (RFC 4861 7.1.2)")
        return NeighborAdvertisement(
            target=target,
            router=bool(flags & _R_FLAG),
            solicited=bool(flags & _S_FLAG),
            override=bool(flags & _OVERRIDE_FLAG),
            options=options,
        )
    if not src.is_link_local:
        raise _bad("src", src, "src is link-local (RFC 4861 8.1)")
    destination = IPv6Address(bytes(view[20:36]))
    if destination.is_multicast:
        raise _bad("destination", destination, "destination is not multicast")
    if not (target.is_link_local or target == destination):
        raise _bad("target", target, "target is link-local or == destination (RFC 4861 8.1)")
    return Redirect(target=target, destination=destination, options=options)


def _target(raw: memoryview) -> IPv6Address:
    target = IPv6Address(bytes(raw))
    if target.is_multicast:
        raise _bad("target", target, "target is not multicast")
    return target


def build_ndp(message: NdpMessage, src: IPv6Address, dst: IPv6Address) -> bytes:
    """The whole ICMPv6 message (code 0) with its checksum."""
    if isinstance(message, RouterSolicitation):
        fixed = bytes(4)
    elif isinstance(message, RouterAdvertisement):
        flags = message.other_flags & 0x3F
        flags |= (_M_FLAG if message.managed else 0) | (_O_FLAG if message.other_config else 0)
        try:
            fixed = _RA.pack(
                message.cur_hop_limit,
                flags,
                message.router_lifetime,
                message.reachable_time,
                message.retrans_timer,
            )
        except struct.error as exc:
            raise WireUsageError(f"ndp: router advertisement field out of range: {exc}") from None
    elif isinstance(message, NeighborSolicitation):
        fixed = bytes(4) + message.target.packed
    elif isinstance(message, NeighborAdvertisement):
        flags = (_R_FLAG if message.router else 0) | (_S_FLAG if message.solicited else 0)
        flags |= _OVERRIDE_FLAG if message.override else 0
        fixed = bytes((flags, 0, 0, 0)) + message.target.packed
    else:
        fixed = bytes(4) + message.target.packed + message.destination.packed
    body = fixed + build_ndp_options(message.options)
    return build_icmpv6(message.TYPE, 0, body, src, dst)


def build_router_solicitation(
    src: IPv6Address, mac: bytes | None, dst: IPv6Address = ALL_ROUTERS
) -> bytes:
    """An RS, with our MAC unless we have no address yet (src ::, RFC 4861 4.1)."""
    options = () if mac is None or src.is_unspecified else (SourceLinkLayerAddress(address=mac),)
    return build_ndp(RouterSolicitation(options=options), src, dst)


def build_neighbor_solicitation(
    target: IPv6Address, src: IPv6Address, mac: bytes | None, dst: IPv6Address | None = None
) -> bytes:
    """An NS for ``target``, by default to its solicited-node group (address
    resolution, DAD); pass ``dst=target`` for a unicast reachability probe.  From ::
    (DAD) it carries no source link-layer address option, as RFC 4861 7.2.2 requires."""
    options = () if mac is None or src.is_unspecified else (SourceLinkLayerAddress(address=mac),)
    message = NeighborSolicitation(target=target, options=options)
    return build_ndp(message, src, solicited_node(target) if dst is None else dst)


def build_neighbor_advertisement(
    target: IPv6Address,
    src: IPv6Address,
    dst: IPv6Address,
    mac: bytes | None,
    *,
    router: bool = False,
    solicited: bool = True,
    override: bool = True,
) -> bytes:
    """An NA for ``target`` with our MAC.  An unsolicited one (to all-nodes) must have
    ``solicited=False``; RFC 4861 7.2.4 answers a DAD probe that way, to ff02::1."""
    options = () if mac is None else (TargetLinkLayerAddress(address=mac),)
    message = NeighborAdvertisement(
        target=target, router=router, solicited=solicited, override=override, options=options
    )
    return build_ndp(message, src, dst)


def build_router_advertisement(
    advertisement: RouterAdvertisement, src: IPv6Address, dst: IPv6Address = ALL_NODES
) -> bytes:
    return build_ndp(advertisement, src, dst)
