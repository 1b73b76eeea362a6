"""The sans-IO socket interface every stack socket (UDP, ICMP, TCP) offers.

netd and kernel mode drive sockets only through this interface, so TCP plugs into the same
IPC messages as UDP.  Methods never block: where a blocking socket would wait they raise
:class:`BlockingIOError` (EAGAIN, or EINPROGRESS for a TCP connect) and the caller parks
until ``readable`` / ``writable`` / ``pending_error`` change (the stack reports such sockets
in ``Stack.take_changed()``).  Failures are :class:`OSError` subclasses with the errno Linux
would give.  Addresses are tuples as in the stdlib: ``(dotted-quad str, port)`` for an
``AF_INET`` socket, ``(str, port, flowinfo, scope_id)`` for an ``AF_INET6`` one (which
also takes a 2-tuple, as Python's sockets do).
"""

from __future__ import annotations

import enum
import errno as _errno
import os as _os
import socket as _socket
import struct
from typing import Any, NamedTuple, Protocol

# (host, port) or (host, port, flowinfo, scope_id): each socket checks the shape it takes.
Address = tuple[Any, ...]

AF_INET = int(_socket.AF_INET)
AF_INET6 = int(_socket.AF_INET6)
_MREQN = struct.Struct("=4s4si")  # ip_mreqn: two in_addr and an int in host order
_MREQ6 = struct.Struct("=16si")  # ipv6_mreq


class SocketKind(enum.IntEnum):
    """Matches the netd protocol's socket type byte."""

    TCP = 1  # SOCK_STREAM
    UDP = 2  # SOCK_DGRAM
    ICMP = 3  # ping socket (SOCK_DGRAM, IPPROTO_ICMP)


class StackSocket(Protocol):
    kind: SocketKind

    def bind(self, address: Address) -> None: ...
    def connect(self, address: Address, now: float) -> None: ...
    def listen(self, backlog: int) -> None: ...
    def accept(self) -> StackSocket: ...
    def send(self, data: bytes | memoryview, now: float) -> int: ...
    def sendto(self, data: bytes | memoryview, address: Address, now: float) -> int: ...
    def recv(self, max_bytes: int) -> bytes: ...
    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]: ...
    def shutdown(self, how: int, now: float) -> None: ...
    def close(self, now: float) -> None: ...
    def getsockname(self) -> Address: ...
    def getpeername(self) -> Address: ...
    def setsockopt(self, option: str, value: int) -> None: ...

    @property
    def readable(self) -> bool:
        """recv/recvfrom/accept would not raise BlockingIOError (data, EOF, peer or error)."""
        ...

    @property
    def writable(self) -> bool:
        """send would accept at least one byte now (or a connect has finished)."""
        ...

    def take_error(self) -> int | None:
        """The pending asynchronous error (errno), cleared by reading it, as SO_ERROR."""
        ...

    @property
    def closed(self) -> bool:
        """Fully released: nothing more will happen on this socket."""
        ...


class GroupOptionSocket(Protocol):
    """A socket that takes the struct-valued IP options (UDP: memberships, the multicast
    interface).  ``value`` is the option's bytes as Linux's setsockopt(2) takes them (see
    :func:`parse_ip_mreqn`); ``now`` because a join sends a report."""

    def set_group_option(self, option: str, value: bytes, now: float) -> None: ...


# The struct-valued options, by the names netd's SETSOCKOPT passes (Linux's values in
# <linux/in.h> / <linux/in6.h>, for reference: 32, 35-40, 20, 21).
GROUP_OPTIONS = frozenset({
    "IP_MULTICAST_IF", "IP_ADD_MEMBERSHIP", "IP_DROP_MEMBERSHIP", "IP_ADD_SOURCE_MEMBERSHIP",
    "IP_DROP_SOURCE_MEMBERSHIP", "IP_BLOCK_SOURCE", "IP_UNBLOCK_SOURCE", "IPV6_JOIN_GROUP",
    "IPV6_LEAVE_GROUP",
})


class GroupRequest(NamedTuple):
    """An ``ip_mreq`` / ``ip_mreqn`` / ``ip_mreq_source`` / ``ipv6_mreq``, decoded."""

    group: bytes  # 4 or 16 bytes, network order
    interface: bytes = b"\0\0\0\0"  # imr_interface / imr_address (IPv4), network order
    ifindex: int = 0
    source: bytes | None = None  # imr_sourceaddr


def _einval(detail: str) -> OSError:
    return OSError(_errno.EINVAL, f"{_os.strerror(_errno.EINVAL)}: {detail}")


def parse_ip_mreqn(value: bytes) -> GroupRequest:
    """IP_ADD/DROP_MEMBERSHIP's value, as Linux reads it: 12 bytes or more are an
    ``ip_mreqn`` (group, address, ``int`` ifindex in host order), 8 to 11 an ``ip_mreq``
    (group, interface address), fewer EINVAL."""
    if len(value) >= _MREQN.size:
        group, address, ifindex = _MREQN.unpack_from(value)
        return GroupRequest(group, address, ifindex)
    if len(value) >= 8:
        return GroupRequest(value[0:4], value[4:8])
    raise _einval(f"a {len(value)}-byte ip_mreq (8 or 12 bytes)")


def parse_multicast_if(value: bytes) -> GroupRequest:
    """IP_MULTICAST_IF's value, as Linux reads it: an ``ip_mreqn`` (12+ bytes), an
    ``ip_mreq`` (8+: its interface address) or an ``in_addr`` (4+); the group is unused."""
    if len(value) >= 8:
        return parse_ip_mreqn(value)
    if len(value) >= 4:
        return GroupRequest(b"\0\0\0\0", value[0:4])
    raise _einval(f"a {len(value)}-byte IP_MULTICAST_IF value (4, 8 or 12 bytes)")


def parse_ip_mreq_source(value: bytes) -> GroupRequest:
    """IP_{ADD,DROP}_SOURCE_MEMBERSHIP / IP_{BLOCK,UNBLOCK}_SOURCE: Linux's 12-byte
    ``ip_mreq_source`` — group, interface, source, in that order (BSD puts the source
    second); any other length is EINVAL, as Linux has it."""
    if len(value) != 12:
        raise _einval(f"a {len(value)}-byte ip_mreq_source (12 bytes)")
    return GroupRequest(value[0:4], value[4:8], 0, value[8:12])


def parse_ipv6_mreq(value: bytes) -> GroupRequest:
    """IPV6_JOIN/LEAVE_GROUP: ``ipv6_mreq`` = group (16) + ``int`` ifindex (host order)."""
    if len(value) < _MREQ6.size:
        raise _einval(f"a {len(value)}-byte ipv6_mreq (20 bytes)")
    group, ifindex = _MREQ6.unpack_from(value)
    return GroupRequest(group, b"\0\0\0\0", ifindex)
