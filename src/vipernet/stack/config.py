"""The stack's configuration: who we are on the link and the knobs of every timer and cap.

One frozen value, so a running stack's settings can be read from any layer (and shown by
``vipernet info``) without anyone changing them behind its back; ``Stack.set_address``
replaces it whole.  Defaults follow Linux where Linux has a well-known default.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from vipernet.errors import UsageError

DEFAULT_MAC = bytes.fromhex("525400123456")  # QEMU's default for the first NIC
# QEMU SLiRP's defaults (the spec's network configuration).
DEFAULT_IP = IPv4Interface("10.0.2.15/24")
DEFAULT_GATEWAY = IPv4Address("10.0.2.2")
DEFAULT_DNS = (IPv4Address("10.0.2.3"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackConfig:
    """Addresses, MTU and the timeouts and caps of ARP, reassembly, ICMP and UDP."""

    mac: bytes = DEFAULT_MAC
    ip: IPv4Interface = DEFAULT_IP
    gateway: IPv4Address | None = DEFAULT_GATEWAY
    dns: tuple[IPv4Address, ...] = DEFAULT_DNS
    mtu: int = 1500
    ttl: int = 64

    # ARP (RFC 826; timings close to Linux's neighbour defaults)
    arp_cache_ttl: float = 60.0  # an entry's life after the last confirmation
    arp_refresh_before: float = 5.0  # re-ask this long before expiry if the entry is in use
    arp_retry_interval: float = 1.0
    arp_retries: int = 3  # requests sent before giving up (then EHOSTUNREACH)
    arp_queue_limit: int = 32  # packets held per unresolved destination
    arp_pending_limit: int = 256  # unresolved destinations at once
    arp_cache_limit: int = 1024

    # IPv4 reassembly (RFC 791, RFC 5722)
    reassembly_timeout: float = 30.0
    reassembly_max_bytes: int = 256 * 1024  # payload held over all datagrams
    reassembly_max_datagrams: int = 64
    reassembly_max_fragments: int = 128  # per datagram: bounds the overlap checks

    # ICMP errors we send (token bucket, like Linux's icmp_msgs_per_sec/burst)
    icmp_error_rate: float = 100.0  # per second
    icmp_error_burst: int = 50

    # UDP
    udp_rcvbuf: int = 212992  # bytes queued per socket (Linux's rmem_default)
    ephemeral_low: int = 49152
    ephemeral_high: int = 65535

    # IPv6 Neighbor Discovery (RFC 4861 section 10's constants; caps like Linux's neighbour
    # table, so a flood of solicitations cannot grow the cache without bound)
    nd_base_reachable_time: float = 30.0  # BaseReachableTime until an RA says otherwise
    nd_retrans_timer: float = 1.0  # RetransTimer until an RA says otherwise
    nd_delay_first_probe_time: float = 5.0  # DELAY_FIRST_PROBE_TIME
    nd_max_multicast_solicit: int = 3  # MAX_MULTICAST_SOLICIT (INCOMPLETE)
    nd_max_unicast_solicit: int = 3  # MAX_UNICAST_SOLICIT (PROBE)
    nd_queue_limit: int = 32  # packets held per unresolved destination
    nd_pending_limit: int = 256  # destinations being resolved (INCOMPLETE) at once
    nd_cache_limit: int = 1024  # all entries (Linux's gc_thresh3)
    nd_gc_threshold: int = 128  # above this many, idle STALE entries are collected (gc_thresh1)
    nd_gc_stale_time: float = 60.0  # how long a STALE entry idles before it may be collected

    # IPv6 stateless address autoconfiguration (RFC 4862) and router discovery (RFC 4861 6.3)
    ip6_dad_transmits: int = 1  # DupAddrDetectTransmits (0: addresses are usable at once)
    ip6_max_rtr_solicitations: int = 3  # MAX_RTR_SOLICITATIONS
    ip6_rtr_solicitation_interval: float = 4.0  # RTR_SOLICITATION_INTERVAL
    ip6_max_rtr_solicitation_delay: float = 1.0  # MAX_RTR_SOLICITATION_DELAY
    ip6_hop_limit: int = 64  # until an RA's Cur Hop Limit says otherwise
    ip6_max_addresses: int = 16  # per interface, link-local and static included
    ip6_max_routers: int = 8  # default router list
    ip6_max_prefixes: int = 16  # on-link prefix list
    ip6_max_dns_servers: int = 3  # RDNSS addresses kept (RFC 8106 5.3.1; resolv.conf's MAXNS)
    # "off": no IPv6 at all; "auto": link-local + SLAAC from RAs; "static": link-local +
    # ip6_address (still DAD-checked).  Off by default in the sans-IO stack, so a caller that
    # asks for nothing gets exactly the IPv4 frames it expects; netd's --ip6 defaults to auto.
    ip6: str = "off"
    ip6_address: IPv6Interface | None = None

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise UsageError(f"mac must be 6 bytes, got {len(self.mac)}")
        if not 68 <= self.mtu <= 65535:
            raise UsageError(f"mtu={self.mtu} violates 68 <= mtu <= 65535")
        if not 1 <= self.ttl <= 255:
            raise UsageError(f"ttl={self.ttl} violates 1 <= ttl <= 255")
        if not 1 <= self.ephemeral_low <= self.ephemeral_high <= 65535:
            raise UsageError("ephemeral port range is empty or out of 1..65535")
        if self.ip6 not in ("off", "auto", "static"):
            raise UsageError(f"ip6={self.ip6!r} is not one of off, auto, static")
        if (self.ip6 == "static") != (self.ip6_address is not None):
            raise UsageError("ip6_address is given exactly when ip6 is 'static'")
        if self.gateway is not None and self.gateway not in self.ip.network:
            raise UsageError(f"gateway {self.gateway} is not on-link in {self.ip.network}")
