"""In-memory stand-ins for stack sockets, enough to drive NetService without a device."""

from __future__ import annotations

import errno
from collections import deque

from vipernet.stack.socket_api import AF_INET, Address, SocketKind


class FakeSocket:
    """A datagram/stream-ish socket whose peer is the test."""

    def __init__(self, stack: FakeStack, kind: SocketKind) -> None:
        self.stack = stack
        self.kind = kind
        self.inbox: deque[tuple[bytes, Address]] = deque()
        self.sent: list[tuple[bytes, Address | None]] = []
        self.local: Address | None = None
        self.remote: Address | None = None
        self.space = 1 << 30  # bytes send() may still accept
        self.error: int | None = None
        self.is_closed = False
        self.backlog: deque[FakeSocket] = deque()

    def bind(self, address: Address) -> None:
        if self.local is not None:
            raise OSError(errno.EINVAL, "already bound")
        self.local = (address[0], address[1] or 50000 + len(self.stack.sockets))

    def connect(self, address: Address, now: float) -> None:
        if self.kind == SocketKind.TCP and self.remote is not None:
            if self.writable:  # as the stack's TCP socket: connected, or still trying
                raise OSError(errno.EISCONN, "already connected")
            raise BlockingIOError(errno.EALREADY, "connect in progress")
        self.remote = address
        if self.kind == SocketKind.TCP:
            raise BlockingIOError(errno.EINPROGRESS, "in progress")

    def listen(self, backlog: int) -> None:
        pass

    def accept(self) -> FakeSocket:
        if not self.backlog:
            raise BlockingIOError(errno.EAGAIN, "no connection")
        return self.backlog.popleft()

    def send(self, data: bytes | memoryview, now: float) -> int:
        return self.sendto(data, self.remote or ("0.0.0.0", 0), now)

    def sendto(self, data: bytes | memoryview, address: Address, now: float) -> int:
        if self.error:
            err, self.error = self.error, None
            raise OSError(err, "pending")
        n = min(len(data), self.space)
        if n == 0 and len(data):
            raise BlockingIOError(errno.EAGAIN, "full")
        self.space -= n
        self.sent.append((bytes(data[:n]), address))
        return n

    def recv(self, max_bytes: int) -> bytes:
        return self.recvfrom(max_bytes)[0]

    def recvfrom(self, max_bytes: int) -> tuple[bytes, Address]:
        if not self.inbox:
            raise BlockingIOError(errno.EAGAIN, "empty")
        data, addr = self.inbox.popleft()
        return data[:max_bytes], addr

    def shutdown(self, how: int, now: float) -> None:
        pass

    def close(self, now: float) -> None:
        self.is_closed = True
        self.stack.closed_sockets.append(self)

    def getsockname(self) -> Address:
        return self.local or ("0.0.0.0", 0)

    def getpeername(self) -> Address:
        if self.remote is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.remote

    def setsockopt(self, option: str, value: int) -> None:
        self.stack.options.append((option, value))

    @property
    def readable(self) -> bool:
        return bool(self.inbox) or bool(self.backlog)

    @property
    def writable(self) -> bool:
        return self.space > 0

    def take_error(self) -> int | None:
        err, self.error = self.error, None
        return err

    @property
    def closed(self) -> bool:
        return self.is_closed

    # test helpers
    def deliver(self, data: bytes, source: Address = ("10.0.2.2", 7)) -> None:
        self.inbox.append((data, source))
        self.stack.changed.add(self)


class FakeStack:
    def __init__(self) -> None:
        self.sockets: list[FakeSocket] = []
        self.closed_sockets: list[FakeSocket] = []
        self.changed: set[object] = set()
        self.options: list[tuple[str, int]] = []
        self.families: list[int] = []  # the family of each UDP/TCP socket asked for

    def _new(self, kind: SocketKind) -> FakeSocket:
        sock = FakeSocket(self, kind)
        self.sockets.append(sock)
        return sock

    def udp_socket(self, family: int = AF_INET) -> FakeSocket:
        self.families.append(family)
        return self._new(SocketKind.UDP)

    def ping_socket(self) -> FakeSocket:
        return self._new(SocketKind.ICMP)

    def tcp_socket(self, family: int = AF_INET) -> FakeSocket:
        self.families.append(family)
        return self._new(SocketKind.TCP)

    def take_changed(self) -> set[object]:
        changed, self.changed = self.changed, set()
        return changed
