"""SFTP version 3 (draft-ietf-secsh-filexfer-02) client over an SSH session channel."""

from vipernet.ssh.sftp.protocol import (
    Attributes,
    SFTPEOFError,
    SFTPError,
    SFTPFailure,
    SFTPNoSuchFile,
    SFTPPermissionDenied,
)

__all__ = ["Attributes", "SFTPEOFError", "SFTPError", "SFTPFailure", "SFTPNoSuchFile",
           "SFTPPermissionDenied"]
