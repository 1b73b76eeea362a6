"""``--link`` specifications: which device netd drives, as ``KIND:ARGUMENT``.

Kinds register an opener in :data:`OPENERS`, so new ones (``user``, ``passt``,
``qemu-stream:PATH``) plug in without touching the daemon:

* ``tap:NAME`` / ``tap:NAME@NETNS`` - an existing Linux TAP (virtio-net header on), opened
  inside namespace NETNS if given (``--netns`` says the same).
* ``qemu-stream:ADDRESS`` - connect to a QEMU ``-netdev stream`` / passt socket: ADDRESS is
  a UNIX path or ``HOST:PORT``; ``qemu-stream:ADDRESS,server`` listens there instead and
  waits for one peer (QEMU's ``server=on``: start netd first, then the peer).
* ``qemu-dgram:LOCAL,REMOTE`` - QEMU ``-netdev dgram``: one frame per datagram, bound at
  LOCAL and sent to REMOTE (both UNIX paths or both ``HOST:PORT``).
* ``passt`` / ``passt:ADDRESS/PREFIX`` - start Debian's passt (``vipernet.slirp.passt``),
  which hands out ADDRESS (10.0.2.15/24) by DHCP: use with ``--ip dhcp``.
* ``user`` / ``user:OPTIONS`` - the built-in user-mode gateway (``vipernet.slirp``, no
  root): ``restrict``, ``forward=tcp:HOSTPORT:GUESTPORT``, ``dns=IP[:PORT]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vipernet.errors import UsageError


class LinkSpecError(UsageError):
    """A ``--link`` value netd cannot understand."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    kind: str
    argument: str
    netns: str | None = None

    def __str__(self) -> str:
        where = f"@{self.netns}" if self.netns else ""
        argument = f":{self.argument}" if self.argument else ""
        return f"{self.kind}{argument}{where}"


def parse_link(text: str, *, netns: str | None = None) -> LinkSpec:
    """``"tap:vt0@ns1"`` -> LinkSpec(kind="tap", argument="vt0", netns="ns1")."""
    kind, sep, argument = text.partition(":")
    kind = kind.strip().lower()
    if kind in ARGUMENT_OPTIONAL and not argument:  # "--link passt", "--link user"
        return LinkSpec(kind=kind, argument="", netns=netns)
    if not sep or not kind:
        raise LinkSpecError(f"--link must look like KIND:ARGUMENT (e.g. tap:tap0), got {text!r}")
    if kind not in OPENERS:
        known = ", ".join(sorted(OPENERS))
        raise LinkSpecError(f"unknown link kind {kind!r} (known: {known})")
    if kind == "tap" and "@" in argument:
        argument, _, ns = argument.partition("@")
        if netns and ns != netns:
            raise LinkSpecError(f"namespace given twice: {ns!r} and --netns {netns!r}")
        netns = ns or None
    if not argument:
        raise LinkSpecError(f"--link {kind}: needs an argument")
    return LinkSpec(kind=kind, argument=argument, netns=netns)


def _open_tap(spec: LinkSpec, mtu: int) -> Any:
    from vipernet.link.tap import TapDevice

    return TapDevice.open(spec.argument, netns=spec.netns, mtu=mtu)


def socket_address(text: str) -> str | tuple[str, int]:
    """``"/run/x.sock"`` -> the path; ``"127.0.0.1:5000"`` -> ("127.0.0.1", 5000).

    A UNIX path is anything with a ``/`` or without a ``HOST:PORT`` shape, so a relative
    ``./x.sock`` or ``x.sock`` names a file.
    """
    host, sep, port = text.rpartition(":")
    if "/" in text or not sep or not host:
        return text
    if not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise LinkSpecError(f"bad port in {text!r} (want HOST:PORT or a UNIX path)")
    return (host, int(port))


def _open_qemu_stream(spec: LinkSpec, mtu: int) -> Any:
    from vipernet.link.qemu import StreamDevice

    where, _, mode = spec.argument.partition(",")
    if mode not in ("", "server"):
        raise LinkSpecError(f"--link qemu-stream: unknown option {mode!r} (only 'server')")
    address = socket_address(where)
    if mode == "server":  # QEMU server=on: wait here until the peer connects
        return StreamDevice.listen(address, mtu=mtu)
    return StreamDevice.connect(address, mtu=mtu)


def _open_qemu_dgram(spec: LinkSpec, mtu: int) -> Any:
    from vipernet.link.qemu import DgramDevice

    local, sep, remote = spec.argument.partition(",")
    if not sep or not local or not remote:
        raise LinkSpecError("--link qemu-dgram needs LOCAL,REMOTE (two paths or HOST:PORTs)")
    return DgramDevice.open(socket_address(local), socket_address(remote), mtu=mtu)


def _open_passt(spec: LinkSpec, mtu: int) -> Any:
    # Owned by vipernet.slirp (usermode brief): starts Debian's passt, attaches over its socket.
    passt = importlib.import_module("vipernet.slirp.passt")
    return passt.PasstDevice.start_from_spec(spec.argument, mtu=mtu)


def _open_user(spec: LinkSpec, mtu: int) -> Any:
    # Owned by vipernet.slirp (usermode brief): the built-in user-mode gateway, no root.
    import time

    slirp = importlib.import_module("vipernet.slirp")
    config = slirp.SlirpConfig.from_argument(spec.argument)
    return slirp.SlirpDevice(config, mtu=mtu, now=time.monotonic())


OPENERS: dict[str, Callable[[LinkSpec, int], Any]] = {
    "tap": _open_tap,
    "qemu-stream": _open_qemu_stream,
    "qemu-dgram": _open_qemu_dgram,
    "passt": _open_passt,
    "user": _open_user,
}
# Kinds that may be given without ":ARGUMENT".
ARGUMENT_OPTIONAL: set[str] = {"passt", "user"}


def open_link(spec: LinkSpec, *, mtu: int = 1500) -> Any:
    """Open the device a spec names (raises the link layer's typed errors)."""
    return OPENERS[spec.kind](spec, mtu)
