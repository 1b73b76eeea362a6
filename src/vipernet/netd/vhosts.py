"""netd's virtual hosts: ``vipernet netd --hosts N[@FIRST[/PREFIX]]`` and two requests.

:func:`attach_virtual_hosts` puts a :class:`~vipernet.vhosts.VirtualHosts` on netd's wire
(the device is wrapped in a :class:`~vipernet.vhosts.SwitchedDevice`, so the runtime and
netd's own stack do not change) and adds two extensions to the service:

* ``NET_HOSTS`` (0x4E): ``op`` u8 -- 1 LIST (no more body), 2 ADD (``first`` IPv4,
  ``count`` u32, ``prefixlen`` u8: 0 = netd's own), 3 REMOVE (``first`` IPv4, ``count``
  u32).  The reply is a JSON object: LIST ``{"count", "hosts": [ip...]}`` (the first
  :data:`MAX_LISTED`), ADD ``{"added"}`` (all or none: ``EEXIST`` if one is taken),
  REMOVE ``{"removed", "sockets_closed"}``.
* ``NET_SOCKET_CREATE_ON_HOST`` (0x4F): ``kind`` u8 as SOCKET_CREATE (IPv4 kinds only),
  ``host`` IPv4: a socket living in that host's stack (its address, its ports); the
  reply is SOCKET_CREATE's. Every other request then treats it as any socket. No such
  host: ``EADDRNOTAVAIL``.

Readiness changes of the hosts' sockets go to netd's own stack (``mark_changed``), so the
service's one ``take_changed`` covers every host.  Removing a host releases its sockets
in the service (their parked requests answered ``EBADF``, their descriptors closed).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, ClassVar

from vipernet.netd import protocol as p
from vipernet.netd.bodies import Field, ipv4, u8
from vipernet.netd.protocol import Message
from vipernet.netd.service import NetService, Session
from vipernet.stack.socket_api import SocketKind
from vipernet.vhosts import HostExists, HostRange, SwitchedDevice, VirtualHosts

HOSTS = 0x4E
SOCKET_CREATE_ON_HOST = 0x4F
OP_LIST, OP_ADD, OP_REMOVE = 1, 2, 3
MAX_LISTED = 20000  # IPs in a LIST reply: ~17 bytes each, well inside the 1 MiB body cap
MAX_PER_REQUEST = 1 << 16  # hosts one ADD / REMOVE may name


@dataclass(frozen=True, slots=True, kw_only=True)
class HostsRequest(p.Body):
    """NET_HOSTS: op u8, then ADD: first ipv4, count u32, prefixlen u8; REMOVE: first
    ipv4, count u32; LIST: nothing."""

    name: ClassVar[str] = "HOSTS"
    op: int
    first: str = "0.0.0.0"
    count: int = 0
    prefixlen: int = 0

    def _push(self, w: Any) -> None:
        w.push_uint8(self.op)
        if self.op in (OP_ADD, OP_REMOVE):
            w.push_bytes(IPv4Address(self.first).packed)
            w.push_uint32(self.count)
        if self.op == OP_ADD:
            w.push_uint8(self.prefixlen)

    @classmethod
    def _pull(cls, b: Any) -> HostsRequest:
        op = b.pull_uint8()
        if op == OP_LIST:
            return cls(op=op)
        if op not in (OP_ADD, OP_REMOVE):
            raise p.MalformedMessage(f"HOSTS: unknown op {op}")
        first = str(IPv4Address(bytes(b.pull_bytes(4))))
        count = b.pull_uint32()
        if not 1 <= count <= MAX_PER_REQUEST:
            raise p.MalformedMessage(f"HOSTS: count {count} (want 1-{MAX_PER_REQUEST})")
        prefixlen = b.pull_uint8() if op == OP_ADD else 0
        if prefixlen and not 8 <= prefixlen <= 30:
            raise p.MalformedMessage(f"HOSTS: prefix length {prefixlen} (want 8-30, or 0)")
        return cls(op=op, first=first, count=count, prefixlen=prefixlen)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateOnHostRequest(p.Body):
    """NET_SOCKET_CREATE_ON_HOST: kind u8 (1 TCP, 2 UDP, 3 ICMP ping), host ipv4."""

    name: ClassVar[str] = "SOCKET_CREATE_ON_HOST"
    layout: ClassVar[tuple[Field, ...]] = (u8("kind"), ipv4("host"))
    kind: int
    host: str


class HostsService:
    """The two extensions, over one switch; also what netd reports about the hosts."""

    def __init__(self, service: NetService, hosts: VirtualHosts,
                 default_prefixlen: int) -> None:
        self.service = service
        self.hosts = hosts
        self.default_prefixlen = default_prefixlen
        self._owner: dict[int, IPv4Address] = {}  # socket id -> the host it lives on

    def install(self) -> None:
        self.service.extensions[HOSTS] = self.handle_hosts
        self.service.extensions[SOCKET_CREATE_ON_HOST] = self.handle_create

    def handle_hosts(self, service: NetService, session: Session, request: Message,
                     now: float) -> Message:
        body = HostsRequest.decode(request.body)
        if body.op == OP_LIST:
            listed = [str(stack.config.ip.ip) for _, stack in zip(range(MAX_LISTED),
                                                                  self.hosts, strict=False)]
            value: dict[str, object] = {"count": len(self.hosts), "hosts": listed}
        elif body.op == OP_ADD:
            prefixlen = body.prefixlen or self.default_prefixlen
            plan = HostRange(IPv4Address(body.first), body.count, prefixlen)
            if int(plan.first) + plan.count - 1 >= int(plan.network.broadcast_address) \
                    or plan.first == plan.network.network_address:
                raise OSError(errno.EINVAL, f"{plan} does not fit {plan.network}")
            try:
                added = add_hosts(self.hosts, self.service.stack, plan, now)
            except HostExists as exc:
                raise OSError(errno.EEXIST, str(exc)) from None
            value = {"added": len(added)}
        else:
            first = int(IPv4Address(body.first))
            gone = {IPv4Address(first + i) for i in range(body.count)
                    if IPv4Address(first + i) in self.hosts}
            closed = self._release_sockets_of(gone, now)
            for ip in gone:
                self.hosts.remove(ip)
            value = {"removed": len(gone), "sockets_closed": closed}
        return p.reply_to(request, p.JsonBody(value=value).encode())

    def handle_create(self, service: NetService, session: Session, request: Message,
                      now: float) -> Message:
        body = CreateOnHostRequest.decode(request.body)
        try:
            kind = SocketKind(body.kind)
        except ValueError:
            raise p.MalformedMessage(f"SOCKET_CREATE_ON_HOST: kind {body.kind}") from None
        host_ip = IPv4Address(body.host)
        stack = self.hosts.get(host_ip)
        if stack is None:
            raise OSError(errno.EADDRNOTAVAIL, f"no virtual host {host_ip}")
        sock: Any
        if kind == SocketKind.UDP:
            sock = stack.udp_socket()
        elif kind == SocketKind.ICMP:
            sock = stack.ping_socket()
        else:
            sock = stack.tcp_socket()
        entry = service.add_socket(session, sock, kind, now)
        self._owner[entry.sock_id] = host_ip
        if len(self._owner) > 2 * len(service.sockets) + 1024:
            self._owner = {sid: ip for sid, ip in self._owner.items()
                           if sid in service.sockets}
        return p.reply_to(request, p.SocketRef(sock=entry.sock_id).encode())

    def _release_sockets_of(self, gone: set[IPv4Address], now: float) -> int:
        closed = 0
        for sock_id, ip in list(self._owner.items()):
            if ip not in gone:
                continue
            del self._owner[sock_id]
            entry = self.service.sockets.get(sock_id)
            if entry is not None:
                self.service.release_linked(entry, now)
                closed += 1
        return closed


def attach_virtual_hosts(stack: Any, device: Any, service: NetService, plan: HostRange,
                         now: float) -> SwitchedDevice:
    """netd's device with ``plan``'s hosts switched in, and the extensions installed."""
    ip: IPv4Interface = stack.config.ip
    hosts = VirtualHosts(capabilities=device.capabilities, now=now, rng=stack.rng,
                         gateway=stack.config.gateway, mtu=stack.mtu,
                         on_changed=stack.mark_changed)
    add_hosts(hosts, stack, plan, now)
    HostsService(service, hosts, ip.network.prefixlen).install()
    return SwitchedDevice(device, hosts)


def add_hosts(hosts: VirtualHosts, stack: Any, plan: HostRange, now: float) -> list[Any]:
    """``plan``'s hosts, refused whole if one would take netd's own address."""
    own: IPv4Address = stack.config.ip.ip
    if int(plan.first) <= int(own) < int(plan.first) + plan.count:
        raise HostExists(f"hosts {plan} include netd's own address {own}")
    return hosts.add_range(plan, now)
