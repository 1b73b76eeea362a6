"""SSH errors: one root, subclasses that carry the SSH disconnect reason or the SFTP status.

``SSHProtocolError`` means the peer broke the protocol (a remote error); ``SSHDisconnect``
means a DISCONNECT message arrived (or we sent one); ``MACError`` is a tampered or corrupted
packet.  Host key trouble and failed authentication have their own classes so callers (and
the CLI) can say exactly what went wrong.
"""

from __future__ import annotations

import enum

from vipernet.errors import ProtocolError, UsageError, VipernetError


class DisconnectReason(enum.IntEnum):
    """RFC 4250 section 4.2.2."""

    HOST_NOT_ALLOWED_TO_CONNECT = 1
    PROTOCOL_ERROR = 2
    KEY_EXCHANGE_FAILED = 3
    RESERVED = 4
    MAC_ERROR = 5
    COMPRESSION_ERROR = 6
    SERVICE_NOT_AVAILABLE = 7
    PROTOCOL_VERSION_NOT_SUPPORTED = 8
    HOST_KEY_NOT_VERIFIABLE = 9
    CONNECTION_LOST = 10
    BY_APPLICATION = 11
    TOO_MANY_CONNECTIONS = 12
    AUTH_CANCELLED_BY_USER = 13
    NO_MORE_AUTH_METHODS_AVAILABLE = 14
    ILLEGAL_USER_NAME = 15


class SSHError(VipernetError):
    """Base class of every SSH error; ``reason`` is the disconnect reason it implies."""

    reason: DisconnectReason = DisconnectReason.PROTOCOL_ERROR


class SSHProtocolError(SSHError, ProtocolError):
    """The peer sent something RFC 4253/4252/4254 forbids."""

    def __init__(self, message: str,
                 reason: DisconnectReason = DisconnectReason.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class MACError(SSHProtocolError):
    """A packet failed its MAC check: tampered with or corrupted in transit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DisconnectReason.MAC_ERROR)


class KexError(SSHProtocolError):
    """Key exchange failed: no common algorithm, bad signature, bad public value."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DisconnectReason.KEY_EXCHANGE_FAILED)


class SSHDisconnect(SSHError):
    """The connection ended with an SSH_MSG_DISCONNECT (``by_peer`` says who sent it)."""

    def __init__(self, reason: int, description: str, *, by_peer: bool = True) -> None:
        try:
            self.reason = DisconnectReason(reason)
            name = self.reason.name
        except ValueError:
            name = f"reason {reason}"
        who = "server" if by_peer else "client"
        super().__init__(f"{who} disconnected ({name}): {description}")
        self.code = reason
        self.description = description
        self.by_peer = by_peer


class ConnectionLost(SSHError):
    """The stream ended (EOF or socket error) without a DISCONNECT."""

    reason = DisconnectReason.CONNECTION_LOST


class SSHTimeout(SSHError, TimeoutError):
    """The peer did not answer in time (stalled handshake, dead connection)."""

    reason = DisconnectReason.CONNECTION_LOST


class HostKeyError(SSHError):
    """The server's host key could not be verified."""

    reason = DisconnectReason.HOST_KEY_NOT_VERIFIABLE


class HostKeyUnknown(HostKeyError):
    """The host is not in known_hosts and the policy refuses unknown hosts."""


class HostKeyMismatch(HostKeyError):
    """The host is known with a different key: possible man-in-the-middle attack."""


class AuthenticationFailed(SSHError):
    """Every authentication method we could try was refused."""

    reason = DisconnectReason.NO_MORE_AUTH_METHODS_AVAILABLE


class ChannelError(SSHError):
    """A channel could not be opened, or a channel request was refused."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class SSHUsageError(SSHError, UsageError):
    """The caller misused the API (e.g. sent on a closed channel)."""
