"""vipernet.ssh: an SSH-2 client (RFC 4250-4254, RFC 8332, RFC 8731) and SFTP v3.

Sans-IO engines (:class:`~vipernet.ssh.transport.Transport`,
:class:`~vipernet.ssh.connection.SSHConnection`) under a thin blocking shell
(:class:`~vipernet.ssh.client.SSHClient`) that takes any stream socket -- a stdlib socket,
an in-process vipernet socket or a netd socket.  Algorithms live in
:mod:`vipernet.ssh.algorithms`; errors in :mod:`vipernet.ssh.errors`; SFTP in
:mod:`vipernet.ssh.sftp`.  See docs/ssh.md.
"""

from vipernet.ssh.client import ExecResult, SSHClient
from vipernet.ssh.errors import (
    AuthenticationFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    MACError,
    SSHDisconnect,
    SSHError,
    SSHProtocolError,
    SSHTimeout,
)
from vipernet.ssh.known_hosts import KnownHosts, Policy

__all__ = ["AuthenticationFailed", "ExecResult", "HostKeyMismatch", "HostKeyUnknown",
           "KnownHosts", "MACError", "Policy", "SSHClient", "SSHDisconnect", "SSHError",
           "SSHProtocolError", "SSHTimeout"]
