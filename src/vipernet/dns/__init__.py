"""vipernet.dns: a stub resolver (A and AAAA; CNAME chains; TTL cache; UDP with TCP retry).

Two layers:

* :class:`~vipernet.dns.query.DnsQuery` - the sans-IO core.  It builds query bytes,
  accepts reply bytes with the address they came from, and says what to do next
  (:class:`SendQuery`, :class:`WaitUntil`) or gives the :class:`Answer` / raises a
  :class:`DnsError`.  Time and randomness are passed in; it never blocks.  netd drives it
  with stack UDP sockets from its event loop.  See its module docstring for the loop.
* :class:`~vipernet.dns.resolver.Resolver` - the blocking driver over any socket-like
  objects (stdlib or vipernet), with a :class:`DnsCache` on an injected clock.

Wire format by dnspython.  Replies from the wrong server or port, with the wrong id or
question, or malformed, are ignored and counted (``Resolver.counters``); trailing bytes
after a complete message are ignored and counted (``trailing_junk``).
"""

from vipernet.dns.cache import Answer, DnsCache
from vipernet.dns.errors import (
    BadRecordLength,
    CnameLoop,
    DnsError,
    DnsTimeout,
    InvalidName,
    MalformedReply,
    NameNotFound,
    NoRecords,
    Refused,
    ServerFailure,
    Truncated,
)
from vipernet.dns.query import AAAA, A, DnsQuery, SendQuery, WaitUntil, tcp_frame
from vipernet.dns.resolver import Resolver

__all__ = [
    "AAAA",
    "A",
    "Answer",
    "BadRecordLength",
    "CnameLoop",
    "DnsCache",
    "DnsError",
    "DnsQuery",
    "DnsTimeout",
    "InvalidName",
    "MalformedReply",
    "NameNotFound",
    "NoRecords",
    "Refused",
    "Resolver",
    "SendQuery",
    "ServerFailure",
    "Truncated",
    "WaitUntil",
    "tcp_frame",
]
