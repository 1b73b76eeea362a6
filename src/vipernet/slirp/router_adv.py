"""The gateway's Router Advertisements (RFC 4861 6.2): what they say and when they go.

Pure: :func:`advertisement` is the RA itself (libslirp's layout: the gateway is the
default router, fec0::/64 is on-link and autonomous so the guest forms a SLAAC address
in it, fec0::3 is the DNS server by RDNSS, RFC 8106), and :class:`Advertiser` is the
schedule (times in, "send one now" out); :mod:`.replies` makes the frame.

The schedule is RFC 4861's for an advertising interface, with its default constants:

* unsolicited RAs at random intervals in [MinRtrAdvInterval, MaxRtrAdvInterval], the
  first MAX_INITIAL_RTR_ADVERTISEMENTS of them at most MAX_INITIAL_RTR_ADVERT_INTERVAL
  apart (6.2.4), the first one at once;
* a Router Solicitation is answered after a random delay of up to MAX_RA_DELAY_TIME, and
  never sooner than MIN_DELAY_BETWEEN_RAS after the last RA (6.2.6), so a guest sending
  solicitations in a loop gets one RA per three seconds, not one per solicitation.

Every RA goes to all-nodes (6.2.6 allows unicasting a solicited one; with one guest on
the link multicasting costs nothing and keeps one code path).
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network

from vipernet.wire.ndp import RouterAdvertisement
from vipernet.wire.ndp_options import (
    MtuOption,
    PrefixInformation,
    RecursiveDnsServer,
    SourceLinkLayerAddress,
)

# RFC 4861 6.2.1 (router configuration variables, defaults) and 10 (router constants).
MAX_RTR_ADV_INTERVAL = 600.0
MIN_RTR_ADV_INTERVAL = 0.33 * MAX_RTR_ADV_INTERVAL
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_RA_DELAY_TIME = 0.5
MIN_DELAY_BETWEEN_RAS = 3.0
ROUTER_LIFETIME = int(3 * MAX_RTR_ADV_INTERVAL)  # AdvDefaultLifetime
VALID_LIFETIME = 2592000  # AdvValidLifetime: 30 days
PREFERRED_LIFETIME = 604800  # AdvPreferredLifetime: 7 days
CUR_HOP_LIMIT = 64  # AdvCurHopLimit: the "Assigned Numbers" TTL
# RFC 8106 5.1: "SHOULD by default be at least 3 * MaxRtrAdvInterval", so the server is
# not forgotten between two unsolicited RAs even if one of them is lost.
RDNSS_LIFETIME = int(3 * MAX_RTR_ADV_INTERVAL)


def advertisement(*, prefix: IPv6Network, dns: IPv6Address, mac: bytes, mtu: int
                  ) -> RouterAdvertisement:
    """The gateway's RA: default router, ``prefix`` on-link and for SLAAC, ``dns`` by
    RDNSS, the link MTU, and the gateway's MAC (so the guest needs no NS to reach it)."""
    return RouterAdvertisement(
        cur_hop_limit=CUR_HOP_LIMIT,
        router_lifetime=ROUTER_LIFETIME,
        options=(
            SourceLinkLayerAddress(address=mac),
            MtuOption(mtu=mtu),
            PrefixInformation(prefix_length=prefix.prefixlen, on_link=True, autonomous=True,
                              valid_lifetime=VALID_LIFETIME,
                              preferred_lifetime=PREFERRED_LIFETIME,
                              prefix=prefix.network_address),
            RecursiveDnsServer(lifetime=RDNSS_LIFETIME, servers=(dns,)),
        ),
    )


class Advertiser:
    """When the next RA is due; :meth:`take` says whether to send one now."""

    def __init__(self, now: float, rng: random.Random) -> None:
        self._rng = rng
        self.due = now  # the first RA goes at once: a guest may already be listening
        self._last = float("-inf")
        self._initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS

    def solicited(self, now: float) -> None:
        """A Router Solicitation arrived: answer soon, but not sooner than allowed."""
        answer = max(now + self._rng.uniform(0.0, MAX_RA_DELAY_TIME),
                     self._last + MIN_DELAY_BETWEEN_RAS)
        self.due = min(self.due, answer)

    def take(self, now: float) -> bool:
        """True if an RA is due at ``now`` (the next one is then scheduled)."""
        if now < self.due:
            return False
        self._last = now
        interval = self._rng.uniform(MIN_RTR_ADV_INTERVAL, MAX_RTR_ADV_INTERVAL)
        if self._initial_left > 0:
            self._initial_left -= 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self.due = now + interval
        return True
