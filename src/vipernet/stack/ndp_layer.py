"""Neighbor Discovery glue (RFC 4861, RFC 4862): packets in, engines' actions out.

The logic lives in two sans-IO engines: :class:`~vipernet.stack.neighbor_cache.NeighborCache`
(resolution and NUD) and :class:`~vipernet.stack.ipv6_addrconf.AddrConf` (link-local,
DAD, router discovery, SLAAC, RDNSS).  This layer parses NDP messages, feeds the engines
and turns what they ask for (:mod:`vipernet.stack.nd_actions`) into packets, group joins
and socket errors.  It is also what the IPv6 layer asks "is this address ours / which
source / which next hop".

Received, besides the engines' part:

* a Neighbor Solicitation for one of our usable addresses is answered with a solicited
  Advertisement carrying our MAC, Override set (RFC 4861 7.2.4); a DAD probe (from ``::``)
  for one is answered to all-nodes, unsolicited; one for an address of ours still under
  DAD means someone else is trying it too: duplicate (RFC 4862 5.4.3);
* an Advertisement for one of our addresses while tentative means duplicate (5.4.4);
* a Router Advertisement feeds the neighbour cache (the router's MAC, IsRouter) and the
  address configuration; Router Solicitations are a router's business (6.2.6);
* a Redirect is honoured only from the router we would use for its destination (8.1):
  later packets to the destination go to the target (a bounded table).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol

from vipernet.stack.arp_cache import QueuedPacket
from vipernet.stack.ipv6_addrconf import AddrConf, PrefixInfo
from vipernet.stack.nd_actions import (
    AddressDuplicate,
    AddressReady,
    AddressRemoved,
    Ipv6Disabled,
    JoinGroup,
    LeaveGroup,
    NdTimersChanged,
    ResolutionFailed,
    RouterFlagCleared,
    SendNeighborSolicitation,
    SendQueued,
    SendRouterSolicitation,
)
from vipernet.stack.neighbor_cache import NeighborCache
from vipernet.stack.sockets_common import os_error
from vipernet.wire.errors import WireError
from vipernet.wire.icmpv6 import PROTO_ICMPV6
from vipernet.wire.ipv6 import ALL_NODES, ALL_ROUTERS, IPv6Header
from vipernet.wire.ndp import (
    NDP_HOP_LIMIT,
    NeighborAdvertisement,
    NeighborSolicitation,
    Redirect,
    RouterAdvertisement,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_router_solicitation,
    parse_ndp,
)
from vipernet.wire.ndp_options import (
    MtuOption,
    PrefixInformation,
    RecursiveDnsServer,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    first_option,
)

if TYPE_CHECKING:
    import random

    from vipernet.link.frame import Offload
    from vipernet.stack.config import StackConfig
    from vipernet.stack.counters import Counters
    from vipernet.stack.icmpv6_layer import Icmpv6Layer
    from vipernet.stack.mld_layer import MldLayer

log = logging.getLogger(__name__)

UNSPECIFIED = IPv6Address("::")
MAX_REDIRECTS = 256
_LINK_LOCAL = IPv6Network("fe80::/10")

NdAction = (SendNeighborSolicitation | SendRouterSolicitation | SendQueued | ResolutionFailed
            | RouterFlagCleared | JoinGroup | LeaveGroup | AddressReady | AddressDuplicate
            | AddressRemoved | Ipv6Disabled | NdTimersChanged)


class NdHost(Protocol):
    """What neighbour discovery needs from its stack."""

    config: StackConfig
    counters: Counters
    rng: random.Random
    mtu: int
    ipv6: Any  # the IPv6 layer
    mld: MldLayer
    icmp6: Icmpv6Layer

    def _emit_ipv6(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None: ...


class NdLayer:
    """One interface's IPv6 host state: addresses, neighbours, routers, redirects."""

    __slots__ = ("_redirects", "_stack", "addrconf", "neighbors")

    def __init__(self, stack: NdHost) -> None:
        self._stack = stack
        config = stack.config
        self.neighbors = NeighborCache(config, stack.counters, stack.rng)
        self.addrconf = AddrConf(config, stack.rng, mac=config.mac, mtu=stack.mtu,
                                 mode=config.ip6, static=config.ip6_address)
        self._redirects: dict[IPv6Address, IPv6Address] = {}

    def start(self, now: float) -> None:
        """Begin: the link-local address (and a static one) into DAD."""
        self.perform(self.addrconf.start(now), now)

    # -- what the IPv6 layer asks ----------------------------------------------------------

    def listening(self, group: IPv6Address) -> bool:
        return self._stack.mld.listening(group)

    def is_local(self, addr: IPv6Address) -> bool:
        return self.addrconf.is_usable(addr)

    def is_tentative(self, addr: IPv6Address) -> bool:
        return self.addrconf.is_tentative(addr)

    def source_for(self, dst: IPv6Address) -> IPv6Address | None:
        return self.addrconf.source_for(dst)

    def link_local_usable(self) -> IPv6Address | None:
        return self.addrconf.link_local()

    @property
    def hop_limit(self) -> int:
        return self.addrconf.hop_limit

    @property
    def link_mtu(self) -> int:
        return self.addrconf.link_mtu

    def next_hop(self, dst: IPv6Address, now: float) -> IPv6Address:
        """RFC 4861 5.2 (with RFC 4943: no "assume on-link" without a router)."""
        redirected = self._redirects.get(dst)
        if redirected is not None:
            return redirected
        if dst in _LINK_LOCAL or self.addrconf.is_on_link(dst, now):
            return dst
        router = self.addrconf.default_router(now)
        if router is None:
            raise os_error(errno.ENETUNREACH, f"no route to {dst} (no IPv6 default router)")
        return router

    def hold(self, next_hop: IPv6Address, packet: QueuedPacket, now: float) -> None:
        self.perform(self.neighbors.enqueue(next_hop, packet, now), now)

    # -- timers -------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        self.perform(self.neighbors.poll(now), now)
        self.perform(self.addrconf.poll(now), now)

    def next_deadline(self) -> float | None:
        times = [t for t in (self.neighbors.next_deadline(), self.addrconf.next_deadline())
                 if t is not None]
        return min(times) if times else None

    # -- received -------------------------------------------------------------------------------

    def receive_icmpv6(self, header: IPv6Header, kind: int, payload: memoryview,
                       now: float) -> None:
        """An NDP or MLD message whose checksum (and, for NDP, hop limit) passed."""
        stack = self._stack
        count = stack.counters.inc
        if kind in (130, 131, 132, 143):
            stack.mld.receive(kind, payload[4:], now)
            return
        try:
            message = parse_ndp(kind, payload[4:], header.src, header.dst)
        except WireError as exc:
            count(f"nd.rx.bad_{exc.field}")
            log.debug("drop: %s", exc)
            return
        if isinstance(message, NeighborSolicitation):
            count("nd.rx.ns")
            self._on_solicitation(header, message, now)
        elif isinstance(message, NeighborAdvertisement):
            count("nd.rx.na")
            self._on_advertisement(message, now)
        elif isinstance(message, RouterAdvertisement):
            count("nd.rx.ra")
            self._on_router_advertisement(header, message, now)
        elif isinstance(message, Redirect):
            count("nd.rx.redirect")
            self._on_redirect(header, message, now)
        else:
            count("nd.rx.rs_ignored")  # RFC 4861 6.2.6: hosts discard them

    def _on_solicitation(self, header: IPv6Header, ns: NeighborSolicitation,
                         now: float) -> None:
        target, src = ns.target, header.src
        ac = self.addrconf
        if ac.is_tentative(target):
            if src.is_unspecified:  # another node's DAD for the same address
                self.perform(ac.ns_received_for(target, True, now), now)
            return  # 5.4.3: otherwise ignored while tentative
        if not ac.is_usable(target):
            self._stack.counters.inc("nd.rx.ns_not_ours")
            return
        mac = self._stack.config.mac
        if src.is_unspecified:  # DAD for our address: tell everyone it is taken (7.2.4)
            self._send(build_neighbor_advertisement(target, target, ALL_NODES, mac,
                                                    solicited=False), target, ALL_NODES, now)
            return
        slla = first_option(ns.options, SourceLinkLayerAddress)
        self.perform(self.neighbors.ns_received(src, slla.address if slla else None, now), now)
        self._send(build_neighbor_advertisement(target, target, src, mac, solicited=True),
                   target, src, now)

    def _on_advertisement(self, na: NeighborAdvertisement, now: float) -> None:
        target = na.target
        ac = self.addrconf
        if ac.is_tentative(target):
            self.perform(ac.na_received_for(target, now), now)
            return
        if ac.is_usable(target):
            self._stack.counters.inc("nd.rx.na_for_our_address")
            log.warning("another node advertises our address %s", target)
            return
        tlla = first_option(na.options, TargetLinkLayerAddress)
        self.perform(self.neighbors.na_received(
            target, tlla.address if tlla else None, solicited=na.solicited,
            override=na.override, router=na.router, now=now), now)

    def _on_router_advertisement(self, header: IPv6Header, ra: RouterAdvertisement,
                                 now: float) -> None:
        slla = first_option(ra.options, SourceLinkLayerAddress)
        self.perform(self.neighbors.ra_received(header.src, slla.address if slla else None,
                                                now), now)
        mtu_option = first_option(ra.options, MtuOption)
        prefixes = [PrefixInfo(prefix=IPv6Network((o.prefix, o.prefix_length), strict=False),
                               on_link=o.on_link, autonomous=o.autonomous,
                               valid=float(o.valid_lifetime),
                               preferred=float(o.preferred_lifetime))
                    for o in ra.options if isinstance(o, PrefixInformation)
                    if o.prefix_length <= 128]
        rdnss = [(o.servers, float(o.lifetime)) for o in ra.options
                 if isinstance(o, RecursiveDnsServer)]
        self.perform(self.addrconf.ra_received(
            header.src, router_lifetime=float(ra.router_lifetime),
            reachable_time_ms=ra.reachable_time, retrans_timer_ms=ra.retrans_timer,
            cur_hop_limit=ra.cur_hop_limit,
            mtu=mtu_option.mtu if mtu_option is not None else None,
            prefixes=prefixes, rdnss=rdnss, now=now), now)

    def _on_redirect(self, header: IPv6Header, redirect: Redirect, now: float) -> None:
        dst = redirect.destination
        try:
            current = self.next_hop(dst, now)
        except OSError:
            return
        if current != header.src:
            self._stack.counters.inc("nd.rx.redirect_not_from_router")  # 8.1
            return
        tlla = first_option(redirect.options, TargetLinkLayerAddress)
        self.perform(self.neighbors.redirect_received(
            redirect.target, tlla.address if tlla else None,
            target_is_router=redirect.target != dst, now=now), now)
        if len(self._redirects) >= MAX_REDIRECTS:
            self._redirects.pop(next(iter(self._redirects)))
        self._redirects[dst] = redirect.target

    # -- actions -------------------------------------------------------------------------------

    def perform(self, actions: Sequence[NdAction], now: float) -> None:
        stack = self._stack
        mac = stack.config.mac
        for action in actions:
            if isinstance(action, SendNeighborSolicitation):
                if action.from_unspecified:
                    src = UNSPECIFIED
                    message = build_neighbor_solicitation(action.target, src, None,
                                                          action.destination)
                else:
                    chosen = self.addrconf.source_for(action.target)
                    if chosen is None:
                        continue
                    src = chosen
                    message = build_neighbor_solicitation(
                        action.target, src, mac if action.include_source_lla else None,
                        action.destination)
                self._send(message, src, action.destination, now,
                           link_destination=action.link_destination)
                stack.counters.inc("nd.tx.ns")
            elif isinstance(action, SendRouterSolicitation):
                self._send(build_router_solicitation(action.source, mac), action.source,
                           ALL_ROUTERS, now)
                stack.counters.inc("nd.tx.rs")
            elif isinstance(action, SendQueued):
                for packet, offload in action.packets:
                    stack._emit_ipv6(action.link_address, packet, b"", offload)
            elif isinstance(action, ResolutionFailed):
                for packet, _offload in action.packets:
                    stack.icmp6.address_unreachable(packet, now)
                if action.is_router:
                    self.addrconf.router_unreachable(action.address, now)
            elif isinstance(action, RouterFlagCleared):
                self.addrconf.router_unreachable(action.address, now)
            elif isinstance(action, JoinGroup):
                stack.mld.join(action.group, now)
            elif isinstance(action, LeaveGroup):
                stack.mld.leave(action.group, now)
            elif isinstance(action, AddressReady):
                stack.counters.inc("ip6.addr.ready")
                log.info("IPv6 address %s ready", action.address)
            elif isinstance(action, AddressDuplicate):
                stack.counters.inc("ip6.addr.duplicate")
                log.warning("IPv6 address %s is in use by another node (DAD)", action.address)
            elif isinstance(action, AddressRemoved):
                stack.counters.inc("ip6.addr.removed")
            elif isinstance(action, Ipv6Disabled):
                stack.counters.inc("ip6.disabled")
                log.warning("IPv6 disabled on this interface: %s", action.reason)
            elif isinstance(action, NdTimersChanged):
                self.neighbors.set_timers(action.base_reachable_time, action.retrans_timer)

    def _send(self, message: bytes, src: IPv6Address, dst: IPv6Address, now: float, *,
              link_destination: bytes | None = None) -> None:
        """An NDP message: hop limit 255 (RFC 4861 7.1), straight to its MAC when known
        (a NUD probe goes to the cached MAC whatever the cache's state)."""
        ipv6 = self._stack.ipv6
        try:
            if link_destination is not None:
                ipv6.send_to_mac(link_destination, dst, PROTO_ICMPV6, message, src=src,
                                 hop_limit=NDP_HOP_LIMIT)
            else:
                ipv6.send(dst, PROTO_ICMPV6, message, now, src=src, hop_limit=NDP_HOP_LIMIT)
        except OSError as exc:
            log.debug("nd message to %s not sent: %s", dst, exc)
            self._stack.counters.inc("nd.tx.unroutable")

