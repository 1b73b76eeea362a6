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
    """NET_PING: one echo request, parked until its reply, an ICMP error or the timeout."""

    def __init__(self) -> None:
        self._sockets: dict[int, int] = {}  # client id -> its ping socket id

    def _socket(self, service: NetService, session: Session, now: float) -> Any:
        sock_id = self._sockets.get(session.client_id)
        entry = session.sockets.get(sock_id) if sock_id is not None else None
        if entry is None:
            entry = service.add_socket(session, service.stack.ping_socket(), SocketKind.ICMP,
                                       now)
            self._sockets[session.client_id] = entry.sock_id
        return entry.sock

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message | None:
        body = p.PingRequest.decode(request.body)
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
                rtt = max(0.0, reply.received_at - sent_at)
                out = p.PingReply(source=str(reply.src), seq=reply.seq, ttl=reply.ttl,
                                  rtt_ns=int(rtt * 1e9), size=8 + len(reply.payload))
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
        }
        if self.extra is not None:
            info.update(self.extra())
        return info

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message:
        p.Empty.decode(request.body)
        return p.reply_to(request, p.JsonBody(value=self.report(service)).encode())


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
    service.extensions[p.Code.GET_INFO] = InfoHandler(stack, device, link=link, extra=extra)
    try:
        dns_op = importlib.import_module("vipernet.netd.dns_op")
    except ImportError:  # the resolver is not in this build
        return service
    service.extensions[p.Code.DNS_RESOLVE] = dns_op.DnsHandler([str(d) for d in dns],
                                                               rng=stack.rng)
    return service
