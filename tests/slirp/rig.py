"""A guest stack wired to a SlirpDevice in this process, driven by a small loop (no root)."""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from vipernet.link.frame import Frame
from vipernet.slirp.config import SlirpConfig
from vipernet.slirp.device import SlirpDevice
from vipernet.stack import Stack, StackConfig


class Rig:
    def __init__(self, config: SlirpConfig | None = None, *,
                 guest: StackConfig | None = None) -> None:
        now = time.monotonic()
        self.device = SlirpDevice(config or SlirpConfig(), now=now, rng=random.Random(1))
        self.guest = Stack(guest or StackConfig(), capabilities=self.device.capabilities,
                           now=now, rng=random.Random(2))
        # Set to a list to record every frame the device gives the guest.
        self.to_guest: list[Frame] | None = None

    def step(self, wait: float = 0.002) -> None:
        now = time.monotonic()
        for frame in self.guest.transmit():
            self.device.send(frame, now)
        due = [d for d in (self.device.next_deadline(), self.guest.next_deadline())
               if d is not None]
        timeout = max(0.0, min([now + wait, *due]) - now)
        fd = self.device.fileno()
        if fd is not None:
            select.select([fd], [], [], timeout)
        now = time.monotonic()
        for frame in self.device.receive(now):
            if self.to_guest is not None:
                self.to_guest.append(frame)
            self.guest.receive(frame, now)
        gdue = self.guest.next_deadline()
        if gdue is not None and gdue <= now:
            self.guest.poll(now)
        for frame in self.guest.transmit():
            self.device.send(frame, now)

    def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError("timed out")
            self.step()

    def connect(self, address: tuple[str, int], timeout: float = 10.0, *,
                family: int = socket.AF_INET) -> Any:
        sock = self.guest.tcp_socket(family)
        with contextlib.suppress(BlockingIOError):
            sock.connect(address, time.monotonic())
        self.until(lambda: sock.writable or sock.readable, timeout)
        return sock

    def recv_errors(self, sock: Any) -> list[int]:
        """Step until a guest datagram socket's recv raises; the errnos it raised."""
        errors: list[int] = []

        def raised() -> bool:
            try:
                sock.recv(100)
            except BlockingIOError:
                return False
            except OSError as exc:
                errors.append(exc.errno or 0)
                return True
            return False

        self.until(raised)
        return errors

    def close(self) -> None:
        self.device.close()


class HostServer:
    """A loopback TCP server on an ephemeral port; ``handler(conn)`` runs per connection
    (``host="::1"``: on the IPv6 loopback)."""

    def __init__(self, handler: Callable[[socket.socket], None], host: str = "127.0.0.1"
                 ) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handler(conn)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.sock.close()
        self.thread.join(timeout=5)
