"""netd's IPC side: the AF_UNIX listening socket and one non-blocking channel per client.

:class:`IpcServer` registers its sockets on a :mod:`selectors` selector that the daemon's
loop owns (the same loop that moves frames between the device and the stack), so nothing
here blocks: reads are fed to a :class:`~.protocol.FrameDecoder`, each request goes to
:class:`~.service.NetService`, and replies are written as far as the socket takes them, the
rest kept until the channel is writable again.

A client is disconnected (and counted) when it breaks the framing, when it lets more than
:data:`MAX_OUTBUF` of replies pile up unread, or when its socket fails; its session is then
closed, which releases every stack socket it owned.  Other clients never notice.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
import logging
import os
import selectors
import socket
import stat
import struct
from collections import deque
from collections.abc import Callable

from vipernet.netd import protocol as p
from vipernet.netd.service import NetService, Session

log = logging.getLogger("vipernet.netd")

MAX_CLIENTS = 1024  # channels at once; more are closed right after accept (counted)
MAX_OUTBUF = 8 * 1024 * 1024  # unread replies a client may leave before it is dropped
READ_CHUNK = 256 * 1024
READS_PER_WAKEUP = 8  # fairness: a busy client yields to the others after this many reads
# Bulk replies (a 256 KiB RECV) are larger than the default AF_UNIX send buffer (~208 KiB):
# each would be written in pieces across several loop wake-ups.  4 MiB (capped by
# net.core.wmem_max) lets a burst of them go out in one send each.
IPC_SNDBUF = 4 * 1024 * 1024
# Descriptors a client sends: room for a few per read (the kernel closes what does not
# fit), at most MAX_INBOX kept until the requests they came with are complete.
FD_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)
MAX_INBOX = 16
_MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
GATHER_MIN = 16 * 1024  # replies at least this big are written header + body, not joined
Clock = Callable[[], float]
Handler = Callable[[int], None]  # called with the selector event mask


def default_socket_path() -> str:
    return os.environ.get("VIPERNET_SOCKET") or "/run/vipernet/netd.sock"


class Channel:
    """One connected client."""

    __slots__ = ("closed", "consumed", "decoder", "events", "fd_inbox", "fd_marks", "outbuf",
                 "received", "server", "session", "sock", "written")

    def __init__(self, server: IpcServer, sock: socket.socket, session: Session) -> None:
        self.server = server
        self.sock = sock
        self.session = session
        self.decoder = p.FrameDecoder()
        self.outbuf = bytearray()
        self.events = selectors.EVENT_READ
        self.closed = False
        # Descriptors to pass (SCM_RIGHTS) with the byte at a stream position: a reply
        # carrying one must leave with its own first byte, whatever is queued before it.
        self.fd_marks: deque[tuple[int, int]] = deque()
        self.written = 0  # bytes of the stream sent so far
        # Descriptors the client sent (SCM_RIGHTS), each with the stream position of the
        # last byte read with it: it belongs to the request that contains that byte.
        self.fd_inbox: deque[tuple[int, int]] = deque()
        self.received = 0  # bytes of the client's stream read so far
        self.consumed = 0  # ... of which decoded into requests

    def send(self, message: p.Message) -> None:
        if self.closed:
            if message.fd is not None:
                os.close(message.fd)
            return
        if message.fd is not None:
            self.fd_marks.append((self.written + len(self.outbuf), message.fd))
            self.outbuf += message.encode()
            self.flush()
            return
        body = message.body
        if self.outbuf or len(body) < GATHER_MIN or len(body) > p.MAX_BODY:
            self.outbuf += message.encode()  # (encode raises on an oversized body)
            self.flush()
            return
        # A big reply with nothing queued before it: one sendmsg of header and body, so
        # the body is not copied twice (into the encoded message, then into outbuf).
        header = p.HEADER.pack(len(body), message.code, message.flags, message.status,
                               message.request_id)
        try:
            n = self.sock.sendmsg((header, body))
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self.server.drop(self, f"write failed: {exc}", "ipc.write_error")
            return
        self.written += n
        if n == len(header) + len(body):
            return
        if n < len(header):
            self.outbuf += header[n:]
            n = len(header)
        self.outbuf += memoryview(body)[n - len(header):]
        self.flush()

    def flush(self) -> None:
        while self.outbuf and not self.closed:
            marks = self.fd_marks
            try:
                if marks and marks[0][0] == self.written:
                    fd = marks[0][1]
                    end = marks[1][0] - self.written if len(marks) > 1 else len(self.outbuf)
                    n = self.sock.sendmsg([memoryview(self.outbuf)[:end]],
                                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [fd]))])
                    marks.popleft()
                    os.close(fd)  # the client has its own copy now
                else:
                    limit = marks[0][0] - self.written if marks else len(self.outbuf)
                    n = self.sock.send(memoryview(self.outbuf)[:limit])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.server.drop(self, f"write failed: {exc}", "ipc.write_error")
                return
            del self.outbuf[:n]
            self.written += n
        if self.closed:
            return
        if len(self.outbuf) > MAX_OUTBUF:
            self.server.drop(self, "replies left unread", "ipc.outbuf_overflow")
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0)
        if wanted != self.events:
            self.events = wanted
            self.server.selector.modify(self.sock, wanted, self.on_event)

    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self.read()

    def read(self) -> None:
        server = self.server
        for _ in range(READS_PER_WAKEUP):
            try:
                n, ancillary, _flags, _addr = self.sock.recvmsg_into(
                    [server.read_buffer], FD_SPACE, _MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                server.drop(self, f"read failed: {exc}", "ipc.read_error")
                return
            if ancillary:
                self._take_fds(ancillary, self.received + n - 1)
            self.received += n
            if not n:
                server.drop(self, "closed by client", "ipc.disconnects")
                return
            try:
                messages = self.decoder.feed(server.read_view[:n])
            except p.FramingError as exc:
                server.drop(self, f"bad framing: {exc}", "ipc.bad_framing")
                return
            now = server.clock()
            for message in messages:
                message = self._with_fd(message)
                if message.is_reply:
                    self._close_fd(message)
                    server.drop(self, "client sent a reply", "ipc.bad_framing")
                    return
                try:
                    server.service.handle(self.session, message, now)
                finally:
                    self._close_fd(message)  # a request only shows it (SOCKET_ADOPT)
                if self.closed:
                    return
            if n < READ_CHUNK:
                return

    def _take_fds(self, ancillary: list[tuple[int, int, bytes]], position: int) -> None:
        """Keep the descriptors that came with the bytes ending at ``position`` (at most
        :data:`MAX_INBOX` waiting; more are closed and counted)."""
        for level, kind, data in ancillary:
            if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
                continue
            fds = array.array("i")
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            for fd in fds:
                if len(self.fd_inbox) < MAX_INBOX:
                    self.fd_inbox.append((position, fd))
                else:
                    os.close(fd)
                    self.server.service.count("ipc.fds_dropped")

    def _with_fd(self, message: p.Message) -> p.Message:
        """``message`` with the descriptor sent with its bytes (SOCKET_ADOPT takes one);
        any other descriptor sent with them is closed."""
        end = self.consumed + p.HEADER_SIZE + len(message.body)
        self.consumed = end
        if not self.fd_inbox:
            return message
        mine = []
        while self.fd_inbox and self.fd_inbox[0][0] < end:
            mine.append(self.fd_inbox.popleft()[1])
        if not mine:
            return message
        keep = mine.pop(0) if message.code == p.Code.SOCKET_ADOPT else None
        for fd in mine:
            os.close(fd)
            self.server.service.count("ipc.fds_dropped")
        return dataclasses.replace(message, fd=keep)

    @staticmethod
    def _close_fd(message: p.Message) -> None:
        if message.fd is not None:
            with contextlib.suppress(OSError):
                os.close(message.fd)


class IpcServer:
    """The listening socket and the channels, on a selector owned by the caller's loop."""

    def __init__(self, service: NetService, path: str, selector: selectors.BaseSelector,
                 clock: Clock) -> None:
        self.service = service
        self.path = path
        self.selector = selector
        self.clock = clock
        self.channels: set[Channel] = set()
        # One receive buffer for every channel (the loop is single-threaded): a fresh
        # 256 KiB bytes per recv() would cost an mmap/munmap pair each time.
        self.read_buffer = bytearray(READ_CHUNK)
        self.read_view = memoryview(self.read_buffer)
        self.listener = self._listen(path)
        selector.register(self.listener, selectors.EVENT_READ, self._on_accept)

    @staticmethod
    def _listen(path: str) -> socket.socket:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            mode = os.lstat(path).st_mode
            if not stat.S_ISSOCK(mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket of a netd that died
            else:
                raise OSError(errno.EADDRINUSE, f"another netd is serving {path}")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound and listening under a temporary name, then renamed into place: a client
        # that sees the path can connect at once (bind() alone makes the file appear while
        # connects are still refused).  A path too long for the suffix is bound directly.
        temporary = f"{path}.{os.getpid()}~"
        try:
            try:
                listener.bind(temporary)
            except OSError:
                temporary = path
                listener.bind(path)
            try:
                os.chmod(temporary, 0o666)  # like a kernel's socket API: every user may use it
                listener.listen(128)
                listener.setblocking(False)
                if temporary != path:
                    os.rename(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except BaseException:
            listener.close()
            raise
        return listener

    def _on_accept(self, mask: int) -> None:
        for _ in range(64):
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                self.service.count("ipc.accept_error")
                return
            if len(self.channels) >= MAX_CLIENTS:
                conn.close()
                self.service.count("ipc.refused_too_many_clients")
                continue
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IPC_SNDBUF)
            pid = _peer_pid(conn)
            session = self.service.open_session(_discard, peer=f"pid {pid}" if pid else "",
                                                pid=pid)
            channel = Channel(self, conn, session)
            session.send = channel.send
            self.channels.add(channel)
            self.selector.register(conn, selectors.EVENT_READ, channel.on_event)
            self.service.count("ipc.connections")

    def drop(self, channel: Channel, why: str, counter: str) -> None:
        if channel.closed:
            return
        channel.closed = True
        while channel.fd_marks:
            os.close(channel.fd_marks.popleft()[1])
        while channel.fd_inbox:
            os.close(channel.fd_inbox.popleft()[1])
        self.service.count(counter)
        log.debug("client %d dropped: %s", channel.session.client_id, why)
        self.channels.discard(channel)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(channel.sock)
        channel.sock.close()
        self.service.close_session(channel.session, self.clock())

    def close(self) -> None:
        for channel in list(self.channels):
            self.drop(channel, "netd shutting down", "ipc.shutdown_drops")
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _discard(message: p.Message) -> None:
    """Placeholder reply sink until the channel that owns a new session exists."""


_UCRED = struct.Struct("3i")


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, _uid, _gid = _UCRED.unpack(raw)
    return pid or None
