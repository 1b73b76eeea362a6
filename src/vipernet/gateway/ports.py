"""Where guests come from: the ways a guest's NIC reaches ``vipernet gateway``.

A *port* turns a command-line choice into guest devices, now or as guests arrive:

* ``--qemu-stream ADDRESS`` — listen at ADDRESS (a UNIX path or HOST:PORT) for QEMU's
  ``-netdev stream,server=off,...``; every guest that connects gets a wire of its own, so
  one gateway serves any number of VMs.  ``ADDRESS,connect`` connects instead, to a QEMU
  started with ``server=on``.
* ``--qemu-dgram LOCAL,REMOTE`` — QEMU's ``-netdev dgram``: one frame per datagram.
* ``--tap NAME[@NETNS]`` — an existing TAP, with the virtio-net header (64 KiB TSO frames
  both ways).
* ``--vhost-user PATH`` — QEMU's ``-netdev vhost-user``: we are the virtio-net device,
  over the guest's shared-memory virtqueues (:mod:`vipernet.link.vhost_user`).

A listening port has a ``fileno`` the server watches and ``accept`` that yields the new
guests' devices; a fixed port yields its one device at start.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vipernet.errors import UsageError
from vipernet.link.frame import Device
from vipernet.link.qemu import Address, DgramDevice, StreamDevice, listening_socket

STREAM_BUFFER = 4 * 1024 * 1024  # bytes of socket buffer per direction on a stream wire


class PortSpecError(UsageError):
    """A guest port the gateway cannot understand."""


def parse_address(text: str) -> Address:
    """``"/run/x.sock"`` -> the path; ``"127.0.0.1:5000"`` -> ("127.0.0.1", 5000)."""
    host, sep, port = text.rpartition(":")
    if "/" in text or not sep or not host:
        if not text:
            raise PortSpecError("an empty address (want a UNIX path or HOST:PORT)")
        return text
    if not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise PortSpecError(f"bad port in {text!r} (want HOST:PORT or a UNIX path)")
    return (host, int(port))


class _GuestListener:
    """A UNIX (or TCP) listener whose every connection is one guest's device."""

    kind = ""

    def __init__(self, address: Address, *, mtu: int) -> None:
        self.address = address
        self.mtu = mtu
        self._sock, self._published = listening_socket(address, backlog=16)
        self._sock.setblocking(False)
        self.accepted = 0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.address}"

    def fileno(self) -> int:
        return self._sock.fileno()

    def accept(self) -> list[Device]:
        devices: list[Device] = []
        while True:
            try:
                conn, _peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return devices
            except OSError:
                return devices  # e.g. EMFILE: the next readiness tries again
            self.accepted += 1
            devices.append(self._device(conn, f"{self.name}#{self.accepted}"))

    def _device(self, conn: socket.socket, name: str) -> Device:
        raise NotImplementedError

    def close(self) -> None:
        self._sock.close()
        if self._published is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._published)
            self._published = None


class StreamListener(_GuestListener):
    """QEMU stream guests connecting to us, any number of them, each its own wire."""

    kind = "qemu-stream"

    def _device(self, conn: socket.socket, name: str) -> Device:
        _grow_buffers(conn)
        return StreamDevice(conn, name=name, mtu=self.mtu, autoflush=False)


def _grow_buffers(sock: socket.socket) -> None:
    """Room for a burst of frames each way: with the default (~200 KiB) a 64 KiB-MTU guest
    fills the socket with three frames, and every full socket is a trip through the loop."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, STREAM_BUFFER)


class VhostUserListener(_GuestListener):
    """vhost-user front ends (QEMU's ``-chardev socket,server=off``) connecting to a UNIX
    socket: a device and a wire for each connection."""

    kind = "vhost-user"

    def __init__(self, path: str, *, mtu: int) -> None:
        if not isinstance(path, str) or not path:
            raise PortSpecError("--vhost-user needs a UNIX socket path")
        self._module: Any = importlib.import_module("vipernet.link.vhost_user")
        super().__init__(path, mtu=mtu)

    def _device(self, conn: socket.socket, name: str) -> Device:
        # One device per front-end connection, no reconnecting: when that QEMU goes
        # away its wire ends and its flows are freed; the next QEMU (or the same one
        # after a reboot of its process) gets a fresh wire from this listener.
        device: Device = self._module.VhostUserDevice(name=name, conn=conn, reconnect=False,
                                                      mtu=self.mtu)
        return device


Listener = StreamListener | VhostUserListener


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One ``--qemu-stream`` / ``--qemu-dgram`` / ``--tap`` / ``--vhost-user`` value."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"--{self.kind} {self.value}"


def open_port(spec: PortSpec, *, mtu: int) -> Listener | Device:
    """A listener that yields guests as they connect, or the one guest device."""
    opener = _OPENERS.get(spec.kind)
    if opener is None:
        raise PortSpecError(f"unknown guest port {spec.kind!r}")
    return opener(spec.value, mtu)


def _stream(value: str, mtu: int) -> Listener | Device:
    where, _, mode = value.partition(",")
    if mode not in ("", "connect", "server"):
        raise PortSpecError(f"--qemu-stream: unknown mode {mode!r} (only 'connect')")
    address = parse_address(where)
    if mode == "connect":  # QEMU was started with server=on
        device = StreamDevice.connect(address, mtu=mtu)
        device.autoflush = False  # the wire flushes once per batch
        return device
    return StreamListener(address, mtu=mtu)


def _dgram(value: str, mtu: int) -> Device:
    local, sep, remote = value.partition(",")
    if not sep or not local or not remote:
        raise PortSpecError("--qemu-dgram needs LOCAL,REMOTE (two UNIX paths or HOST:PORTs)")
    return DgramDevice.open(parse_address(local), parse_address(remote), mtu=mtu)


def _tap(value: str, mtu: int) -> Device:
    from vipernet.link.tap import TapDevice

    name, _, netns = value.partition("@")
    return TapDevice.open(name, netns=netns or None, mtu=mtu)


def _vhost_user(value: str, mtu: int) -> Listener:
    return VhostUserListener(value, mtu=mtu)


_OPENERS: dict[str, Callable[[str, int], Listener | Device]] = {
    "qemu-stream": _stream,
    "qemu-dgram": _dgram,
    "tap": _tap,
    "vhost-user": _vhost_user,
}
KINDS = tuple(_OPENERS)


def is_listener(port: object) -> bool:
    return isinstance(port, StreamListener | VhostUserListener)

