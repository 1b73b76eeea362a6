"""IPC channels: how a client process sends a request to netd and waits for its reply.

A :class:`Channel` carries framed :class:`~vipernet.netd.protocol.Message`s; requests are
matched to replies by request id, so many threads may wait on one channel at once (one
thread's parked RECV does not stop another thread's SEND).  :class:`UnixChannel` talks to a
netd over its AF_UNIX socket, with one reader thread that hands each reply to the thread
waiting for it.  Kernel mode plugs an in-process channel into the same interface
(:mod:`vipernet.netclient.inprocess`), so the socket classes above never know which one
they use.

Errors come back as the ``OSError`` subclass the errno names (``ConnectionRefusedError``,
``TimeoutError``...), with netd's message.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import threading
from typing import Protocol

from vipernet.netd import protocol as p

# How much longer than the timeout it sent netd a client waits for the reply before it
# gives up on its own (netd answers timeouts itself; this only guards against a hung netd).
REPLY_GRACE = 10.0
READ_CHUNK = 256 * 1024


def status_error(reply: p.Message) -> OSError:
    """The OSError subclass for a reply's errno, carrying netd's message."""
    text = p.error_text(reply) or os.strerror(reply.status)
    return OSError(reply.status, text)


class Channel(Protocol):
    def call(self, code: int, body: bytes, wait: float | None) -> p.Message:
        """Send one request; return its (successful) reply or raise its OSError.

        ``wait`` is how long the request may take at most (None: no limit).
        """
        ...

    def close(self) -> None: ...


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: p.Message | OSError | None = None


class UnixChannel:
    """A connection to netd's AF_UNIX socket, shared by every thread of a process."""

    def __init__(self, path: str, *, connect_timeout: float = 5.0) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            sock.close()
            raise FileNotFoundError(errno.ENOENT,
                                    f"netd is not running (no socket at {path}); "
                                    "start it with 'vipernet netd' or set VIPERNET_SOCKET") \
                from None
        except ConnectionRefusedError:
            sock.close()
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"netd is not running (nobody listens on {path})") \
                from None
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        self._sock = sock
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._broken: OSError | None = None
        self._reader = threading.Thread(target=self._read_loop, name="vipernet-netclient",
                                        daemon=True)
        self._reader.start()

    def call(self, code: int, body: bytes, wait: float | None) -> p.Message:
        pending = _Pending()
        with self._lock:
            if self._broken is not None:
                raise OSError(self._broken.errno, self._broken.strerror)
            request_id = next(self._ids) & 0xFFFFFFFF
            self._pending[request_id] = pending
        data = p.Message(code=code, request_id=request_id, body=body).encode()
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ConnectionResetError(errno.ECONNRESET, f"lost netd: {exc}") from None
        limit = None if wait is None else wait + REPLY_GRACE
        if not pending.done.wait(limit):
            with self._lock:
                self._pending.pop(request_id, None)
            raise TimeoutError(errno.ETIMEDOUT, "netd did not answer in time")
        reply = pending.reply
        if isinstance(reply, OSError):
            raise OSError(reply.errno, reply.strerror)
        assert reply is not None
        if reply.status:
            raise status_error(reply)
        return reply

    def _read_loop(self) -> None:
        decoder = p.FrameDecoder()
        reason: OSError = ConnectionResetError(errno.ECONNRESET, "netd closed the channel")
        buffer = bytearray(READ_CHUNK)  # reused: no allocation per reply
        view = memoryview(buffer)
        try:
            while True:
                n = self._sock.recv_into(buffer)
                if not n:
                    break
                for message in decoder.feed(view[:n]):
                    with self._lock:
                        pending = self._pending.pop(message.request_id, None)
                    if pending is not None:
                        pending.reply = message
                        pending.done.set()
        except p.FramingError as exc:
            reason = ConnectionResetError(errno.EPROTO, f"netd sent garbage: {exc}")
        except OSError as exc:
            reason = ConnectionResetError(exc.errno or errno.ECONNRESET,
                                          f"lost netd: {exc.strerror or exc}")
        with self._lock:
            self._broken = reason
            pendings = list(self._pending.values())
            self._pending.clear()
        for pending in pendings:
            pending.reply = reason
            pending.done.set()

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
