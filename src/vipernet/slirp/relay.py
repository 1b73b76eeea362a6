"""One relayed connection: the host socket, the gateway's socket and what waits between them.

:func:`splice` moves bytes both ways without blocking, holding at most ``limit`` bytes per
direction (a full buffer stops the reading side: backpressure), and carries each side's
half-close to the other once everything before it has been delivered.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from vipernet.link.frame import Frame
from vipernet.slirp.nat import Flow


@dataclass(slots=True, eq=False)
class TcpRelay:
    """One guest TCP connection spliced to one host socket."""

    flow: Flow | None
    host: socket.socket
    gw: Any = None  # the gateway stack's TcpSocket once accepted / connected
    connecting: bool = True  # host connect (or, for a forward, the gateway's) in progress
    held_syn: Frame | None = None
    guest_mac: bytes = b""
    to_host: bytearray = field(default_factory=bytearray)
    to_guest: bytearray = field(default_factory=bytearray)
    guest_eof: bool = False
    host_eof: bool = False
    host_shut: bool = False
    guest_shut: bool = False
    interest: int = 0
    local_port: int = 0  # a forward's gateway-side port (not translated)
    created: float = 0.0


@dataclass(slots=True, eq=False)
class UdpRelay:
    flow: Flow
    host: socket.socket
    quote: bytes = b""  # the guest's last datagram's IP header + 8 bytes, for ICMP errors


def splice(relay: TcpRelay, limit: int, now: float) -> bool:
    """One non-blocking round both ways; True once both directions are closed and drained.

    Raises the OSError either side reported (reset, refused, broken pipe).
    """
    gw = relay.gw
    host = relay.host
    # guest -> host
    # ``readable``/``writable`` are cheap properties: checking them first spares the idle
    # relays an exception each round (receive() pumps every relay).
    if not relay.guest_eof and len(relay.to_host) < limit and gw.readable:
        try:
            data = gw.recv(limit - len(relay.to_host))
            if data:
                relay.to_host += data
            else:
                relay.guest_eof = True
        except BlockingIOError:
            pass
    if relay.to_host:
        try:
            sent = host.send(relay.to_host)
            del relay.to_host[:sent]
        except BlockingIOError:
            pass
    if relay.guest_eof and not relay.to_host and not relay.host_shut:
        relay.host_shut = True
        with contextlib.suppress(OSError):
            host.shutdown(socket.SHUT_WR)
    # host -> guest
    if not relay.host_eof and len(relay.to_guest) < limit:
        try:
            data = host.recv(limit - len(relay.to_guest))
            if data:
                relay.to_guest += data
            else:
                relay.host_eof = True
        except BlockingIOError:
            pass
    if relay.to_guest and gw.writable:
        try:
            sent = gw.send(relay.to_guest, now)
            del relay.to_guest[:sent]
        except BlockingIOError:
            pass
    if relay.host_eof and not relay.to_guest and not relay.guest_shut:
        relay.guest_shut = True
        gw.shutdown(socket.SHUT_WR, now)
    return relay.guest_eof and relay.host_eof and relay.guest_shut and relay.host_shut
