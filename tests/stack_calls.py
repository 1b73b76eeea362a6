"""Blocking helpers over a stack that a :class:`~vipernet.runtime.Runtime` thread drives.

A test thread reaches the stack's sockets only through ``runtime.call`` (under the loop's
lock) and waits with ``runtime.wait_until``; these are the loops every such rig needs.
A subclass provides ``runtime``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vipernet.runtime import Runtime


class StackCalls:
    runtime: Runtime

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.runtime.call(fn)

    def now(self) -> float:
        return self.runtime.clock()

    def sendall(self, sock: Any, data: bytes | memoryview, timeout: float = 120.0) -> None:
        view = memoryview(data)
        off = 0
        deadline = time.monotonic() + timeout
        while off < len(view):
            def step(off: int = off) -> int:
                try:
                    return int(sock.send(view[off:off + (4 << 20)], self.now()))
                except BlockingIOError:
                    return 0
            n = self.call(step)
            off += n
            if not n and not self.runtime.wait_until(lambda: sock.writable,
                                                     deadline - time.monotonic()):
                raise TimeoutError(f"sendall stalled at {off}/{len(view)}")

    def recv_some(self, sock: Any, timeout: float = 60.0) -> bytes:
        def step() -> bytes | None:
            try:
                return bytes(sock.recv(8 << 20))
            except BlockingIOError:
                return None
        while True:
            got = self.call(step)
            if got is not None:
                return got
            if not self.runtime.wait_until(lambda: sock.readable, timeout):
                raise TimeoutError("recv timed out")

    def accept(self, lst: Any, timeout: float = 30.0) -> Any:
        if not self.runtime.wait_until(lambda: lst.readable, timeout):
            raise TimeoutError("accept timed out")
        return self.call(lst.accept)
