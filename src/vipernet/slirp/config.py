"""What the user-mode network looks like, and where each guest destination really goes.

``--link user[:OPTIONS]`` with comma-separated options:

* ``restrict`` - only the gateway (host loopback) and the DNS server are reachable.
* ``forward=tcp:HOSTPORT:GUESTPORT`` - a listener on host 127.0.0.1:HOSTPORT whose
  connections are carried to the guest's GUESTPORT (repeatable); ``forward=udp:...`` the
  same for datagrams (:mod:`.udp_forward`).
* ``dns=IP[:PORT]`` - where DNS queries to 10.0.2.3 (and fec0::3) go (default: the
  first IPv4 ``nameserver`` of /etc/resolv.conf, else 127.0.0.1).
* ``ipv6=off`` - no IPv6 on the link: no Router Advertisements, IPv6 frames dropped.

Where a guest destination goes (:meth:`SlirpConfig.host_target`), as in QEMU's SLiRP:
10.0.2.2:P -> 127.0.0.1:P; 10.0.2.3:53 -> the DNS upstream; any other address -> itself,
unless ``restrict``; other 10.0.2.x addresses are refused.  IPv6 is libslirp's layout:
fec0::2:P -> [::1]:P; fec0::3:53 -> the same DNS upstream; any other global address ->
itself, unless ``restrict``; other fec0::/64 addresses, link-local, multicast and the
like are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from vipernet.errors import UsageError

GATEWAY = IPv4Address("10.0.2.2")
DNS = IPv4Address("10.0.2.3")
NETWORK = IPv4Interface("10.0.2.2/24")
GUEST = IPv4Interface("10.0.2.15/24")
GATEWAY_MAC = bytes.fromhex("525400123502")  # QEMU SLiRP's gateway MAC
# libslirp's IPv6 layout (site-local, as QEMU's defaults: the prefix is never routed).
GATEWAY6 = IPv6Address("fec0::2")
DNS6 = IPv6Address("fec0::3")
NETWORK6 = IPv6Network("fec0::/64")
HOST_LOOPBACK6 = "::1"


class SlirpConfigError(UsageError):
    """A ``--link user:...`` option that makes no sense."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    host_port: int
    guest_port: int
    host_address: str = "127.0.0.1"
    protocol: str = "tcp"  # or "udp"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlirpConfig:
    gateway: IPv4Address = GATEWAY
    dns: IPv4Address = DNS
    network: IPv4Interface = NETWORK
    guest: IPv4Interface = GUEST  # what the gateway's DHCP hands out
    gateway_mac: bytes = GATEWAY_MAC
    ipv6: bool = True
    gateway6: IPv6Address = GATEWAY6
    dns6: IPv6Address = DNS6
    network6: IPv6Network = NETWORK6  # advertised (SLAAC, on-link) in the gateway's RAs
    restrict: bool = False
    forwards: tuple[Forward, ...] = ()
    dns_upstream: tuple[str, int] | None = None  # None: read /etc/resolv.conf
    udp_idle_timeout: float = 60.0
    dns_idle_timeout: float = 10.0
    tcp_linger: float = 120.0  # a finished TCP flow's translation is kept this long (2 MSL)
    buffer_limit: int = 256 * 1024  # bytes held per direction per TCP flow
    max_flows: int = 4096  # translations at once (each live one holds a host socket)
    handshake_timeout: float = 75.0  # a SYN let in whose handshake never completes

    def host_target(self, dst: IPv4Address | IPv6Address, port: int, *,
                    resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int] | None:
        """The host address a guest's packet to ``dst:port`` is relayed to (None: refused).

        The host socket's family follows the answer, not the guest's: a query to fec0::3
        goes to the same (IPv4) resolver as one to 10.0.2.3.
        """
        if isinstance(dst, IPv6Address):
            return self._host_target6(dst, port, resolv_conf)
        if dst == self.gateway:
            return ("127.0.0.1", port)
        if dst == self.dns:
            if port != 53:
                return None
            return self.dns_upstream or system_resolver(resolv_conf)
        if dst in self.network.network or self.restrict:
            return None
        if dst.is_multicast or dst.is_unspecified or dst == IPv4Address("255.255.255.255"):
            return None
        return (str(dst), port)

    def _host_target6(self, dst: IPv6Address, port: int, resolv_conf: str
                      ) -> tuple[str, int] | None:
        if dst == self.gateway6:
            return (HOST_LOOPBACK6, port)
        if dst == self.dns6:
            if port != 53:
                return None
            return self.dns_upstream or system_resolver(resolv_conf)
        if dst in self.network6 or self.restrict:
            return None
        # Only a global unicast address names a host elsewhere: a link-local or
        # site-local one would be the host's own link, ::1 the host itself (reached as
        # fec0::2), and a mapped IPv4 address is for the IPv4 side.
        if (dst.is_multicast or dst.is_unspecified or dst.is_loopback or dst.is_link_local
                or dst.is_site_local or dst.ipv4_mapped is not None):
            return None
        return (str(dst), port)

    @classmethod
    def for_network(cls, network: IPv4Network, **options: Any) -> SlirpConfig:
        """The libslirp layout moved to another IPv4 prefix: the gateway is host 2, DNS
        host 3, the guest host 15 (as QEMU's ``-netdev user,net=...`` places them)."""
        if network.prefixlen > 28:
            raise SlirpConfigError(f"network {network} is too small (the guest is host .15: "
                                   "use a /28 or larger)")
        base = int(network.network_address)
        return cls(gateway=IPv4Address(base + 2), dns=IPv4Address(base + 3),
                   network=IPv4Interface((base + 2, network.prefixlen)),
                   guest=IPv4Interface((base + 15, network.prefixlen)), **options)

    @classmethod
    def from_argument(cls, argument: str) -> SlirpConfig:
        """Parse ``restrict,forward=tcp:8080:80,dns=127.0.0.1:5353``."""
        restrict = False
        forwards: list[Forward] = []
        upstream: tuple[str, int] | None = None
        ipv6 = True
        for item in filter(None, (part.strip() for part in argument.split(","))):
            name, _, value = item.partition("=")
            if name == "restrict" and not value:
                restrict = True
            elif name == "forward":
                forwards.append(_parse_forward(value))
            elif name == "dns":
                upstream = _parse_hostport(value, 53)
            elif name == "ipv6" and value in ("on", "off"):
                ipv6 = value == "on"
            else:
                raise SlirpConfigError(
                    f"unknown --link user option {item!r} (known: restrict, "
                    "forward=tcp:HOSTPORT:GUESTPORT, dns=IP[:PORT], ipv6=on|off)")
        return cls(restrict=restrict, forwards=tuple(forwards), dns_upstream=upstream,
                   ipv6=ipv6)


def with_options(argument: str, *, restrict: bool = False, forwards: Sequence[str] = ()) -> str:
    """``--link user:ARGUMENT`` plus netd's ``--restrict`` / ``--forward`` flags, as one argument.

    The flags are the issue's spelling; the link options are the same thing, so the flags
    are only appended (each forward is checked here, so a bad one is reported by its flag).
    """
    for value in forwards:
        _parse_forward(value)
    extra = ["restrict"] if restrict else []
    extra += [f"forward={value}" for value in forwards]
    return ",".join(part for part in (argument, *extra) if part)


def _parse_forward(value: str) -> Forward:
    parts = value.split(":")
    if len(parts) != 3 or parts[0] not in ("tcp", "udp"):
        raise SlirpConfigError(
            f"forward must be tcp:HOSTPORT:GUESTPORT or udp:HOSTPORT:GUESTPORT, got {value!r}")
    try:
        host, guest = int(parts[1]), int(parts[2])
    except ValueError:
        raise SlirpConfigError(f"forward ports must be numbers, got {value!r}") from None
    if not (0 <= host < 65536 and 0 < guest < 65536):
        raise SlirpConfigError(f"forward ports out of range in {value!r}")
    return Forward(host_port=host, guest_port=guest, protocol=parts[0])


def _parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.partition(":")
    try:
        IPv4Address(host)
        number = int(port) if port else default_port
    except ValueError:
        raise SlirpConfigError(f"dns must be IP[:PORT], got {value!r}") from None
    if not 0 < number < 65536:
        raise SlirpConfigError(f"dns port out of range in {value!r}")
    return (host, number)


def system_resolver(path: str = "/etc/resolv.conf") -> tuple[str, int]:
    """The first IPv4 ``nameserver`` in resolv.conf (127.0.0.1 if there is none)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                return (str(IPv4Address(words[1])), 53)
            except ValueError:
                continue
    return ("127.0.0.1", 53)

