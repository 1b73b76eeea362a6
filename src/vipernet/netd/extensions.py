"""netd requests that are services rather than socket calls: PING and GET_INFO (and DNS).

Each is an :class:`~.service.Extension` added to ``NetService.extensions`` by the daemon
(or by kernel mode), so the socket core stays free of device and configuration knowledge.
PING uses one ping socket per session (listed by ``vipernet stat`` like any other socket,
released with the session); the reply's round-trip time is the stack's receive time of the
echo reply minus the time the request was handled, both on netd's monotonic clock.
:func:`full_service` builds the service both netd and kernel mode run: sockets plus PING,
GET_INFO and, when the resolver is in the build, DNS_RESOLVE (``vipernet.netd.dns_op``).
"""

from __future__ import annotations

import errno
import importlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from vipernet.netd import protocol as p
from vipernet.netd.protocol import Message
from vipernet.netd.service import NetService, Session, Waiter, deadline_after
from vipernet.stack.socket_api import SocketKind

MAX_STALE = 128  # more than the stack queues per ping socket


class PingHandler:
    """NET_PING (IPv4) or NET_PING6: one echo request, parked until its reply, an ICMP
    error or the timeout."""

    def __init__(self, *, ipv6: bool = False) -> None:
        self._ipv6 = ipv6
        self._sockets: dict[int, int] = {}  # client id -> its ping socket id

    def _socket(self, service: NetService, session: Session, now: float) -> Any:
        sock_id = self._sockets.get(session.client_id)
        entry = session.sockets.get(sock_id) if sock_id is not None else None
        if entry is None:
            stack: Any = service.stack
            if self._ipv6:
                if getattr(stack, "ipv6", None) is None:
                    raise OSError(errno.EAFNOSUPPORT, "IPv6 is off in this netd (--ip6 off)")
                sock = stack.pings6.open_socket()
            else:
                sock = stack.ping_socket()
            entry = service.add_socket(session, sock, SocketKind.ICMP, now)
            self._sockets[session.client_id] = entry.sock_id
        return entry.sock

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message | None:
        body = (p.Ping6Request if self._ipv6 else p.PingRequest).decode(request.body)
        sock = self._socket(service, session, now)
        for _ in range(MAX_STALE):  # forget replies (and errors) of earlier, timed-out pings
            try:
                sock.recv_reply()
            except BlockingIOError:
                break
            except OSError:
                continue
        sock.send_echo(body.destination, body.seq, body.payload, now)
        sent_at = now
        ipv6 = self._ipv6

        def step(t: float, expired: bool) -> Message | None:
            while True:
                try:
                    reply = sock.recv_reply()
                except BlockingIOError:
                    if expired:
                        return p.error_reply(request, errno.ETIMEDOUT, "no echo reply")
                    return None
                if reply.seq != body.seq:
                    continue
                rtt_ns = int(max(0.0, reply.received_at - sent_at) * 1e9)
                size = 8 + len(reply.payload)
                out: p.Ping6Reply | p.PingReply
                if ipv6:
                    out = p.Ping6Reply(source=str(reply.src), seq=reply.seq,
                                       hop_limit=reply.ttl, rtt_ns=rtt_ns, size=size)
                else:
                    out = p.PingReply(source=str(reply.src), seq=reply.seq, ttl=reply.ttl,
                                      rtt_ns=rtt_ns, size=size)
                return p.reply_to(request, out.encode())

        answer = step(now, False)
        if answer is not None:
            return answer
        if body.timeout_ms == 0:
            return p.error_reply(request, errno.EAGAIN, "no echo reply yet")
        deadline = deadline_after(now, body.timeout_ms)
        service.park(Waiter(session, request, (sock,), deadline, step))
        return None


class InfoHandler:
    """NET_GET_INFO: addresses, MTU, offloads, counters, netd's pid and uptime."""

    def __init__(self, stack: Any, device: Any, *, link: str,
                 started: float | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.stack = stack
        self.device = device
        self.link = link
        self.started_mono = time.monotonic() if started is None else started
        self.started_wall = time.time()
        self.extra = extra

    def report(self, service: NetService) -> dict[str, Any]:
        config = self.stack.config
        caps = getattr(self.device, "capabilities", None) or self.stack.capabilities
        device_counters = getattr(self.device, "counters", None)
        info: dict[str, Any] = {
            "link": self.link,
            "device": getattr(self.device, "name", ""),
            "mac": config.mac.hex(":"),
            "ip": str(config.ip.ip),
            "netmask": str(config.ip.netmask),
            "prefix": config.ip.network.prefixlen,
            "gateway": str(config.gateway) if config.gateway is not None else None,
            "dns": [str(d) for d in config.dns],
            "mtu": config.mtu,
            "offloads": {"tx_csum": bool(caps.tx_csum_offload), "tso": bool(caps.tso),
                         "max_frame": int(caps.max_frame)},
            "counters": self.stack.counters.snapshot(),
            "device_counters": _counters_dict(device_counters),
            "netd_counters": dict(sorted(service.counters.items())),
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self.started_mono, 3),
            "started": self.started_wall,
            "clients": len(service.sessions),
            "sockets": len(service.sockets),
            "ipv6": ipv6_report(self.stack, time.monotonic()),
        }
        if self.extra is not None:
            info.update(self.extra())
        return info

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message:
        p.Empty.decode(request.body)
        return p.reply_to(request, p.JsonBody(value=self.report(service)).encode())


def ipv6_report(stack: Any, now: float) -> dict[str, Any] | None:
    """GET_INFO's ``ipv6`` object (None when the stack runs without IPv6)."""
    if getattr(stack, "ipv6", None) is None:
        return None
    ac = stack.nd.addrconf
    return {
        "mode": stack.config.ip6,
        "enabled": not ac.disabled,
        "addresses": [{"address": str(a.address), "prefix": a.prefix_length,
                       "state": a.state, "origin": a.origin} for a in ac.addresses(now)],
        "routers": [str(r) for r in ac.routers(now)],
        "prefixes": [str(p) for p in ac.prefixes(now)],
        "dns": [str(d) for d in ac.dns_servers(now)],
        "mtu": ac.link_mtu,
        "hop_limit": ac.hop_limit,
        "groups": [str(g) for g in stack.mld.groups],
        "neighbors": {str(addr): {"mac": info.link_address.hex(":") if info.link_address else None,
                                  "state": str(info.state), "router": info.is_router}
                      for addr, info in stack.nd.neighbors.entries(now).items()},
    }


def _counters_dict(counters: Any) -> dict[str, int]:
    if counters is None:
        return {}
    for method in ("snapshot", "as_dict"):
        fn = getattr(counters, method, None)
        if callable(fn):
            value = fn()
            if isinstance(value, dict):
                return {str(k): int(v) for k, v in value.items()}
    if hasattr(counters, "__dataclass_fields__"):
        return {k: int(getattr(counters, k)) for k in counters.__dataclass_fields__}
    if hasattr(counters, "__dict__"):
        return {k: int(v) for k, v in vars(counters).items() if isinstance(v, int)}
    return {}


def full_service(stack: Any, device: Any, *, link: str, dns: Sequence[object],
                 extra: Callable[[], dict[str, Any]] | None = None) -> NetService:
    """A NetService for ``stack`` with PING, GET_INFO and DNS_RESOLVE (servers ``dns``)."""
    service = NetService(stack)
    service.extensions[p.Code.PING] = PingHandler()
    service.extensions[p.Code.PING6] = PingHandler(ipv6=True)
    service.extensions[p.Code.GET_INFO] = InfoHandler(stack, device, link=link, extra=extra)
    try:
        dns_op = importlib.import_module("vipernet.netd.dns_op")
    except ImportError:  # the resolver is not in this build
        return service
    def learned(now: float) -> list[str]:
        if getattr(stack, "ipv6", None) is None:
            return []
        return [str(server) for server in stack.nd.addrconf.dns_servers(now)]

    handler = dns_op.DnsHandler([str(d) for d in dns], rng=stack.rng, learned=learned)
    service.extensions[p.Code.DNS_RESOLVE] = handler
    service.extensions[p.Code.DNS_RESOLVE_ALL] = handler.resolve_all
    return service
