"""The client side of netd's virtual hosts (``vipernet netd --hosts``, docs/vhosts.md).

:func:`create_on_host` is what ``vipernet.socket.socket(..., host="10.0.2.101")`` calls:
NET_SOCKET_CREATE_ON_HOST (0x4F) makes the socket in that host's stack, and from then on
it is an ordinary netd socket (connect, send, its descriptor...).  :func:`list_hosts`,
:func:`add_hosts` and :func:`remove_hosts` are NET_HOSTS (0x4E).  The wire format is
:mod:`vipernet.netd.vhosts`.
"""

from __future__ import annotations

import errno
from ipaddress import IPv4Address
from typing import Any

from vipernet.netclient.client import NetClient
from vipernet.netd import protocol as p
from vipernet.netd.vhosts import (
    HOSTS,
    OP_ADD,
    OP_LIST,
    OP_REMOVE,
    SOCKET_CREATE_ON_HOST,
    CreateOnHostRequest,
    HostsRequest,
)
from vipernet.stack.socket_api import AF_INET, SocketKind


def create_on_host(client: NetClient, kind: SocketKind, family: int, host: str) -> int:
    """A new socket living in virtual host ``host``'s stack; its netd id."""
    if family != AF_INET:
        raise OSError(errno.EAFNOSUPPORT, "virtual hosts are IPv4 only")
    try:
        IPv4Address(host)
    except ValueError:
        raise OSError(errno.EINVAL, f"host must be a virtual host's IPv4 address: "
                                    f"{host!r}") from None
    body = client._call(SOCKET_CREATE_ON_HOST, CreateOnHostRequest(kind=int(kind), host=host))
    return p.SocketRef.decode(body).sock


def _hosts(client: NetClient, request: HostsRequest) -> dict[str, Any]:
    return p.JsonBody.decode(client._call(HOSTS, request)).value


def list_hosts(client: NetClient) -> dict[str, Any]:
    """``{"count": N, "hosts": [ip, ...]}`` (the first 20,000 IPs)."""
    return _hosts(client, HostsRequest(op=OP_LIST))


def add_hosts(client: NetClient, first: str, count: int, prefixlen: int = 0) -> int:
    """Add ``count`` hosts from ``first`` (prefix 0: netd's own); how many were added."""
    value = _hosts(client, HostsRequest(op=OP_ADD, first=first, count=count,
                                        prefixlen=prefixlen))
    return int(str(value["added"]))


def remove_hosts(client: NetClient, first: str, count: int = 1) -> int:
    """Remove the hosts among ``count`` addresses from ``first``; how many there were."""
    value = _hosts(client, HostsRequest(op=OP_REMOVE, first=first, count=count))
    return int(str(value["removed"]))
