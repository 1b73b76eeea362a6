"""Kernel mode: the stack runs inside the calling process, behind the same socket API.

When ``VIPER_KERNEL_ENABLE_NET=1``, :func:`vipernet.netclient.default.default_client`
builds an :class:`InProcessStack` instead of connecting to netd: the device named by
``VIPERNET_LINK`` (``tap:NAME[@NETNS]``, same syntax as ``netd --link``), a
:class:`~vipernet.stack.Stack` with ``VIPERNET_IP`` / ``VIPERNET_GATEWAY`` / ``VIPERNET_DNS``
(IPv4 or IPv6 servers) / ``VIPERNET_MAC`` (SLiRP defaults) / ``VIPERNET_IP6`` (``auto``, the
default as for netd's ``--ip6``, ``off`` or a static ``ADDR/PREFIX``), and a
:class:`~vipernet.runtime.Runtime` loop in a background thread.

The socket layer does not change at all: :class:`InProcessChannel` implements the same
:class:`~vipernet.netclient.channel.Channel` as the AF_UNIX one and hands each request to
the very :class:`~vipernet.netd.service.NetService` netd uses, under the runtime lock
(``Runtime.call``).  Operations that would block park in the service exactly as in netd,
and the client thread waits on an event until the loop thread answers.  Messages are still
encoded, which costs a few microseconds and buys one code path for both modes.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_address
from typing import Any

from vipernet.netclient.channel import REPLY_GRACE, status_error
from vipernet.netclient.client import NetClient
from vipernet.netd import protocol as p
from vipernet.netd.extensions import full_service
from vipernet.netd.fdlink import FdPlane
from vipernet.netd.links import open_link, parse_link
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: p.Message | None = None


class InProcessStack:
    """A stack, its runtime thread and the service that answers requests."""

    def __init__(self, stack: Stack, device: Any, *, link: str = "",
                 clock: Callable[[], float] = time.monotonic,
                 dns: Sequence[object] | None = None) -> None:
        self.stack = stack
        self.device = device
        self.clock = clock
        self.service = full_service(stack, device, link=link,
                                    dns=stack.config.dns if dns is None else dns,
                                    extra=lambda: {"mode": "kernel"})
        self.runtime = Runtime(stack, device, clock=clock)
        self.runtime.add_hook(self.service.turn)
        FdPlane.install(self.service, self.runtime)
        self.runtime.start_thread("vipernet-kernel-mode")

    def channel(self) -> InProcessChannel:
        return InProcessChannel(self)

    def close(self) -> None:
        self.runtime.close()
        self.device.close()


class InProcessChannel:
    """A Channel whose 'netd' is a NetService in this process."""

    def __init__(self, host: InProcessStack) -> None:
        self._host = host
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        service = host.service
        self._session = host.runtime.call(
            lambda: service.open_session(self._deliver, peer="in-process", pid=os.getpid()))

    def _deliver(self, message: p.Message) -> None:
        # Runs under the runtime lock, on the loop thread or on a caller's thread.
        with self._lock:
            pending = self._pending.pop(message.request_id, None)
        if pending is not None:
            pending.reply = message
            pending.done.set()
        elif message.fd is not None:
            os.close(message.fd)  # a descriptor nobody waits for any more

    def call(self, code: int, body: bytes, wait: float | None, *,
             fd: int | None = None) -> p.Message:
        if self._closed:
            raise OSError(errno.EBADF, "channel closed")
        if fd is not None:  # one process, one session: there is nothing to adopt into
            raise OSError(errno.EOPNOTSUPP, "the in-process stack takes no descriptors")
        pending = _Pending()
        with self._lock:
            request_id = next(self._ids) & 0xFFFFFFFF
            self._pending[request_id] = pending
        request = p.Message(code=code, request_id=request_id, body=body)
        host = self._host
        service = host.service

        def run() -> None:
            now = host.clock()
            service.handle(self._session, request, now)
            if not pending.done.is_set():
                # Parked: make sure the loop wakes for the new deadline (its hook's
                # recorded deadline predates this waiter).
                due = service.next_deadline()
                if due is not None:
                    host.runtime.call_later(max(0.0, due - now), _nothing)

        host.runtime.call(run)
        limit = None if wait is None else wait + REPLY_GRACE
        if not pending.done.wait(limit):
            with self._lock:
                self._pending.pop(request_id, None)
            if host.runtime.error is not None:
                raise OSError(errno.ENETDOWN, f"stack stopped: {host.runtime.error}")
            raise TimeoutError(errno.ETIMEDOUT, "the in-process stack did not answer in time")
        reply = pending.reply
        assert reply is not None
        if reply.status:
            raise status_error(reply)
        return reply

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        host = self._host
        host.runtime.call(lambda: host.service.close_session(self._session, host.clock()))


def _nothing() -> None:
    """A timer whose only job is to wake the loop."""


_host_lock = threading.Lock()
_host: InProcessStack | None = None


def in_process_stack_from_env() -> InProcessStack:
    """Build the process's stack from VIPERNET_LINK and friends (kernel mode)."""
    link_text = os.environ.get("VIPERNET_LINK")
    if not link_text:
        raise OSError(errno.ENODEV, "kernel mode needs VIPERNET_LINK=tap:NAME[@NETNS]")
    spec = parse_link(link_text)
    mac_text = os.environ.get("VIPERNET_MAC", "52:54:00:12:34:56")
    gateway_text = os.environ.get("VIPERNET_GATEWAY", "10.0.2.2")
    servers = [ip_address(d.strip())
               for d in os.environ.get("VIPERNET_DNS", "10.0.2.3").split(",") if d.strip()]
    # VIPERNET_IP6: auto (the default, as netd's --ip6), off, or a static ADDR/PREFIX.
    ip6_text = os.environ.get("VIPERNET_IP6", "auto").strip()
    ip6_mode = ip6_text.lower() if ip6_text.lower() in ("auto", "off") else "static"
    config = StackConfig(
        mac=bytes.fromhex(mac_text.replace(":", "")),
        ip=IPv4Interface(os.environ.get("VIPERNET_IP", "10.0.2.15/24")),
        gateway=None if gateway_text.lower() == "none" else IPv4Address(gateway_text),
        dns=tuple(d for d in servers if isinstance(d, IPv4Address)),
        ip6=ip6_mode,
        ip6_address=IPv6Interface(ip6_text) if ip6_mode == "static" else None,
    )
    device = open_link(spec, mtu=config.mtu)
    try:
        stack = Stack(config, capabilities=device.capabilities, now=time.monotonic(),
                      rng=random.Random())
        return InProcessStack(stack, device, link=str(spec), dns=servers)
    except BaseException:
        device.close()
        raise


def in_process_client() -> NetClient:
    """A client of this process's in-process stack (built on first use)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = in_process_stack_from_env()
        return NetClient(_host.channel())
