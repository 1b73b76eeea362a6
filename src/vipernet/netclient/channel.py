"""IPC channels: how a client process sends a request to netd and waits for its reply.

A :class:`Channel` carries framed :class:`~vipernet.netd.protocol.Message`s; requests are
matched to replies by request id, so many threads may wait on one channel at once (one
thread's parked RECV does not stop another thread's SEND).  :class:`UnixChannel` talks to a
netd over its AF_UNIX socket; waiting callers take turns reading it (no reader thread).
Kernel mode plugs an in-process channel into the same interface
(:mod:`vipernet.netclient.inprocess`), so the socket classes above never know which one
they use.

Errors come back as the ``OSError`` subclass the errno names (``ConnectionRefusedError``,
``TimeoutError``...), with netd's message.
"""

from __future__ import annotations

import array
import contextlib
import errno
import itertools
import os
import select
import socket
import threading
import time
from collections import deque
from typing import Protocol

from vipernet.netd import protocol as p

# How much longer than the timeout it sent netd a client waits for the reply before it
# gives up on its own (netd answers timeouts itself; this only guards against a hung netd).
REPLY_GRACE = 10.0
READ_CHUNK = 256 * 1024
# Replies are decoded in place from one reused buffer that always has room for a whole
# message after the bytes already held: a 256 KiB RECV reply is copied once, from the
# buffer into the bytes the caller gets (a FrameDecoder would copy it three times).
READ_BUFFER = 2 * (p.MAX_BODY + p.HEADER_SIZE)
SNDBUF = 4 * 1024 * 1024
_FD_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)  # descriptors per read


def status_error(reply: p.Message) -> OSError:
    """The OSError subclass for a reply's errno, carrying netd's message."""
    text = p.error_text(reply) or os.strerror(reply.status)
    return OSError(reply.status, text)


class Channel(Protocol):
    def call(self, code: int, body: bytes, wait: float | None, *,
             fd: int | None = None) -> p.Message:
        """Send one request; return its (successful) reply or raise its OSError.

        ``wait`` is how long the request may take at most (None: no limit); ``fd`` is a
        descriptor to send with it (SCM_RIGHTS: SOCKET_ADOPT's proof).
        """
        ...

    def close(self) -> None: ...


class _Pending:
    __slots__ = ("reply", "wake")

    def __init__(self) -> None:
        self.wake = threading.Event()  # set when the reply is in, or to hand over reading
        self.reply: p.Message | OSError | None = None


class UnixChannel:
    """A connection to netd's AF_UNIX socket, shared by every thread of a process.

    There is no reader thread: a caller waiting for its reply reads the socket itself if
    no other thread is (leader/follower), delivering whatever replies arrive to their
    waiters; when its own reply is in, it hands reading over to another waiter.  A
    single-threaded program thus pays one IPC round trip and no thread switches.
    """

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
        except PermissionError:
            sock.close()
            raise PermissionError(errno.EACCES,
                                  f"no permission to use netd's socket {path} (it belongs "
                                  "to netd's user; run as that user or loosen its mode)") \
                from None
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        with contextlib.suppress(OSError):  # bulk SENDs (256 KiB) go out in one piece
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()  # held by the thread currently reading
        self._lock = threading.Lock()  # guards _pending and _broken
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._broken: OSError | None = None
        self._buffer = bytearray(READ_BUFFER)  # reused: no allocation per reply
        self._view = memoryview(self._buffer)
        self._start = 0  # undecoded bytes are _buffer[_start:_end]
        self._end = 0
        self._fds: deque[int] = deque()  # received descriptors not yet given to a reply

    def call(self, code: int, body: bytes, wait: float | None, *,
             fd: int | None = None) -> p.Message:
        if len(body) > p.MAX_BODY:
            raise ValueError(f"body of {len(body)} bytes exceeds {p.MAX_BODY}")
        pending = _Pending()
        with self._lock:
            if self._broken is not None:
                raise OSError(self._broken.errno, self._broken.strerror)
            request_id = next(self._ids) & 0xFFFFFFFF
            self._pending[request_id] = pending
        # Header and body leave in one sendmsg: a 256 KiB SEND is not first copied into
        # a joined message.
        header = p.HEADER.pack(len(body), code, 0, 0, request_id)
        try:
            with self._send_lock:
                # A descriptor goes with the request's own bytes, in the same sendmsg.
                ancillary = [] if fd is None else [
                    (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                sent = self._sock.sendmsg((header, body), ancillary)
                if sent < len(header) + len(body):  # a signal cut it short: send the rest
                    self._sock.sendall(b"".join((header, body))[sent:])
        except OSError as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ConnectionResetError(errno.ECONNRESET, f"lost netd: {exc}") from None
        deadline = None if wait is None else time.monotonic() + wait + REPLY_GRACE
        try:
            self._await(pending, deadline)
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        reply = pending.reply
        if reply is None:
            raise TimeoutError(errno.ETIMEDOUT, "netd did not answer in time")
        if isinstance(reply, OSError):
            raise OSError(reply.errno, reply.strerror)
        if reply.status:
            raise status_error(reply)
        return reply

    def _await(self, pending: _Pending, deadline: float | None) -> None:
        while pending.reply is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if self._read_lock.acquire(blocking=False):
                try:
                    self._lead(pending, deadline)
                finally:
                    self._read_lock.release()
                    self._hand_over()
                return
            pending.wake.wait(remaining)
            pending.wake.clear()

    def _lead(self, pending: _Pending, deadline: float | None) -> None:
        """Read replies (for every waiter) until ours is in, the deadline, or a failure."""
        while pending.reply is None:
            if deadline is None:
                timeout_ms = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                timeout_ms = max(1, int(remaining * 1000))
            try:
                if not self._poller.poll(timeout_ms):
                    continue
                n, ancillary, _flags, _ = self._sock.recvmsg_into([self._view[self._end:]],
                                                                   _FD_SPACE)
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds = array.array("i")
                        fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                        self._fds.extend(fds)
            except InterruptedError:
                continue
            except OSError as exc:
                self._fail(ConnectionResetError(exc.errno or errno.ECONNRESET,
                                                f"lost netd: {exc.strerror or exc}"))
                return
            if not n:
                self._fail(ConnectionResetError(errno.ECONNRESET, "netd closed the channel"))
                return
            self._end += n
            try:
                messages = self._decode()
            except p.FramingError as exc:
                self._fail(ConnectionResetError(errno.EPROTO, f"netd sent garbage: {exc}"))
                return
            for message in messages:
                with self._lock:
                    waiter = self._pending.get(message.request_id)
                if waiter is not None:  # else: a reply its caller gave up waiting for
                    waiter.reply = message
                    waiter.wake.set()
                elif message.fd is not None:
                    os.close(message.fd)

    def _decode(self) -> list[p.Message]:
        """Every complete message in the buffer (the checks of ``p.FrameDecoder``)."""
        buf = self._buffer
        view = self._view
        start = self._start
        end = self._end
        out: list[p.Message] = []
        while end - start >= p.HEADER_SIZE:
            length, code, flags, status, request_id = p.HEADER.unpack_from(buf, start)
            if length > p.MAX_BODY:
                raise p.FramingError(f"body length {length} exceeds {p.MAX_BODY}")
            if flags & ~int(p.Flags.REPLY):
                raise p.FramingError(f"unknown flag bits 0x{flags:02x}")
            if not flags & p.Flags.REPLY and status != 0:
                raise p.FramingError(f"request carries status {status}, must be 0")
            body_at = start + p.HEADER_SIZE
            if end - body_at < length:
                break
            fd = None
            if code == p.Code.SOCKET_ATTACH_FD and not status and flags & p.Flags.REPLY:
                # Its descriptor came with its first byte, so it is here by now.
                fd = self._fds.popleft() if self._fds else None
            out.append(p.Message(code=code, request_id=request_id,
                                 body=bytes(view[body_at:body_at + length]), flags=flags,
                                 status=status, fd=fd))
            start = body_at + length
        if start == end:
            start = end = 0
        elif len(buf) - start < p.HEADER_SIZE + p.MAX_BODY:
            # The message in progress might not fit behind us: move its start to the front
            # (at most one message, and only about once per buffer's worth of replies).
            # Here start > MAX_BODY + HEADER_SIZE > held: the two ranges never overlap.
            held = end - start
            buf[:held] = view[start:end]
            start, end = 0, held
        self._start = start
        self._end = end
        return out

    def _hand_over(self) -> None:
        """Wake one thread still waiting so it takes over reading."""
        with self._lock:
            for waiter in self._pending.values():
                if waiter.reply is None:
                    waiter.wake.set()
                    return

    def _fail(self, reason: OSError) -> None:
        with self._lock:
            self._broken = reason
            pendings = list(self._pending.values())
        for waiter in pendings:
            if waiter.reply is None:
                waiter.reply = reason
            waiter.wake.set()

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
