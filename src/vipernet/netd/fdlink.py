"""The fd data plane: a netd TCP socket's byte stream over a real file descriptor.

``NET_SOCKET_ATTACH_FD`` (0x48) gives a client one end of an ``AF_UNIX`` stream
socketpair (passed with ``SCM_RIGHTS``); netd keeps the other end and pumps bytes between
it and the TCP connection.  The program then reads and writes a descriptor the kernel
knows, so ``select``/``epoll``/``asyncio``/``ssl`` and any language work on it.

Semantics, chosen to be the kernel's TCP socket's as seen through the descriptor:

* bytes written to the fd go out on the connection, in order; bytes received appear on
  the fd;
* **backpressure both ways**: netd reads the fd only while the TCP send buffer takes
  more, so a full send buffer fills the socketpair and the program's ``write`` blocks (or
  gives EAGAIN); and reads TCP only while the fd takes more, so a slow reader leaves data
  in TCP's receive buffer and the advertised window closes;
* ``shutdown(SHUT_WR)`` on the fd (netd reads EOF, the fd still open) is a FIN once what
  was written is sent; the peer's FIN, after its data, is ``shutdown(SHUT_WR)`` of netd's
  end: the program reads EOF;
* closing the fd (every copy: a program that forks keeps its sockets; one that dies
  closes them) closes the connection — with a RST if the peer's data was left unread, as
  Linux does.  The socket's lifetime is the descriptor's, not the IPC channel's: a socket
  with an fd outlives the channel that made it (exec, fork);
* a reset or timeout ends both directions of netd's end (the program reads EOF, writes
  fail with EPIPE) and is kept as the socket's pending error: ``NET_SOCKET_GET_ERROR``
  (``SO_ERROR``) returns it, which is how the Python socket turns that EOF into
  ``ConnectionResetError``/``TimeoutError``.

While a socket has an fd, SEND/RECV messages on it are refused (EINVAL): the two paths
would each take part of the stream.

UDP sockets get a descriptor too: datagrams with their addresses, see
:mod:`.fdlink_dgram`.

A *listening* socket's descriptor carries no stream: it is readable while ``accept`` would
not block (netd keeps one byte unread in it while connections wait), so ``select`` and
``asyncio`` servers can wait on it; ACCEPT stays a message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import selectors
import socket
import sys
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING

from vipernet.netd import protocol as p
from vipernet.netd.fdlink_base import DescriptorLink
from vipernet.netd.fdlink_dgram import DatagramLink
from vipernet.netd.protocol import Message
from vipernet.stack.socket_api import SocketKind

if TYPE_CHECKING:
    from vipernet.netd.service import NetService, Session, SocketEntry
    from vipernet.runtime import Runtime

log = logging.getLogger("vipernet.netd")

CHUNK = 4 * 1024 * 1024  # one read of either side
HIGH_WATER = 1024 * 1024  # received bytes netd holds for a program that does not read
# Socketpair buffers.  The plain options are capped by net.core.[rw]mem_max (~208 KiB by
# default), which cut every wake-up to ~200 KiB and the program -> net path to a third
# of the kernel's speed; netd as root may force them (SO_*BUFFORCE), else takes the cap.
PAIR_BUFFER = 4 * 1024 * 1024
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
HUP_CHECK_EVERY = 1.0  # half-closed ends are checked this often for a full close
_SENDING_STATES = frozenset({"ESTABLISHED", "CLOSE_WAIT"})
_CONNECTED_STATES = frozenset({"ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_1", "FIN_WAIT_2",
                               "CLOSING", "LAST_ACK", "TIME_WAIT"})


class FdLink(DescriptorLink):
    """The pump between one TCP socket and netd's end of its socketpair."""

    __slots__ = ("app_eof", "error", "fin_sent", "hung_up", "net_eof", "shut_app", "to_app",
                 "to_net")
    plane: FdPlane  # all of it: the shared read buffer too, not just a base link's view

    def __init__(self, plane: FdPlane, entry: SocketEntry, end: socket.socket) -> None:
        super().__init__(plane, entry, end)
        self.to_app = bytearray()  # received from TCP, not yet written to the fd
        self.to_net = bytearray()  # read from the fd, not yet taken by TCP
        self.app_eof = False  # the program shut its writing side (or closed the fd)
        self.net_eof = False  # the peer's FIN came in (TCP recv gave b"")
        self.fin_sent = False  # we shut TCP's writing side after the program's EOF
        self.shut_app = False  # netd's end no longer writes (EOF delivered)
        self.error: int | None = None  # reset / timeout, for GET_ERROR
        self.hung_up = False  # the program closed the fd: finish sending, then close

    # -- the pump ------------------------------------------------------------------------

    def pump(self, now: float) -> None:
        if self.closed:
            return
        if self.error is not None:
            self._discard_app(now)
        else:
            sock = self.entry.sock
            # Before connect() there is no connection yet: the program may already write
            # (it waits in the socketpair) but nothing moves.
            has_conn = getattr(sock, "connection", None) is not None
            state = getattr(sock, "state").name  # noqa: B009 (not in the StackSocket protocol)
            if state == "LISTEN":
                self._signal_pending()
                return
            if not has_conn:
                state = "UNCONNECTED"
            if state in _CONNECTED_STATES or state == "CLOSED":
                self._from_net(now)
                if self.closed:
                    return
                if self.error is None:
                    self._from_app(now, state)
                else:
                    self._discard_app(now)
            if self.hung_up and not self.closed and (
                    not self.to_net or state not in _SENDING_STATES):
                self.close(now)  # all the program wrote is in TCP's hands
        if not self.closed:
            self._interest()

    def _from_net(self, now: float) -> None:
        sock = self.entry.sock
        while not self.net_eof and self.error is None and len(self.to_app) < HIGH_WATER:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(exc.errno or errno.EIO)
                return
            if not data:
                self.net_eof = True
                break
            if self.to_app:
                self.to_app += data
            else:
                self._write_app(data)
                if self.closed:
                    return
        if self.to_app:
            self._flush_app()
        if self.net_eof and not self.to_app and not self.shut_app and not self.closed:
            self.shut_app = True
            with contextlib.suppress(OSError):
                self.end.shutdown(socket.SHUT_WR)

    def _write_app(self, data: bytes) -> None:
        try:
            n = self.end.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._app_gone()
            return
        if n < len(data):
            self.to_app += memoryview(data)[n:]

    def _flush_app(self) -> None:
        while self.to_app:
            try:
                n = self.end.send(self.to_app)
            except BlockingIOError:
                return
            except OSError:
                self._app_gone()
                return
            del self.to_app[:n]

    def _from_app(self, now: float, state: str) -> None:
        sock = self.entry.sock
        if state not in _SENDING_STATES:
            if self.app_eof or state == "CLOSED":
                return
            # Our side of the connection is shut (the peer may still send): what the
            # program writes now cannot go anywhere; leave it unread, like a kernel
            # socket after shutdown whose writes fail with EPIPE.
            return
        while True:
            if self.to_net:
                try:
                    n = sock.send(memoryview(self.to_net), now)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self._fail(exc.errno or errno.EPIPE)
                    return
                del self.to_net[:n]
                if self.to_net:
                    return
            if self.app_eof:
                break
            # Read no more than TCP's send buffer takes now: what it cannot take would be
            # copied into to_net and shifted out of it again.
            room = _send_room(sock)
            if room == 0:
                return
            view = self.plane.read_view
            if room < len(view):
                view = view[:room]
            try:
                got = self.end.recv_into(view)
            except BlockingIOError:
                return
            except OSError:
                self._app_gone()
                return
            data = view[:got]
            if not got:
                self.app_eof = True
                if _hung_up(self.end):
                    self._hangup(now)
                    if self.closed:
                        return
                break
            try:
                n = sock.send(data, now)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._fail(exc.errno or errno.EPIPE)
                return
            if n < len(data):
                self.to_net += data[n:]
                return
        if self.app_eof and not self.to_net and not self.fin_sent:
            self.fin_sent = True
            try:
                sock.shutdown(socket.SHUT_WR, now)
            except OSError as exc:
                log.debug("fd link %d: shutdown: %s", self.entry.sock_id, exc)

    def _signal_pending(self) -> None:
        """A listener's descriptor is readable while ``accept`` would not block: netd keeps
        one byte unread in it while connections wait (the client drains it before each
        ACCEPT; at worst a drained byte makes one accept say EAGAIN).  The program never
        writes here: EOF is its close."""
        try:
            data = self.end.recv(CHUNK)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":
            self._app_gone()
            return
        if self.entry.sock.readable and _unread_by_peer(self.end) == 0:
            with contextlib.suppress(BlockingIOError):
                self.end.send(b"!")
        self._interest()

    def _can_take(self) -> bool:
        """Whether reading the descriptor now leads anywhere: while TCP cannot send (not
        yet connected, its send buffer full) a readable descriptor would only spin the
        loop; the stack's change report (or the sweep, for a close) wakes the pump."""
        if self.error is not None:
            return True  # reading to drop
        sock = self.entry.sock
        conn = getattr(sock, "connection", None)
        if conn is None:  # a listener's descriptor is read to see its close
            state = getattr(sock, "state", None)
            return state is not None and state.name == "LISTEN"
        return conn.state.name in _SENDING_STATES and _send_room(sock) > 0

    def _discard_app(self, now: float) -> None:
        """After a reset: what the program writes has nowhere to go (Linux: EPIPE); read
        and drop it, until the program closes the fd."""
        while True:
            try:
                data = self.end.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError:
                self._app_gone()
                return
            if not data:
                if _hung_up(self.end):
                    self.close(now)
                else:
                    self.app_eof = True  # half-closed: the sweep looks for the close
                return
            self.plane.service.count("fdlink.discarded_bytes", len(data))

    def _interest(self) -> None:
        wanted = 0
        if not self.app_eof and not self.to_net and self._can_take():
            wanted |= selectors.EVENT_READ
        if self.to_app:
            wanted |= selectors.EVENT_WRITE
        self.watch(wanted)

    # -- endings -------------------------------------------------------------------------

    def _fail(self, err: int) -> None:
        """The connection failed (reset, timeout): the program reads what had arrived,
        then EOF; the error waits for GET_ERROR."""
        self.error = err
        self.to_net.clear()
        self.plane.service.count("fdlink.errors")
        if self.to_app:
            self._flush_app()
            self.to_app.clear()  # what the fd could not take dies with the connection
        self.shut_app = True
        with contextlib.suppress(OSError):
            self.end.shutdown(socket.SHUT_WR)
        self.app_eof = False  # keep reading (and dropping) until the program closes

    def _app_gone(self) -> None:
        self.close(self.plane.clock())

    def check_hangup(self, now: float) -> None:
        """An fd not watched for reading (half-closed, or backlogged) shows a full close
        only in poll's POLLHUP: look now and then."""
        if not self.closed and not self.hung_up and _hung_up(self.end):
            self._hangup(now)

    def _hangup(self, now: float) -> None:
        """The program closed the fd (every copy of it), as ``close()`` on a kernel socket:
        what it wrote is still sent, then a FIN -- unless it left received data unread
        or the connection already failed, and then the socket is closed at once (the stack
        answers unread data with a RST, as Linux does)."""
        self.hung_up = True
        self.app_eof = True
        conn = getattr(self.entry.sock, "connection", None)
        unread = bool(self.to_app) or bool(conn is not None and conn.rb.size)
        if unread or self.error is not None:
            self.close(now)

    def take_error(self) -> int | None:
        err, self.error = self.error, None
        return err


def _send_room(sock: object) -> int:
    """Bytes TCP's send buffer takes now (a large number when the socket does not say)."""
    conn = getattr(sock, "connection", None)
    params = getattr(conn, "p", None)
    if conn is None or params is None:
        return CHUNK
    return max(0, int(params.snd_buf) - len(conn.sb))


def _size_buffers(end: socket.socket) -> None:
    for forced, plain in ((_SO_SNDBUFFORCE, socket.SO_SNDBUF),
                          (_SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            end.setsockopt(socket.SOL_SOCKET, forced, PAIR_BUFFER)
        except OSError:  # not privileged: as much as the sysctl allows
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, plain, PAIR_BUFFER)


def _unread_by_peer(end: socket.socket) -> int:
    """Bytes we sent on ``end`` that the program has not read yet (SIOCOUTQ)."""
    raw = fcntl.ioctl(end.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int.from_bytes(raw, sys.byteorder, signed=True)


def _hung_up(end: socket.socket) -> bool:
    poller = select.poll()
    poller.register(end.fileno(), select.POLLIN)
    return any(ev & select.POLLHUP for _, ev in poller.poll(0))


class FdPlane:
    """Every :class:`FdLink` of one service, and the ATTACH_FD handler."""

    def __init__(self, service: NetService, selector: selectors.BaseSelector,
                 clock: Callable[[], float]) -> None:
        self.service = service
        self.selector = selector
        self.clock = clock
        self.links: dict[object, DescriptorLink] = {}  # stack socket -> its link
        self._next_check = 0.0
        # One read buffer for every link (the loop is single-threaded): TCP copies what
        # it takes into its send buffer, so nothing keeps a view of it past the call.
        self.read_view = memoryview(bytearray(CHUNK))

    @classmethod
    def install(cls, service: NetService, runtime: Runtime) -> FdPlane:
        """Serve ATTACH_FD in ``service``, on ``runtime``'s selector and clock."""
        plane = cls(service, runtime.selector, runtime.clock)
        service.extensions[p.Code.SOCKET_ATTACH_FD] = plane
        service.pumps = plane.links
        runtime.add_hook(plane.turn)
        return plane

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message:
        body = p.SocketRef.decode(request.body)
        entry = service.entry(session, body.sock)
        if entry.kind not in (SocketKind.TCP, SocketKind.UDP):
            raise OSError(errno.EOPNOTSUPP, "ping sockets have no descriptor")
        if entry.link is not None:
            raise OSError(errno.EALREADY, "this socket already has a descriptor")
        kind = socket.SOCK_STREAM if entry.kind == SocketKind.TCP else socket.SOCK_SEQPACKET
        ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
        for end in (ours, theirs):
            _size_buffers(end)
        ours.setblocking(False)
        link: FdLink | DatagramLink
        if entry.kind == SocketKind.TCP:
            link = FdLink(self, entry, ours)
        else:
            link = DatagramLink(self, entry, ours)
        st = os.fstat(theirs.fileno())
        link.client_file = (st.st_dev, st.st_ino)
        entry.link = link
        self.links[entry.sock] = link
        service.count("fdlink.attached")
        link.pump(now)
        fd = theirs.detach()
        return Message(code=request.code, request_id=request.request_id,
                       flags=p.Flags.REPLY, fd=fd)

    def forget(self, link: DescriptorLink, now: float) -> None:
        self.links.pop(link.entry.sock, None)
        self.service.count("fdlink.closed")
        self.service.release_linked(link.entry, now)

    def turn(self, now: float) -> float | None:
        if not self.links:
            return None
        if now >= self._next_check:
            self._next_check = now + HUP_CHECK_EVERY
            for link in list(self.links.values()):
                link.check_hangup(now)
                link.pump(now)  # also a safety net, like the watchdog's retry
        return self._next_check if self.links else None
