"""The netd process: one device, one stack, one IPC socket, one loop.

:class:`Netd` opens the device named by ``--link``, builds the :class:`~vipernet.stack.Stack`
with the configured addresses, and runs a single-threaded selector loop over the device fd,
the AF_UNIX listener and every client channel.  Each turn: frames in -> stack, requests ->
:class:`~.service.NetService`, stack timers, parked operations whose sockets changed or whose
deadline passed, frames out.  The loop sleeps until the earliest of the stack's, the
device's and the parked operations' deadlines, so an idle netd costs nothing and a ping
is answered in one turn (this path is what ``benchmarks/ping_rtt.py`` measures).

SIGTERM/SIGINT stop the loop; shutdown closes every client, removes the socket file and
flushes the capture.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from types import FrameType
from typing import Any

from vipernet.netd.extensions import InfoHandler, PingHandler
from vipernet.netd.links import LinkSpec, open_link
from vipernet.netd.protocol import Code
from vipernet.netd.server import IpcServer
from vipernet.netd.service import NetService
from vipernet.stack import Stack, StackConfig

log = logging.getLogger("vipernet.netd")

DEFAULT_MAC = "52:54:00:12:34:56"
MAX_SLEEP = 1.0  # wake at least this often (signals, clock sanity)
SLIRP_IP = IPv4Interface("10.0.2.15/24")
SLIRP_GATEWAY = IPv4Address("10.0.2.2")
SLIRP_DNS = (IPv4Address("10.0.2.3"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetdConfig:
    """Everything ``vipernet netd`` takes on its command line; defaults are QEMU SLiRP's."""

    link: LinkSpec
    socket_path: str
    ip: IPv4Interface = SLIRP_IP
    gateway: IPv4Address | None = SLIRP_GATEWAY
    dns: tuple[IPv4Address, ...] = SLIRP_DNS
    mac: bytes = bytes.fromhex("525400123456")
    mtu: int = 1500
    pcap: str | None = None
    seed: int | None = None


class Netd:
    """The daemon; :meth:`run` until :meth:`stop` (or a signal)."""

    def __init__(self, config: NetdConfig, *, clock: Callable[[], float] = time.monotonic,
                 device: Any = None) -> None:
        self.config = config
        self.clock = clock
        self._running = False
        self._writer: Any = None
        raw = device if device is not None else open_link(config.link, mtu=config.mtu)
        self.device: Any = raw
        try:
            if config.pcap:
                pcap = importlib.import_module("vipernet.link.pcap")
                self._writer = pcap.PcapWriter(config.pcap)
                self.device = pcap.CapturingDevice(raw, self._writer)
            now = clock()
            stack_config = StackConfig(mac=config.mac, ip=config.ip, gateway=config.gateway,
                                       dns=config.dns, mtu=config.mtu)
            self.stack = Stack(stack_config, capabilities=self.device.capabilities, now=now,
                               rng=random.Random(config.seed))
            self.service = NetService(self.stack)
            self.service.extensions[Code.PING] = PingHandler()
            self.service.extensions[Code.GET_INFO] = InfoHandler(
                self.stack, self.device, link=str(config.link))
            self._install_dns()
            self.selector = selectors.DefaultSelector()
            fd = self.device.fileno()
            if fd is not None:
                self.selector.register(fd, selectors.EVENT_READ, self._on_device)
            self.server = IpcServer(self.service, config.socket_path, self.selector, clock)
        except BaseException:
            self._close_device()
            raise
        self._flush(clock())

    def _install_dns(self) -> None:
        try:
            dns_op = importlib.import_module("vipernet.netd.dns_op")
        except ImportError:  # the resolver is not in this build
            return
        self.service.extensions[Code.DNS_RESOLVE] = dns_op.DnsHandler(
            [str(d) for d in self.config.dns], rng=self.stack.rng)

    # ------------------------------------------------------------------ the loop

    def _on_device(self, mask: int) -> None:
        now = self.clock()
        receive = self.stack.receive
        for frame in self.device.receive(now):
            receive(frame, now)

    def _flush(self, now: float) -> None:
        send = self.device.send
        for frame in self.stack.transmit():
            send(frame, now)

    def run_once(self, max_sleep: float = MAX_SLEEP) -> None:
        now = self.clock()
        deadline = _earliest(self.stack.next_deadline(), self.device.next_deadline(),
                             self.service.next_deadline())
        wait = max_sleep if deadline is None else min(max_sleep, max(0.0, deadline - now))
        for key, mask in self.selector.select(wait):
            key.data(mask)
        now = self.clock()
        stack_due = self.stack.next_deadline()
        if stack_due is not None and stack_due <= now:
            self.stack.poll(now)
        device_due = self.device.next_deadline()
        if device_due is not None and device_due <= now:
            for frame in self.device.receive(now):
                self.stack.receive(frame, now)
        self._flush(now)
        service = self.service
        service.on_changed(now)
        due = service.next_deadline()
        if due is not None and due <= now:
            service.expire(now)
        self._flush(now)

    def run(self) -> None:
        self._running = True
        try:
            while self._running:
                self.run_once()
        finally:
            self.close()

    def stop(self) -> None:
        self._running = False

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.close()
        with contextlib.suppress(Exception):
            self._flush(self.clock())
        with contextlib.suppress(Exception):
            self.selector.close()
        self._close_device()

    def _close_device(self) -> None:
        with contextlib.suppress(Exception):
            self.device.close()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None


def _earliest(*deadlines: float | None) -> float | None:
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None
