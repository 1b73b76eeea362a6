"""Typed errors of the device layer.

Each message is one line a CLI can print as is ("no such interface: vt0 in namespace ns1").
"""

from __future__ import annotations

from vipernet.errors import ProtocolError, UsageError, VipernetError


class LinkError(VipernetError):
    """Something went wrong opening or driving a network device."""


class NoSuchInterface(LinkError):
    """The named TAP (or namespace) does not exist where we looked for it."""


class PermissionDenied(LinkError):
    """The OS refused: usually missing root / CAP_NET_ADMIN, or the TAP belongs to another user."""


class DeviceBusy(LinkError):
    """The TAP is already attached to another process (single-queue TAPs allow one reader)."""


class DeviceClosed(LinkError):
    """The device was closed, locally or by the peer (a stream socket hit EOF)."""


class LinkProtocolError(LinkError, ProtocolError):
    """The peer broke the framing protocol (e.g. a QEMU stream length that cannot be a frame)."""


class LinkUsageError(LinkError, UsageError):
    """The caller handed the device something it cannot send (e.g. a frame over max_frame)."""
