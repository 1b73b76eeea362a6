"""The stack's configuration: who we are on the link and the knobs of every timer and cap.

One frozen value, so a running stack's settings can be read from any layer (and shown by
``vipernet info``) without anyone changing them behind its back; ``Stack.set_address``
replaces it whole.  Defaults follow Linux where Linux has a well-known default.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

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

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise UsageError(f"mac must be 6 bytes, got {len(self.mac)}")
        if not 68 <= self.mtu <= 65535:
            raise UsageError(f"mtu={self.mtu} violates 68 <= mtu <= 65535")
        if not 1 <= self.ttl <= 255:
            raise UsageError(f"ttl={self.ttl} violates 1 <= ttl <= 255")
        if not 1 <= self.ephemeral_low <= self.ephemeral_high <= 65535:
            raise UsageError("ephemeral port range is empty or out of 1..65535")
        if self.gateway is not None and self.gateway not in self.ip.network:
            raise UsageError(f"gateway {self.gateway} is not on-link in {self.ip.network}")
