"""IPv6 address autoconfiguration (RFC 4862) and router discovery (RFC 4861 6.3), sans-IO.

One :class:`AddrConf` per interface; plain values in, :mod:`vipernet.stack.nd_actions` out:

* **start**: a link-local address from the MAC (modified EUI-64, RFC 4291 appendix A) and,
  in ``static`` mode, the configured address.  Each is *tentative*: its solicited-node
  group is joined first (RFC 4862 5.4.2, so a snooping switch lets the answers through),
  then after a random delay of up to MAX_RTR_SOLICITATION_DELAY a DAD probe (an NS from
  ``::``) is sent DupAddrDetectTransmits times, RetransTimer apart.  Nobody objecting, the
  address becomes *preferred*; an NS from ``::`` or an NA for it means *duplicate*: it is
  never used, and for the MAC-derived link-local IPv6 stops altogether (5.4.5).
* **router discovery**: once the link-local address is usable, Router Solicitations every
  RTR_SOLICITATION_INTERVAL, MAX_RTR_SOLICITATIONS at most, until an RA arrives.
* **an RA** sets the default router list (router lifetime, 0 removes), Cur Hop Limit, the
  link MTU (ignored outside 1280..the device's), BaseReachableTime and RetransTimer (for the
  neighbour cache), the on-link prefixes (L flag, valid lifetime), a SLAAC address for each
  autonomous /64 (A flag) with its lifetimes and 5.5.3 (e)'s two-hour rule (an RA cannot
  cut a remaining valid lifetime below two hours: a forged RA cannot take our address
  away), and the RDNSS servers (RFC 8106; lifetime 0 withdraws).  Every list is bounded.
* **time**: a preferred address whose preferred lifetime ends is *deprecated* (still
  usable, not chosen as a source when a preferred one exists), one whose valid lifetime
  ends is removed (its group left); routers, prefixes and servers expire alike.

Source selection is RFC 6724 reduced to what a one-interface host needs: the destination's
own scope first (link-local for link-local and link-scope multicast destinations), then
preferred over deprecated, then the longest common prefix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

from vipernet.stack.config import StackConfig
from vipernet.stack.ipv6_iid import modified_eui64, solicited_node, with_iid
from vipernet.stack.nd_actions import (
    AddrConfAction,
    AddressDuplicate,
    AddressReady,
    AddressRemoved,
    Ipv6Disabled,
    JoinGroup,
    LeaveGroup,
    NdTimersChanged,
    SendNeighborSolicitation,
    SendRouterSolicitation,
)

INFINITY = float("inf")
TWO_HOURS = 7200.0
MIN_MTU = 1280
_LINK_LOCAL = IPv6Network("fe80::/64")
_INFINITE_LIFETIME = 0xFFFFFFFF


def lifetime(seconds: float) -> float:
    """An RA lifetime in seconds; 0xFFFFFFFF is infinity (RFC 4861 4.6.2)."""
    return INFINITY if seconds >= _INFINITE_LIFETIME else float(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixInfo:
    """A Prefix Information option's content (RFC 4861 4.6.2), lifetimes in seconds."""

    prefix: IPv6Network
    on_link: bool
    autonomous: bool
    valid: float
    preferred: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressInfo:
    address: IPv6Address
    prefix_length: int
    state: str  # tentative, preferred, deprecated, duplicate
    origin: str  # link-local, slaac, static
    valid_until: float
    preferred_until: float


@dataclass(slots=True)
class _Address:
    prefix_length: int
    origin: str
    state: str = "tentative"
    valid_until: float = INFINITY
    preferred_until: float = INFINITY
    dad_due: float = 0.0  # when the next DAD step happens
    dad_sent: int = 0


class AddrConf:
    """The IPv6 addresses, routers, prefixes and DNS servers of one interface."""

    def __init__(self, config: StackConfig, rng: random.Random, *, mac: bytes, mtu: int,
                 mode: str, static: IPv6Interface | None) -> None:
        self._config = config
        self._rng = rng
        self._mac = mac
        self._device_mtu = mtu
        self._mode = mode
        self._static = static
        self._addresses: dict[IPv6Address, _Address] = {}
        self._usable: frozenset[int] | None = None  # usable_ints(), until a change
        self._routers: dict[IPv6Address, float] = {}  # address -> expiry; order = preference
        self._prefixes: dict[IPv6Network, float] = {}  # on-link prefixes -> expiry
        self._dns: dict[IPv6Address, float] = {}
        self._rs_sent = 0
        self._rs_due: float | None = None
        self._retrans = config.nd_retrans_timer
        self._base_reachable = config.nd_base_reachable_time
        self.hop_limit = config.ip6_hop_limit
        self.link_mtu = mtu
        self.disabled = mode == "off"

    # -- start and DAD -------------------------------------------------------------------

    def start(self, now: float) -> list[AddrConfAction]:
        if self.disabled:
            return []
        iid = modified_eui64(self._mac)
        actions = self._add(with_iid(_LINK_LOCAL, iid), 64, "link-local", now)
        if self._static is not None:
            actions += self._add(self._static.ip, self._static.network.prefixlen, "static",
                                 now)
            self._prefixes[self._static.network] = INFINITY
        return actions

    def _add(self, address: IPv6Address, prefix_length: int, origin: str, now: float,
             valid: float = INFINITY, preferred: float = INFINITY) -> list[AddrConfAction]:
        if address in self._addresses or len(self._addresses) >= self._config.ip6_max_addresses:
            return []
        delay = self._rng.uniform(0, self._config.ip6_max_rtr_solicitation_delay)
        entry = _Address(prefix_length, origin, valid_until=now + valid,
                         preferred_until=now + preferred, dad_due=now + delay)
        self._addresses[address] = entry
        self._usable = None  # the address set changed
        actions: list[AddrConfAction] = [JoinGroup(group=solicited_node(address))]
        if self._config.ip6_dad_transmits == 0:
            entry.state = "preferred"
            self._usable = None  # the address set changed
            actions += self._became_ready(address, now)
        return actions

    def _dad_step(self, address: IPv6Address, entry: _Address, now: float
                  ) -> list[AddrConfAction]:
        if entry.dad_sent >= self._config.ip6_dad_transmits:
            entry.state = "preferred" if now < entry.preferred_until else "deprecated"
            self._usable = None  # the address set changed
            return self._became_ready(address, now)
        entry.dad_sent += 1
        entry.dad_due = now + self._retrans
        return [SendNeighborSolicitation(target=address, destination=solicited_node(address),
                                         include_source_lla=False, from_unspecified=True)]

    def _became_ready(self, address: IPv6Address, now: float) -> list[AddrConfAction]:
        actions: list[AddrConfAction] = [AddressReady(address=address)]
        if address.is_link_local and self._mode != "off" and self._rs_due is None:
            self._rs_due = now  # DAD already waited the random delay RFC 4861 6.3.7 wants
        return actions

    def ns_received_for(self, target: IPv6Address, from_unspecified: bool, now: float
                        ) -> list[AddrConfAction]:
        """An NS for one of our tentative addresses; from ``::`` it is another node's DAD
        for the same address (RFC 4862 5.4.3)."""
        return self._duplicate(target) if from_unspecified else []

    def na_received_for(self, target: IPv6Address, now: float) -> list[AddrConfAction]:
        """An NA for one of our tentative addresses: someone has it (5.4.4)."""
        return self._duplicate(target)

    def _duplicate(self, address: IPv6Address) -> list[AddrConfAction]:
        entry = self._addresses.get(address)
        if entry is None or entry.state != "tentative":
            return []
        entry.state = "duplicate"
        self._usable = None  # the address set changed
        actions: list[AddrConfAction] = [AddressDuplicate(address=address),
                                         LeaveGroup(group=solicited_node(address))]
        if entry.origin == "link-local":
            self.disabled = True
            self._rs_due = None
            actions.append(Ipv6Disabled(reason=f"link-local {address} (from the MAC) is "
                                               "duplicate: another node has our MAC"))
        return actions

    # -- router advertisements ----------------------------------------------------------

    def ra_received(self, router: IPv6Address, *, router_lifetime: float,
                    reachable_time_ms: int, retrans_timer_ms: int, cur_hop_limit: int,
                    mtu: int | None, prefixes: list[PrefixInfo],
                    rdnss: list[tuple[tuple[IPv6Address, ...], float]], now: float
                    ) -> list[AddrConfAction]:
        if self.disabled:
            return []
        config = self._config
        actions: list[AddrConfAction] = []
        self._rs_due = None  # RFC 4861 6.3.7: an RA ends the solicitations
        if router_lifetime == 0:
            self._routers.pop(router, None)
        elif router in self._routers or len(self._routers) < config.ip6_max_routers:
            self._routers[router] = now + lifetime(router_lifetime)
        if cur_hop_limit:
            self.hop_limit = cur_hop_limit
        if mtu is not None and MIN_MTU <= mtu <= self._device_mtu:
            self.link_mtu = mtu
        base = reachable_time_ms / 1000.0 if reachable_time_ms else self._base_reachable
        retrans = retrans_timer_ms / 1000.0 if retrans_timer_ms else self._retrans
        if (base, retrans) != (self._base_reachable, self._retrans):
            self._base_reachable, self._retrans = base, retrans
            actions.append(NdTimersChanged(base_reachable_time=base, retrans_timer=retrans))
        for info in prefixes:
            actions += self._prefix(info, now)
        for servers, seconds in rdnss:
            for server in servers:
                if seconds == 0:
                    self._dns.pop(server, None)
                elif server in self._dns or len(self._dns) < config.ip6_max_dns_servers:
                    self._dns[server] = now + lifetime(seconds)
        return actions

    def _prefix(self, info: PrefixInfo, now: float) -> list[AddrConfAction]:
        prefix = info.prefix
        if prefix.network_address.is_link_local or prefix.network_address.is_multicast:
            return []  # 4861 6.3.4 / 4862 5.5.3 (b): never from an RA
        valid, preferred = lifetime(info.valid), lifetime(info.preferred)
        if info.on_link:
            if valid == 0:
                self._prefixes.pop(prefix, None)
            elif prefix in self._prefixes or len(self._prefixes) < self._config.ip6_max_prefixes:
                self._prefixes[prefix] = now + valid
        if not info.autonomous or preferred > valid or prefix.prefixlen != 64:
            return []  # 5.5.3 (a), (c); SLAAC needs a 64-bit interface identifier on Ethernet
        address = with_iid(prefix, modified_eui64(self._mac))
        entry = self._addresses.get(address)
        if entry is None:
            return self._add(address, 64, "slaac", now, valid, preferred) if valid else []
        remaining = entry.valid_until - now
        # 5.5.3 (e): the two-hour rule.
        if valid > TWO_HOURS or valid > remaining:
            entry.valid_until = now + valid
        elif remaining > TWO_HOURS:
            entry.valid_until = now + TWO_HOURS
        entry.preferred_until = now + preferred
        if entry.state == "deprecated" and now < entry.preferred_until:
            entry.state = "preferred"
            self._usable = None  # the address set changed
        return []

    def router_unreachable(self, router: IPv6Address, now: float) -> None:
        """NUD gave up on a router (or it stopped being one): prefer the others (6.3.6)."""
        expiry = self._routers.pop(router, None)
        if expiry is not None:
            self._routers[router] = expiry  # to the end of the list

    # -- time ------------------------------------------------------------------------------

    def poll(self, now: float) -> list[AddrConfAction]:
        actions: list[AddrConfAction] = []
        for address, entry in list(self._addresses.items()):
            if entry.state == "tentative" and now >= entry.dad_due:
                actions += self._dad_step(address, entry, now)
            elif entry.state in ("preferred", "deprecated"):
                if now >= entry.valid_until:
                    del self._addresses[address]
                    self._usable = None  # the address set changed
                    actions += [AddressRemoved(address=address),
                                LeaveGroup(group=solicited_node(address))]
                elif entry.state == "preferred" and now >= entry.preferred_until:
                    entry.state = "deprecated"
                    self._usable = None  # the address set changed
        if self._rs_due is not None and now >= self._rs_due:
            source = self.link_local()
            if source is not None and self._rs_sent < self._config.ip6_max_rtr_solicitations:
                self._rs_sent += 1
                actions.append(SendRouterSolicitation(source=source))
                self._rs_due = now + self._config.ip6_rtr_solicitation_interval
            else:
                self._rs_due = None
        for table in (self._routers, self._dns):
            for key, expiry in list(table.items()):
                if now >= expiry:
                    del table[key]
        for prefix, expiry in list(self._prefixes.items()):
            if now >= expiry:
                del self._prefixes[prefix]
        return actions

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for entry in self._addresses.values():
            if entry.state == "tentative":
                times.append(entry.dad_due)
            elif entry.state == "preferred":
                times.append(min(entry.preferred_until, entry.valid_until))
            elif entry.state == "deprecated":
                times.append(entry.valid_until)
        if self._rs_due is not None:
            times.append(self._rs_due)
        times += self._routers.values()
        times += self._prefixes.values()
        times += self._dns.values()
        finite = [t for t in times if t != INFINITY]
        return min(finite) if finite else None

    # -- queries ---------------------------------------------------------------------------

    def is_usable(self, address: IPv6Address) -> bool:
        entry = self._addresses.get(address)
        return entry is not None and entry.state in ("preferred", "deprecated")

    def usable_ints(self) -> frozenset[int]:
        """Our usable addresses as integers, kept until the set changes: what the receive
        fast path tests a packet's addresses against without building IPv6Addresses."""
        usable = self._usable
        if usable is None:
            usable = self._usable = frozenset(
                int(a) for a, e in self._addresses.items()
                if e.state in ("preferred", "deprecated"))
        return usable

    def is_tentative(self, address: IPv6Address) -> bool:
        entry = self._addresses.get(address)
        return entry is not None and entry.state == "tentative"

    def addresses(self, now: float) -> list[AddressInfo]:
        return [AddressInfo(address=a, prefix_length=e.prefix_length, state=e.state,
                            origin=e.origin, valid_until=e.valid_until,
                            preferred_until=e.preferred_until)
                for a, e in self._addresses.items()]

    def link_local(self) -> IPv6Address | None:
        for address, entry in self._addresses.items():
            if entry.origin == "link-local" and entry.state in ("preferred", "deprecated"):
                return address
        return None

    def source_for(self, dst: IPv6Address) -> IPv6Address | None:
        if self.is_usable(dst):
            return dst
        link_scope = dst.is_link_local or (dst.is_multicast and dst.packed[1] & 0x0F <= 2)
        best: tuple[bool, bool, int] | None = None
        choice: IPv6Address | None = None
        target = int(dst)
        for address, entry in self._addresses.items():
            if entry.state not in ("preferred", "deprecated"):
                continue
            same_scope = address.is_link_local == link_scope
            common = 128 - (int(address) ^ target).bit_length()
            rank = (same_scope, entry.state == "preferred", common)
            if best is None or rank > best:
                best, choice = rank, address
        return choice

    def is_on_link(self, dst: IPv6Address, now: float) -> bool:
        return any(dst in prefix and now < expiry for prefix, expiry in self._prefixes.items())

    def default_router(self, now: float) -> IPv6Address | None:
        for router, expiry in self._routers.items():
            if now < expiry:
                return router
        return None

    def routers(self, now: float) -> list[IPv6Address]:
        return [r for r, expiry in self._routers.items() if now < expiry]

    def prefixes(self, now: float) -> list[IPv6Network]:
        return [p for p, expiry in self._prefixes.items() if now < expiry]

    def dns_servers(self, now: float) -> list[IPv6Address]:
        return [s for s, expiry in self._dns.items() if now < expiry]
