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
import socket as _socket
from typing import Any, Protocol

# (host, port) or (host, port, flowinfo, scope_id): each socket checks the shape it takes.
Address = tuple[Any, ...]

AF_INET = int(_socket.AF_INET)
AF_INET6 = int(_socket.AF_INET6)


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
