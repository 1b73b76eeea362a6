"""The root of every exception vipernet raises on purpose.

Each protocol package subclasses :class:`VipernetError` and carries its own code
(TLS alert, SSH disconnect reason, SFTP status, errno across IPC).  Socket-level
failures are :class:`OSError` subclasses with an errno, as in the stdlib.
"""


class VipernetError(Exception):
    """Base class for vipernet's own errors."""


class ProtocolError(VipernetError):
    """The peer sent something the protocol forbids (a remote error)."""


class UsageError(VipernetError):
    """The caller misused an API (a local error)."""
