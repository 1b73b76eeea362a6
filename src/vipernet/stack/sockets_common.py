"""What the datagram sockets (UDP and ping) share: addresses, errno raising, error/closed state."""

from __future__ import annotations

import errno
import os
from ipaddress import AddressValueError, IPv4Address

from vipernet.stack.socket_api import Address

ANY = IPv4Address(0)
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
