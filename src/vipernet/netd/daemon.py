"""The netd process: one device, one stack, one IPC socket, one loop.

:class:`Netd` opens the device named by ``--link``, builds the :class:`~vipernet.stack.Stack`
with the configured addresses and drives both with a :class:`~vipernet.runtime.Runtime`.
The IPC listener and every client channel sit on the runtime's selector, and a runtime
hook runs after every turn to retry the parked operations whose sockets the stack reported
changed and to answer those whose deadline passed (its return value is the earliest parked
deadline, so the loop sleeps exactly until something is due).  Each turn is: frames in ->
stack, requests -> :class:`~.service.NetService`, stack timers, parked operations, frames
out; a ping is answered within one turn (what ``benchmarks/ping_rtt.py`` measures).

SIGTERM/SIGINT stop the loop; shutdown closes every client, removes the socket file and
flushes the capture.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from types import FrameType
from typing import Any

from vipernet.link.errors import DeviceClosed
from vipernet.netd.extensions import full_service
from vipernet.netd.fdlink import FdPlane
from vipernet.netd.links import LinkSpec, open_link
from vipernet.netd.server import IpcServer
from vipernet.netd.vhosts import attach_virtual_hosts
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig
from vipernet.vhosts.ranges import HostRange

log = logging.getLogger("vipernet.netd")

DEFAULT_MAC = "52:54:00:12:34:56"
MAX_SLEEP = 1.0  # wake at least this often (signals, clock sanity)
MAX_LOOP_ERRORS = 5  # per minute before netd gives up
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
    dns: tuple[IPv4Address | IPv6Address, ...] = SLIRP_DNS  # the resolver's servers
    mac: bytes = bytes.fromhex("525400123456")
    mtu: int = 1500
    pcap: str | None = None
    seed: int | None = None
    ip6: str = "auto"  # off | auto (link-local + SLAAC from RAs) | static (ip6_address)
    ip6_address: IPv6Interface | None = None
    hosts: HostRange | None = None  # --hosts: virtual hosts on the same wire (netd.vhosts)


class Netd:
    """The daemon; :meth:`run` until :meth:`stop` (or a signal)."""

    def __init__(self, config: NetdConfig, *, clock: Callable[[], float] = time.monotonic,
                 device: Any = None) -> None:
        self.config = config
        self.clock = clock
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
                                       dns=tuple(d for d in config.dns
                                                 if isinstance(d, IPv4Address)),
                                       mtu=config.mtu, ip6=config.ip6,
                                       ip6_address=config.ip6_address)
            self.stack = Stack(stack_config, capabilities=self.device.capabilities, now=now,
                               rng=random.Random(config.seed))
            self.service = full_service(self.stack, self.device, link=str(config.link),
                                        dns=config.dns)
            if config.hosts is not None:
                self.device = attach_virtual_hosts(self.stack, self.device, self.service,
                                                   config.hosts, now)
            self.runtime = Runtime(self.stack, self.device, clock=clock)
            # After every turn: retry waiters whose sockets changed, expire the overdue.
            self.runtime.add_hook(self.service.turn)
            FdPlane.install(self.service, self.runtime)
            self.server = IpcServer(self.service, config.socket_path, self.runtime.selector,
                                    clock)
        except BaseException:
            if hasattr(self, "runtime"):
                self.runtime.close()
            self._close_device()
            raise

    # ------------------------------------------------------------------ the loop

    def run_once(self, timeout: float | None = MAX_SLEEP) -> None:
        self.runtime.run_once(timeout)

    def run(self) -> None:
        """Serve until stopped.  A loop error is logged and the loop resumed (one bad turn
        must not drop every client), unless errors repeat: more than
        :data:`MAX_LOOP_ERRORS` within a minute re-raise.  :class:`DeviceClosed` (the
        link's peer went away) ends the loop at once."""
        errors: deque[float] = deque()
        try:
            while True:
                try:
                    self.runtime.run_forever()
                    return
                except DeviceClosed:
                    # The peer hung up (a stream link's EOF) or the device vanished: no
                    # retry can bring it back, so stop at once with the reason.
                    raise
                except Exception:
                    now = self.clock()
                    errors.append(now)
                    while errors and errors[0] < now - 60.0:
                        errors.popleft()
                    if len(errors) > MAX_LOOP_ERRORS:
                        raise
                    log.warning("loop error %d in the last minute; resuming", len(errors))
        finally:
            self.close()

    def stop(self) -> None:
        self.runtime.stop()

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
            self.runtime.close()
        self._close_device()

    def _close_device(self) -> None:
        with contextlib.suppress(Exception):
            self.device.close()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None


