"""TLS alert codes (RFC 8446 section 6) and the two-byte alert record body.

An alert travels as ``level, description``.  In TLS 1.3 every alert except
``close_notify`` and ``user_canceled`` is fatal whatever its level says, so the
level is kept only to be written correctly.
"""

from __future__ import annotations

import enum


class AlertLevel(enum.IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(enum.IntEnum):
    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


def describe(code: int) -> str:
    """A readable name for an alert code, including ones this module does not list."""
    try:
        return AlertDescription(code).name.lower()
    except ValueError:
        return f"unknown_alert_{code}"


def encode_alert(description: AlertDescription) -> bytes:
    level = AlertLevel.WARNING if description in _WARNING_ALERTS else AlertLevel.FATAL
    return bytes((level, description))


_WARNING_ALERTS = frozenset({AlertDescription.CLOSE_NOTIFY, AlertDescription.USER_CANCELED})
