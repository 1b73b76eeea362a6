"""``vipernet netd --ip dhcp``: open the link, get a lease, hand netd a configured device.

It lives with netd, which uses the DHCP engine (``vipernet.dhcp``) here; the engine
itself knows nothing of netd.

netd builds its stack from a fixed :class:`~vipernet.netd.daemon.NetdConfig`, so the
first lease is obtained before netd starts (:func:`acquire_for_netd`); the returned
:class:`~vipernet.dhcp.driver.DhcpDevice` keeps renewing it underneath the running stack once
:func:`follow_lease` ties it to the netd: a renewal that moves the address moves the
stack, and one that changes the DNS servers repoints netd's resolver.

netd probes a new address with ARP before using it (:data:`NETD_DHCP`): two probes half a
second apart and a one-second wait, shorter than RFC 5227's 3 probes 1-2 s apart and 2 s
wait, so that ``--ip dhcp`` costs netd about 1.5 s of start-up rather than 5-8 s.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

from vipernet.dhcp.client import DhcpClient, DhcpConfig
from vipernet.dhcp.driver import DhcpDevice, acquire
from vipernet.netd.links import open_link
from vipernet.netd.protocol import Code

NETD_DHCP = DhcpConfig(hostname="vipernet", arp_probes=2, probe_interval=0.5, probe_wait=1.0)


def acquire_for_netd(config: Any, *, timeout: float = 15.0,
                     device: Any = None) -> tuple[Any, DhcpDevice]:
    """(``config`` with the leased ip/gateway/dns/mtu, the device wrapped for renewals)."""
    raw = device if device is not None else open_link(config.link, mtu=config.mtu)
    try:
        client = DhcpClient(mac=config.mac, rng=random.Random(config.seed),
                            config=NETD_DHCP)
        lease = acquire(raw, client, clock=time.monotonic, timeout=timeout)
    except BaseException:
        raw.close()
        raise
    changes: dict[str, Any] = {"ip": lease.address, "gateway": lease.router}
    if lease.dns:
        changes["dns"] = lease.dns
    if lease.mtu is not None and lease.mtu < config.mtu:
        changes["mtu"] = lease.mtu
    return dataclasses.replace(config, **changes), DhcpDevice(raw, client)


def follow_lease(device: DhcpDevice, netd: Any) -> None:
    """Make a running netd follow its lease: address, router and DNS servers."""
    def repoint_resolver(servers: tuple[Any, ...]) -> None:
        resolver = netd.service.extensions.get(Code.DNS_RESOLVE)
        if resolver is not None and hasattr(resolver, "servers"):
            resolver.servers = [str(s) for s in servers]  # the next query asks them

    device.attach(netd.stack, on_dns=repoint_resolver)
