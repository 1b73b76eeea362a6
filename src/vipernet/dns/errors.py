"""DNS resolution errors, all :class:`~vipernet.errors.VipernetError`.

The classes map the outcomes a caller handles differently: the name does not exist
(:class:`NameNotFound`, final), the servers failed or refused (:class:`ServerFailure`,
:class:`Refused`), nobody answered in time (:class:`DnsTimeout`), the name exists without
records of the asked type (:class:`NoRecords`), the CNAME chain loops or is too long
(:class:`CnameLoop`), or the server's answer was unusable (:class:`Truncated`,
:class:`MalformedReply`, :class:`BadRecordLength`).
"""

from __future__ import annotations

from vipernet.errors import ProtocolError, UsageError, VipernetError


class DnsError(VipernetError):
    """Base class of every resolution failure."""


class InvalidName(DnsError, UsageError):
    """The name cannot be put in a query (empty label, label over 63 bytes, ...)."""


class NameNotFound(DnsError):
    """NXDOMAIN: the name does not exist."""


class NoRecords(DnsError):
    """The name exists but has no record of the type asked for (NODATA)."""


class ServerFailure(DnsError):
    """SERVFAIL (or another error rcode) from every server tried."""


class Refused(ServerFailure):
    """REFUSED from every server tried."""


class DnsTimeout(DnsError, TimeoutError):
    """No acceptable answer before the deadline."""


class CnameLoop(DnsError, ProtocolError):
    """The CNAME chain loops or exceeds the hop limit."""


class Truncated(DnsError, ProtocolError):
    """The answer was truncated (TC) and no stream transport could be used to retry."""


class MalformedReply(DnsError, ProtocolError):
    """The server's reply does not parse as a DNS message (cut short, corrupt)."""


class BadRecordLength(MalformedReply):
    """An A or AAAA record whose RDLENGTH is not 4 or 16 bytes (RFC 1035 3.4.1, RFC 3596 2.2).

    A :class:`MalformedReply` (EBADMSG across netd) that says which record was wrong, since
    "does not parse" hides a server that means well but encodes addresses wrongly.
    """

    def __init__(self, message: str, *, rdtype: int, rdlength: int, expected: int) -> None:
        super().__init__(message)
        self.rdtype = rdtype
        self.rdlength = rdlength
        self.expected = expected
