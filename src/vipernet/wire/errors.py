"""Errors raised by :mod:`vipernet.wire`.

:class:`WireError` is for bytes that came off the wire and violate the protocol: it names
the layer, the field, the offending value and the condition that failed, so a drop counter
or a debug log line can say exactly why a packet was refused.  :class:`WireUsageError` is
for a caller asking a ``build_*`` function for something unencodable (a local bug).
"""

from __future__ import annotations

from vipernet.errors import ProtocolError, UsageError


class WireError(ProtocolError):
    """A packet violates its protocol: ``"<layer>: <field>=<value> violates <reason>"``."""

    def __init__(self, layer: str, field: str, value: object, reason: str) -> None:
        self.layer = layer
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{layer}: {field}={value} violates {reason}")

    def __reduce__(self) -> tuple[type[WireError], tuple[str, str, object, str]]:
        # Keep the four attributes across pickling (the default would pass only the message).
        return (type(self), (self.layer, self.field, self.value, self.reason))


class WireUsageError(UsageError, ValueError):
    """A ``build_*`` call asked for something the format cannot carry."""


def truncated(layer: str, have: int, need: int) -> WireError:
    """The error for a buffer shorter than a fixed part of a header."""
    return WireError(layer, "length", have, f"length >= {need}")
