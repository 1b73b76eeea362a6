"""Address plans for virtual hosts: which IPs, and the MAC each one gets.

A range is written ``FIRST-LAST`` (``10.0.2.100-10.0.5.99``, both included) or
``COUNT@FIRST`` (``1000@10.0.2.100``), optionally with the hosts' prefix length after
either (``1000@10.0.2.100/16``): the network the hosts consider on-link.  Without one the
caller's default applies (netd: its own ``--ip`` network; the load tool: /16).

Each host's MAC is derived from its IP, ``02:76:`` followed by the four address bytes: the
0x02 bit marks it locally administered (IEEE 802: never a vendor's), the low bit clear
keeps it unicast, and deriving it means the plan needs no table -- 10,000 hosts cost no
bookkeeping and the same IP always comes back with the same MAC (a neighbour table that
still holds the old entry stays right across a remove and re-add).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network

from vipernet.errors import UsageError

MAC_PREFIX = b"\x02\x76"  # locally administered, unicast; "v" for vipernet
MAX_HOSTS = 1 << 20  # far beyond what fits in memory: a typo, not a plan


class HostRangeError(UsageError):
    """A host range that cannot be understood or does not fit its network."""


def mac_for(ip: IPv4Address) -> bytes:
    """The MAC a virtual host at ``ip`` uses (see the module docstring)."""
    return MAC_PREFIX + ip.packed


@dataclass(frozen=True, slots=True)
class HostRange:
    """``count`` consecutive addresses from ``first``, all in ``network``."""

    first: IPv4Address
    count: int
    prefixlen: int

    @property
    def network(self) -> IPv4Network:
        return IPv4Interface(f"{self.first}/{self.prefixlen}").network

    @property
    def last(self) -> IPv4Address:
        return self.first + (self.count - 1)

    def interfaces(self) -> Iterator[IPv4Interface]:
        """Each host's address with the range's prefix, in order."""
        first = int(self.first)
        for offset in range(self.count):
            yield IPv4Interface((first + offset, self.prefixlen))

    def __str__(self) -> str:
        return f"{self.first}-{self.last}/{self.prefixlen}"


def parse_host_range(text: str, *, default_prefixlen: int = 16) -> HostRange:
    """``"1000@10.0.2.100"`` / ``"10.0.2.100-10.0.5.99/16"`` -> a checked :class:`HostRange`.

    Refused (HostRangeError): a count below 1 or absurdly large, LAST before FIRST, or a
    range that leaves its network or touches its network or broadcast address (a host
    there would answer for the whole subnet's broadcasts).
    """
    body, slash, prefix = text.strip().partition("/")
    try:
        prefixlen = int(prefix) if slash else default_prefixlen
    except ValueError:
        raise HostRangeError(f"bad prefix length in host range {text!r}") from None
    if not 8 <= prefixlen <= 30:
        raise HostRangeError(f"host range {text!r}: prefix length must be 8-30")
    try:
        if "@" in body:
            count_text, _, first_text = body.partition("@")
            count = int(count_text)
            first = IPv4Address(first_text)
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            first = IPv4Address(first_text)
            count = int(IPv4Address(last_text)) - int(first) + 1
        else:
            raise HostRangeError(f"host range {text!r}: write COUNT@FIRST or FIRST-LAST")
    except (ValueError, AddressValueError) as exc:
        raise HostRangeError(f"bad host range {text!r}: {exc}") from None
    if not 1 <= count <= MAX_HOSTS:
        raise HostRangeError(f"host range {text!r}: {count} hosts (want 1-{MAX_HOSTS})")
    plan = HostRange(first, count, prefixlen)
    network = plan.network
    last = int(first) + count - 1
    if last >= int(network.broadcast_address) or first == network.network_address:
        raise HostRangeError(f"host range {text!r} does not fit {network} (give a shorter "
                             f"prefix, e.g. {count}@{first}/16)")
    return plan
