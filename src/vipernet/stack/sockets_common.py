"""What the datagram sockets (UDP and ping) share: addresses, errno raising, error/closed state."""

from __future__ import annotations

import errno
import os
from ipaddress import AddressValueError, IPv4Address, IPv6Address

from vipernet.stack.socket_api import Address

ANY = IPv4Address(0)
ANY6 = IPv6Address(0)
LIMITED_BROADCAST = IPv4Address("255.255.255.255")


def os_error(code: int, detail: str = "") -> OSError:
    """The OSError subclass Python itself raises for ``code`` (ConnectionRefusedError...)."""
    message = os.strerror(code)
    if detail:
        message = f"{message}: {detail}"
    return OSError(code, message)


def parse_address(address: object, *, allow_any_port: bool = True) -> tuple[IPv4Address, int]:
    """``("10.0.2.2", 53)`` -> (IPv4Address, port); bad shapes are EINVAL, as a C API."""
    if not isinstance(address, tuple) or len(address) != 2:
        raise os_error(errno.EINVAL, f"address must be (host, port), got {address!r}")
    host, port = address
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise os_error(errno.EINVAL, f"address must be (str, int), got {address!r}")
    if not 0 <= port <= 0xFFFF or (port == 0 and not allow_any_port):
        raise os_error(errno.EINVAL, f"port {port} out of range")
    if host in ("", "0.0.0.0"):
        return ANY, port
    if host == "<broadcast>":
        return LIMITED_BROADCAST, port
    try:
        return IPv4Address(host), port
    except AddressValueError:
        raise os_error(errno.EINVAL, f"not an IPv4 address: {host!r} "
                                     "(resolve names before calling the stack)") from None


def format_address(ip: IPv4Address, port: int) -> Address:
    return (str(ip), port)


def parse_address6(address: object, *,
                   allow_any_port: bool = True) -> tuple[IPv6Address, int, int]:
    """An ``AF_INET6`` address -> (IPv6Address, port, scope_id).

    Takes ``(host, port)`` or ``(host, port, flowinfo, scope_id)`` as Python's sockets do;
    a ``%zone`` suffix is ignored (one interface: every link-local is on it).  Bad shapes
    are EINVAL.
    """
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise os_error(errno.EINVAL, f"address must be (host, port[, flowinfo, scope_id]), "
                                     f"got {address!r}")
    host, port = address[0], address[1]
    scope = address[3] if len(address) == 4 else 0
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool) or (
            not isinstance(scope, int)):
        raise os_error(errno.EINVAL, f"address must be (str, int, ...), got {address!r}")
    if not 0 <= port <= 0xFFFF or (port == 0 and not allow_any_port):
        raise os_error(errno.EINVAL, f"port {port} out of range")
    if host in ("", "::"):
        return ANY6, port, scope
    try:
        return IPv6Address(host.split("%", 1)[0]), port, scope
    except AddressValueError:
        raise os_error(errno.EINVAL, f"not an IPv6 address: {host!r} "
                                     "(resolve names before calling the stack)") from None


def ip6_text(ip: IPv6Address) -> str:
    """The text Linux's ``inet_ntop`` gives: an IPv4-mapped address keeps its dotted quad
    (``::ffff:10.0.2.15``; ``str()`` gives ``::ffff:a00:20f`` before Python 3.13)."""
    v4 = ip.ipv4_mapped
    return f"::ffff:{v4}" if v4 is not None else str(ip)


def format_address6(ip: IPv6Address, port: int, scope_id: int = 0) -> Address:
    """The 4-tuple an ``AF_INET6`` socket reports; a link-local one carries scope 1 (our
    only interface), as Linux gives its interface index."""
    if scope_id == 0 and ip.is_link_local:
        scope_id = 1
    return (ip6_text(ip), port, 0, scope_id)


def mapped(ip: IPv4Address) -> IPv6Address:
    """``10.0.2.15`` -> ``::ffff:10.0.2.15`` (RFC 4291 2.5.5.2)."""
    return IPv6Address(0xFFFF00000000 | int(ip))


class DatagramSocketStatus:
    """The asynchronous error (SO_ERROR) and closed state, reported alike by UDP and ping."""

    def __init__(self) -> None:
        self._error: int | None = None
        self._closed = False

    @property
    def writable(self) -> bool:
        return not self._closed

    def take_error(self) -> int | None:
        err, self._error = self._error, None
        return err

    @property
    def pending_error(self) -> int | None:
        return self._error

    @property
    def closed(self) -> bool:
        return self._closed
