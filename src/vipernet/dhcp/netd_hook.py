"""``vipernet netd --ip dhcp``: open the link, get a lease, hand netd a configured device.

netd builds its stack from a fixed :class:`~vipernet.netd.daemon.NetdConfig`, so the
first lease is obtained before netd starts (:func:`acquire_for_netd`); the returned
:class:`~.driver.DhcpDevice` keeps renewing it underneath the running stack once
:meth:`~.driver.DhcpDevice.attach` ties it to ``netd.stack``.  DNS servers from a renewal
that differ from the first lease's are not applied (netd's resolver is built once).
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

from vipernet.dhcp.client import DhcpClient, DhcpConfig
from vipernet.dhcp.driver import DhcpDevice, acquire


def acquire_for_netd(config: Any, *, timeout: float = 15.0,
                     device: Any = None) -> tuple[Any, DhcpDevice]:
    """(``config`` with the leased ip/gateway/dns/mtu, the device wrapped for renewals)."""
    from vipernet.netd.links import open_link

    raw = device if device is not None else open_link(config.link, mtu=config.mtu)
    try:
        client = DhcpClient(mac=config.mac, rng=random.Random(config.seed),
                            config=DhcpConfig(hostname="vipernet"))
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
