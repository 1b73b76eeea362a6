"""The heart of netd: per-client socket tables, request dispatch and parked operations.

This module does no I/O of its own.  A transport (the AF_UNIX server in :mod:`.server`, or
the in-process channel of kernel mode) opens a :class:`Session` per IPC channel, hands it
each decoded request together with the current time, and receives replies through the
``send`` callback it gave.  Operations that would block (RECV, ACCEPT, CONNECT, SEND on a
full socket, POLL, DNS, PING) are *parked*: a :class:`Waiter` is kept against the stack
sockets it depends on and retried when ``Stack.take_changed()`` reports one of them, or
answered when its deadline passes.  Nothing here ever blocks, so one client's parked
RECV never holds up another client.

Sockets are driven only through the :class:`~vipernet.stack.socket_api.StackSocket`
interface, so TCP needs no code here beyond what UDP uses.  A session that goes away
(channel closed, process killed) has every socket it owned closed and its waiters dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from vipernet.netd import protocol as p
from vipernet.netd.protocol import Code, Message
from vipernet.netd.watchdog import Watchdog
from vipernet.stack.socket_api import AF_INET, AF_INET6, Address, SocketKind, StackSocket

log = logging.getLogger("vipernet.netd")

SendFn = Callable[[Message], None]
BodyT = TypeVar("BodyT", bound=p.Body)


class StackLike(Protocol):
    """What the service needs of :class:`vipernet.stack.Stack`."""

    def udp_socket(self, family: int = ...) -> Any: ...
    def ping_socket(self) -> Any: ...
    def tcp_socket(self, family: int = ...) -> Any: ...
    def take_changed(self) -> set[Any]: ...


class Waiter:
    """A parked request: retried when one of ``sockets`` changes or ``deadline`` passes.

    ``step(now, expired)`` returns the reply once the operation is finished (including the
    timeout reply when ``expired``), or None to stay parked.
    """

    __slots__ = ("cleanup", "deadline", "request", "session", "sockets", "step")

    def __init__(self, session: Session, request: Message, sockets: Iterable[object],
                 deadline: float | None,
                 step: Callable[[float, bool], Message | None],
                 cleanup: Callable[[float], None] | None = None) -> None:
        self.session = session
        self.request = request
        self.sockets = tuple(sockets)
        self.deadline = deadline
        self.step = step
        self.cleanup = cleanup  # releases what the operation holds, however it ends


class Link(Protocol):
    """What the service needs of a socket's descriptor link (:mod:`.fdlink`)."""

    closed: bool
    # (st_dev, st_ino) of the descriptor the client was given: what SOCKET_ADOPT checks.
    client_file: tuple[int, int] | None

    def pump(self, now: float) -> None: ...
    def close(self, now: float) -> None: ...
    def take_error(self) -> int | None: ...


@dataclass(slots=True)
class SocketEntry:
    sock_id: int
    session: Session
    sock: StackSocket
    kind: SocketKind
    created: float
    # AF_INET or AF_INET6 (the kind byte's 0x10 bit): which layout every address in a
    # message about this socket has, and what its descriptor's datagram header is.
    family: int = AF_INET
    link: Link | None = None  # the socket's bytes flow through a descriptor (ATTACH_FD)
    # Other channels that adopted it (SOCKET_ADOPT: a forked child, a reopened channel).
    sharers: list[Session] = field(default_factory=list)


@dataclass(slots=True)
class Session:
    """One IPC channel (one client) and everything it owns."""

    client_id: int
    send: SendFn
    peer: str = ""
    pid: int | None = None
    sockets: dict[int, SocketEntry] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    requests: int = 0
    open: bool = True


class Extension(Protocol):
    """Handlers the server adds for requests that need more than sockets (DNS, info)."""

    def __call__(self, service: NetService, session: Session, request: Message,
                 now: float) -> Message | None: ...


# Parked timeouts longer than this count as "no limit": a selector cannot sleep ~49 days
# (epoll takes an int of milliseconds) and nobody means it.
MAX_PARK_TIMEOUT = 86400.0
MAX_SOCKETS_PER_CLIENT = 1024  # like RLIMIT_NOFILE: beyond it, EMFILE
MAX_PARKED_PER_CLIENT = 1024  # beyond it, new requests get ENOBUFS (CLOSE still works)
_ALWAYS_ALLOWED = frozenset({Code.SOCKET_CLOSE, Code.GET_INFO, Code.STAT})
# Parked requests that only wait for their socket's readiness: retrying one has no side
# effect unless it can finish, so the watchdog may retry them at any time.
_SOCKET_WAITS = frozenset({Code.SOCKET_CONNECT, Code.SOCKET_ACCEPT, Code.SOCKET_SEND,
                           Code.SOCKET_RECV, Code.SOCKET_POLL, Code.SOCKET_SENDTO,
                           Code.SOCKET_RECVFROM})


def deadline_after(now: float, timeout_ms: int) -> float | None:
    timeout = p.timeout_from_ms(timeout_ms)
    if timeout is None or timeout > MAX_PARK_TIMEOUT:
        return None
    return now + timeout


def _revents(sock: StackSocket, events: int) -> int:
    out = 0
    if events & p.PollEvents.IN and sock.readable:
        out |= p.PollEvents.IN
    if events & p.PollEvents.OUT and sock.writable:
        out |= p.PollEvents.OUT
    if getattr(sock, "pending_error", None):
        out |= p.PollEvents.ERR
    if sock.closed:
        out |= p.PollEvents.HUP
    return out


class NetService:
    """Sessions, the global socket table and every parked operation."""

    def __init__(self, stack: StackLike, *, started: float | None = None) -> None:
        self.stack = stack
        self.started_wall = time.time() if started is None else started
        self.sessions: dict[int, Session] = {}
        self.sockets: dict[int, SocketEntry] = {}
        self.waiting: dict[object, list[Waiter]] = {}  # stack socket -> waiters, FIFO
        self.parked: set[Waiter] = set()
        self.counters: dict[str, int] = {}
        self.extensions: dict[int, Extension] = {}
        self.watchdog = Watchdog(self.count)
        self.pumps: Mapping[object, Link] = {}  # stack socket -> link (set by FdPlane)
        self._next_client = 1
        self._next_sock = 1
        self._handlers: dict[int, Callable[[Session, Message, float], Message | None]] = {
            Code.SOCKET_CREATE: self._create,
            Code.SOCKET_CONNECT: self._connect,
            Code.SOCKET_BIND: self._bind,
            Code.SOCKET_LISTEN: self._listen,
            Code.SOCKET_ACCEPT: self._accept,
            Code.SOCKET_SEND: self._send,
            Code.SOCKET_RECV: self._recv,
            Code.SOCKET_CLOSE: self._close,
            Code.SOCKET_POLL: self._poll,
            Code.SOCKET_GETSOCKNAME: self._getsockname,
            Code.SOCKET_GETPEERNAME: self._getpeername,
            Code.SOCKET_SHUTDOWN: self._shutdown,
            Code.SOCKET_SETSOCKOPT: self._setsockopt,
            Code.SOCKET_SENDTO: self._sendto,
            Code.SOCKET_RECVFROM: self._recvfrom,
            Code.SOCKET_GET_ERROR: self._get_error,
            Code.SOCKET_ADOPT: self._adopt,
            Code.STAT: self._stat,
        }

    # ------------------------------------------------------------------ counters, sessions

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def open_session(self, send: SendFn, *, peer: str = "", pid: int | None = None) -> Session:
        session = Session(client_id=self._next_client, send=send, peer=peer, pid=pid)
        self._next_client += 1
        self.sessions[session.client_id] = session
        self.count("sessions.opened")
        return session

    def close_session(self, session: Session, now: float) -> None:
        """The channel went away: drop its waiters and close every socket it owned."""
        if not session.open:
            return
        session.open = False
        for waiter in list(session.waiters):
            self._unpark(waiter, now)
        for entry in list(session.sockets.values()):
            if entry.link is not None and not entry.link.closed:
                # Lives as long as its descriptor (fork, exec): see fdlink.  A channel
                # that adopted it answers for it now (stat shows that process).
                self._leave(entry, session)
                continue
            self._release(entry, now)
        self.sessions.pop(session.client_id, None)
        self.count("sessions.closed")

    # ------------------------------------------------------------------ entry points

    def handle(self, session: Session, request: Message, now: float) -> None:
        """Answer ``request`` now, or park it; the reply goes through ``session.send``."""
        session.requests += 1
        self.count("requests")
        handler = self._handlers.get(request.code)
        ext = self.extensions.get(request.code)
        reply: Message | None
        try:
            if len(session.waiters) >= MAX_PARKED_PER_CLIENT \
                    and request.code not in _ALWAYS_ALLOWED:
                self.count("requests.too_many_parked")
                reply = p.error_reply(request, errno.ENOBUFS,
                                      f"more than {MAX_PARKED_PER_CLIENT} requests parked")
            elif handler is not None:
                reply = handler(session, request, now)
            elif ext is not None:
                reply = ext(self, session, request, now)
            else:
                self.count("requests.unknown_code")
                reply = p.error_reply(request, errno.ENOSYS,
                                      f"unknown request code 0x{request.code:02x}")
        except p.MalformedMessage as exc:
            self.count("requests.malformed")
            reply = p.error_reply(request, errno.EINVAL, str(exc))
        except OSError as exc:
            reply = self._os_error(request, exc)
        except Exception as exc:  # a bug below us must not take the daemon down
            self.count("requests.internal_error")
            log.exception("internal error handling code 0x%02x", request.code)
            reply = p.error_reply(request, errno.EIO, f"internal error: {exc!r}")
        if reply is not None:
            session.send(reply)

    def on_changed(self, now: float) -> None:
        """Retry the waiters of every socket the stack reports as changed."""
        changed = self.stack.take_changed()
        pumps = self.pumps
        for sock in changed:
            if pumps:
                link = pumps.get(sock)
                if link is not None:
                    link.pump(now)
            waiters = self.waiting.get(sock)
            if not waiters:
                continue
            for waiter in list(waiters):
                self._retry(waiter, now, expired=False)

    def expire(self, now: float) -> None:
        """Answer (or retry, for multi-step jobs) every waiter whose deadline has passed."""
        for waiter in [w for w in self.parked if w.deadline is not None and w.deadline <= now]:
            self._retry(waiter, now, expired=True)

    def next_deadline(self) -> float | None:
        deadlines = [w.deadline for w in self.parked if w.deadline is not None]
        return min(deadlines) if deadlines else None

    def turn(self, now: float) -> float | None:
        """The runtime hook after every loop turn (netd and kernel mode): retry the waiters
        whose sockets changed, answer the overdue; returns the earliest parked deadline."""
        self.on_changed(now)
        due = self.next_deadline()
        if due is not None and due <= now:
            self.expire(now)
            due = self.next_deadline()
        if not self.sockets:
            return due
        if now >= self.watchdog.next_sweep:
            self.sweep(now)
        sweep = self.watchdog.next_sweep
        return sweep if due is None or sweep < due else due

    def sweep(self, now: float) -> None:
        """The watchdog's look at every socket (see :mod:`.watchdog`); parked requests of
        sockets without progress are retried, and one that finishes was a lost wake-up."""
        unchanged = self.watchdog.sweep(now, ((e.sock_id, e.sock)
                                              for e in self.sockets.values()))
        for sock_id in unchanged:
            entry = self.sockets.get(sock_id)
            if entry is None:
                continue
            for waiter in list(self.waiting.get(entry.sock, ())):
                if waiter.request.code not in _SOCKET_WAITS:
                    continue
                self._retry(waiter, now, expired=False)
                if waiter not in self.parked:
                    self.count("watchdog.lost_wakeups")
                    log.warning("watchdog: a parked 0x%02x on socket %d was ready but not "
                                "woken", waiter.request.code, sock_id)
        self.counters["watchdog.stalled"] = len(self.watchdog.stalled)

    def retry_all(self, now: float) -> None:
        """Retry every waiter (cheap safety net when readiness may change unreported)."""
        for waiters in list(self.waiting.values()):
            for waiter in list(waiters):
                self._retry(waiter, now, expired=False)

    # ------------------------------------------------------------------ parking

    def park(self, waiter: Waiter) -> None:
        waiter.session.waiters.append(waiter)
        for sock in waiter.sockets:
            self.waiting.setdefault(sock, []).append(waiter)
        self.parked.add(waiter)
        self.count("parked")

    def watch(self, waiter: Waiter, sockets: Iterable[object]) -> None:
        """Change the sockets a parked waiter is retried for (multi-socket jobs like DNS)."""
        self._unwatch(waiter)
        waiter.sockets = tuple(sockets)
        if waiter in self.parked:
            for sock in waiter.sockets:
                self.waiting.setdefault(sock, []).append(waiter)

    def _unwatch(self, waiter: Waiter) -> None:
        """Stop retrying ``waiter`` when its sockets change."""
        for sock in waiter.sockets:
            waiters = self.waiting.get(sock)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self.waiting[sock]

    def _unpark(self, waiter: Waiter, now: float) -> None:
        self.parked.discard(waiter)
        if waiter in waiter.session.waiters:
            waiter.session.waiters.remove(waiter)
        self._unwatch(waiter)
        if waiter.cleanup is not None:
            cleanup, waiter.cleanup = waiter.cleanup, None
            try:
                cleanup(now)
            except Exception:
                log.exception("cleanup of a parked 0x%02x failed", waiter.request.code)

    def _retry(self, waiter: Waiter, now: float, *, expired: bool) -> None:
        if waiter not in self.parked:
            return  # already answered during this pass
        try:
            reply = waiter.step(now, expired)
        except OSError as exc:
            reply = self._os_error(waiter.request, exc)
        except p.MalformedMessage as exc:
            reply = p.error_reply(waiter.request, errno.EINVAL, str(exc))
        except Exception as exc:
            self.count("requests.internal_error")
            log.exception("internal error retrying code 0x%02x", waiter.request.code)
            reply = p.error_reply(waiter.request, errno.EIO, f"internal error: {exc!r}")
        if reply is None and expired and waiter.deadline is not None \
                and waiter.deadline <= now:
            reply = p.error_reply(waiter.request, errno.ETIMEDOUT, "timed out")
        if reply is not None:
            self._unpark(waiter, now)
            if waiter.session.open:
                waiter.session.send(reply)

    def _park_or_reply(self, session: Session, request: Message, sock: StackSocket,
                       timeout_ms: int, now: float,
                       attempt: Callable[[float], Message | None],
                       would_block_errno: int = errno.EAGAIN) -> Message | None:
        """Run ``attempt``; if it would block, park it (or fail at once when non-blocking)."""
        reply = attempt(now)
        if reply is not None:
            return reply
        if timeout_ms == 0:
            return p.error_reply(request, would_block_errno, os.strerror(would_block_errno))

        def step(t: float, expired: bool) -> Message | None:
            result = attempt(t)
            if result is None and expired:
                return p.error_reply(request, errno.ETIMEDOUT, "timed out")
            return result

        self.park(Waiter(session, request, (sock,), deadline_after(now, timeout_ms), step))
        return None

    def _os_error(self, request: Message, exc: OSError) -> Message:
        code = exc.errno or errno.EIO
        text = exc.strerror or str(exc) or os.strerror(code)
        return p.error_reply(request, code, text)

    # ------------------------------------------------------------------ socket table

    def entry(self, session: Session, sock_id: int) -> SocketEntry:
        entry = session.sockets.get(sock_id)
        if entry is None:
            raise OSError(errno.EBADF, f"no socket {sock_id} on this channel")
        return entry

    def add_socket(self, session: Session, sock: StackSocket, kind: SocketKind,
                   now: float, family: int = AF_INET) -> SocketEntry:
        if len(session.sockets) >= MAX_SOCKETS_PER_CLIENT:
            sock.close(now)
            self.count("sockets.over_limit")
            raise OSError(errno.EMFILE, f"more than {MAX_SOCKETS_PER_CLIENT} sockets open")
        entry = SocketEntry(sock_id=self._next_sock, session=session, sock=sock, kind=kind,
                            created=now, family=family)
        self._next_sock += 1
        self.sockets[entry.sock_id] = entry
        session.sockets[entry.sock_id] = entry
        self.count("sockets.created")
        return entry

    def release_linked(self, entry: SocketEntry, now: float) -> None:
        """A socket's descriptor was closed (its link is done): release the socket."""
        if self.sockets.get(entry.sock_id) is entry:
            self._release(entry, now)

    def _leave(self, entry: SocketEntry, session: Session) -> None:
        """``session`` no longer names ``entry`` (its CLOSE, or the channel went away);
        the socket itself stays, for its descriptor.  The owner role passes to a channel
        that adopted it, if one is still open."""
        session.sockets.pop(entry.sock_id, None)
        if session in entry.sharers:
            entry.sharers.remove(session)
        elif entry.session is session and not session.open:
            for sharer in entry.sharers:
                if sharer.open:
                    entry.sharers.remove(sharer)
                    entry.session = sharer
                    break

    def _data_entry(self, session: Session, sock_id: int) -> SocketEntry:
        """The entry for a SEND/RECV: refused while the bytes flow through a descriptor
        (the two paths would each take part of the stream)."""
        entry = self.entry(session, sock_id)
        if entry.link is not None:
            raise OSError(errno.EINVAL, "this socket's data flows through its descriptor")
        return entry

    def _release(self, entry: SocketEntry, now: float) -> None:
        if entry.link is not None:
            link, entry.link = entry.link, None
            link.close(now)
        self.sockets.pop(entry.sock_id, None)
        entry.session.sockets.pop(entry.sock_id, None)
        for sharer in entry.sharers:
            sharer.sockets.pop(entry.sock_id, None)
        entry.sharers.clear()
        for waiter in list(self.waiting.get(entry.sock, ())):
            self._unpark(waiter, now)
            if waiter.session.open:
                waiter.session.send(p.error_reply(waiter.request, errno.EBADF,
                                                  "socket closed while waiting"))
        try:
            entry.sock.close(now)
        except OSError as exc:
            log.debug("close of socket %d: %s", entry.sock_id, exc)
        self.count("sockets.closed")

    # ------------------------------------------------------------------ handlers

    def _create(self, session: Session, request: Message, now: float) -> Message:
        body = p.CreateRequest.decode(request.body)
        family = body.family
        if body.kind == SocketKind.UDP:
            sock = self.stack.udp_socket(family)
        elif body.kind == SocketKind.ICMP:
            if family == AF_INET6:
                raise OSError(errno.EAFNOSUPPORT, "no ICMPv6 ping sockets: use NET_PING6")
            sock = self.stack.ping_socket()
        else:
            try:
                sock = self.stack.tcp_socket(family)
            except (ImportError, NotImplementedError) as exc:
                raise OSError(errno.EPROTONOSUPPORT, f"TCP is not available: {exc}") from exc
        entry = self.add_socket(session, sock, body.kind, now, family)
        return p.reply_to(request, p.SocketRef(sock=entry.sock_id).encode())

    def _addressed(self, session: Session, request: Message,
                   body: type[BodyT]) -> tuple[SocketEntry, BodyT]:
        """Decode a request whose address layout is its socket's family's (BIND,
        CONNECT, SENDTO): the socket id leads the body, so it is looked up first."""
        if len(request.body) < 4:
            body.decode(request.body)  # too short for an id: raises MalformedMessage
        entry = self.entry(session, int.from_bytes(request.body[:4], "big"))
        return entry, p.for_family(body, entry.family).decode(request.body)

    @staticmethod
    def _address_reply(request: Message, entry: SocketEntry, address: Address) -> Message:
        return p.reply_to(request, p.for_family(p.AddressBody, entry.family)(
            address=address).encode())

    def _bind(self, session: Session, request: Message, now: float) -> Message:
        entry, body = self._addressed(session, request, p.BindRequest)
        entry.sock.bind(body.address)
        return self._address_reply(request, entry, entry.sock.getsockname())

    def _connect(self, session: Session, request: Message, now: float) -> Message | None:
        entry, body = self._addressed(session, request, p.ConnectRequest)
        sock = entry.sock
        try:
            sock.connect(body.address, now)
            return p.reply_to(request)
        except BlockingIOError as exc:
            if exc.errno == errno.EALREADY:
                # An earlier connect is still under way (parked or not): Linux's answer
                # to a second one, blocking or not.  Once it ends: EISCONN or its error.
                return p.error_reply(request, errno.EALREADY, "connect already in progress")
            # EINPROGRESS: this stream connect is under way

        def attempt(_now: float) -> Message | None:
            err = sock.take_error()
            if not err and entry.link is not None:
                # An attached socket's pump may have read the failure first (its recv
                # raised it): the link keeps it, and a failed socket is "writable" too.
                err = entry.link.take_error()
            if err:
                return p.error_reply(request, err, os.strerror(err))
            if sock.writable:
                return p.reply_to(request)
            return None

        return self._park_or_reply(session, request, sock, body.timeout_ms, now, attempt,
                                   errno.EINPROGRESS)

    def _listen(self, session: Session, request: Message, now: float) -> Message:
        body = p.ListenRequest.decode(request.body)
        self.entry(session, body.sock).sock.listen(body.backlog)
        return p.reply_to(request)

    def _accept(self, session: Session, request: Message, now: float) -> Message | None:
        body = p.WaitRequest.decode(request.body)
        listener = self.entry(session, body.sock)

        def attempt(t: float) -> Message | None:
            try:
                child = listener.sock.accept()
            except BlockingIOError:
                return None
            entry = self.add_socket(session, child, listener.kind, t, listener.family)
            reply = p.for_family(p.AcceptReply, listener.family)(
                sock=entry.sock_id, address=child.getpeername())
            if listener.link is not None:
                listener.link.pump(t)  # re-arm its descriptor's readiness byte
            return p.reply_to(request, reply.encode())

        return self._park_or_reply(session, request, listener.sock, body.timeout_ms, now,
                                   attempt)

    def _sending(self, session: Session, request: Message, sock: StackSocket, timeout_ms: int,
                 send_all: bool, data: bytes, now: float,
                 send: Callable[[memoryview, float], int]) -> Message | None:
        view = memoryview(data)
        done = 0

        def attempt(t: float) -> Message | None:
            nonlocal done
            while True:
                try:
                    n = send(view[done:], t)
                except BlockingIOError:
                    n = 0
                done += n
                if done >= len(view) or (done > 0 and not send_all):
                    return p.reply_to(request, p.CountBody(count=done).encode())
                if n == 0:
                    return None

        return self._park_or_reply(session, request, sock, timeout_ms, now, attempt)

    def _send(self, session: Session, request: Message, now: float) -> Message | None:
        body = p.SendRequest.decode(request.body)
        sock = self._data_entry(session, body.sock).sock
        if not body.data:
            sock.send(b"", now)
            return p.reply_to(request, p.CountBody(count=0).encode())
        return self._sending(session, request, sock, body.timeout_ms,
                             bool(body.flags & p.SendFlags.ALL), body.data, now, sock.send)

    def _sendto(self, session: Session, request: Message, now: float) -> Message | None:
        entry, body = self._addressed(session, request, p.SendToRequest)
        sock = self._data_entry(session, entry.sock_id).sock
        address = body.address
        if not body.data:
            sock.sendto(b"", address, now)
            return p.reply_to(request, p.CountBody(count=0).encode())
        return self._sending(session, request, sock, body.timeout_ms,
                             bool(body.flags & p.SendFlags.ALL), body.data, now,
                             lambda view, t: sock.sendto(view, address, t))

    def _recv(self, session: Session, request: Message, now: float) -> Message | None:
        body = p.RecvRequest.decode(request.body)
        sock = self._data_entry(session, body.sock).sock

        def attempt(_now: float) -> Message | None:
            try:
                return p.reply_to(request, sock.recv(body.max_bytes))
            except BlockingIOError:
                return None

        return self._park_or_reply(session, request, sock, body.timeout_ms, now, attempt)

    def _recvfrom(self, session: Session, request: Message, now: float) -> Message | None:
        body = p.RecvRequest.decode(request.body)
        entry = self._data_entry(session, body.sock)
        sock = entry.sock
        reply_body = p.for_family(p.RecvFromReply, entry.family)

        def attempt(_now: float) -> Message | None:
            try:
                data, address = sock.recvfrom(body.max_bytes)
            except BlockingIOError:
                return None
            return p.reply_to(request, reply_body(address=address, data=data).encode())

        return self._park_or_reply(session, request, sock, body.timeout_ms, now, attempt)

    def _close(self, session: Session, request: Message, now: float) -> Message:
        body = p.SocketRef.decode(request.body)
        entry = self.entry(session, body.sock)
        if entry.link is not None and not entry.link.closed:
            # The id is gone for this channel; the socket lives until its descriptor is
            # closed (and what was written to it is sent): see fdlink.
            self._leave(entry, session)
            return p.reply_to(request)
        self._release(entry, now)
        return p.reply_to(request)

    def _poll(self, session: Session, request: Message, now: float) -> Message | None:
        body = p.PollBody.decode(request.body)
        targets = [(sock_id, events, self.entry(session, sock_id).sock)
                   for sock_id, events in body.entries]

        def attempt(_now: float) -> Message | None:
            result = tuple((sid, _revents(sock, ev)) for sid, ev, sock in targets)
            if any(rev for _, rev in result):
                return p.reply_to(request, p.PollBody(timeout_ms=0, entries=result).encode())
            return None

        reply = attempt(now)
        if reply is not None:
            return reply
        empty = p.PollBody(timeout_ms=0, entries=tuple((sid, 0) for sid, _, _ in targets))
        if body.timeout_ms == 0:
            return p.reply_to(request, empty.encode())

        def step(t: float, expired: bool) -> Message | None:
            result = attempt(t)
            if result is None and expired:
                return p.reply_to(request, empty.encode())
            return result

        self.park(Waiter(session, request, [t[2] for t in targets],
                         deadline_after(now, body.timeout_ms), step))
        return None

    def _getsockname(self, session: Session, request: Message, now: float) -> Message:
        entry = self.entry(session, p.SocketRef.decode(request.body).sock)
        return self._address_reply(request, entry, entry.sock.getsockname())

    def _getpeername(self, session: Session, request: Message, now: float) -> Message:
        entry = self.entry(session, p.SocketRef.decode(request.body).sock)
        return self._address_reply(request, entry, entry.sock.getpeername())

    def _shutdown(self, session: Session, request: Message, now: float) -> Message:
        body = p.ShutdownRequest.decode(request.body)
        entry = self.entry(session, body.sock)
        if entry.link is not None and body.how != 0:
            raise OSError(errno.EINVAL, "shut the socket's descriptor for writing instead "
                                        "(bytes may still wait in it)")
        entry.sock.shutdown(body.how, now)
        return p.reply_to(request)

    def _setsockopt(self, session: Session, request: Message, now: float) -> Message:
        body = p.SetSockOptRequest.decode(request.body)
        try:
            option = p.SockOpt(body.option)
        except ValueError:
            raise OSError(errno.ENOPROTOOPT, f"unknown option {body.option}") from None
        entry = self.entry(session, body.sock)
        if option == p.SockOpt.IPV6_V6ONLY and entry.family != AF_INET6:
            # Linux's answer for an IPPROTO_IPV6 option on an AF_INET socket.
            raise OSError(errno.ENOPROTOOPT, "IPV6_V6ONLY is for AF_INET6 sockets")
        if body.data is None:
            entry.sock.setsockopt(option.name, body.value)
            return p.reply_to(request)
        setter = getattr(entry.sock, "set_group_option", None)
        if setter is None:
            # Linux: EPROTO for a membership on a TCP socket; ping sockets take none here.
            raise OSError(errno.EPROTO if entry.sock.kind == SocketKind.TCP
                          else errno.ENOPROTOOPT, f"{option.name} is for UDP sockets")
        setter(option.name, body.data, now)
        return p.reply_to(request)

    def _get_error(self, session: Session, request: Message, now: float) -> Message:
        entry = self.entry(session, p.SocketRef.decode(request.body).sock)
        err = entry.link.take_error() if entry.link is not None else None
        if not err:
            err = entry.sock.take_error()
        return p.reply_to(request, p.ErrnoBody(errno=err or 0).encode())

    def _adopt(self, session: Session, request: Message, now: float) -> Message:
        """SOCKET_ADOPT: another channel's socket becomes this channel's too, on proof
        that the client holds its descriptor -- the request carries it (SCM_RIGHTS), and
        it must be the very file netd handed out for that socket at ATTACH_FD.  netd only
        looks at it (fstat); the transport closes it after the request."""
        body = p.SocketRef.decode(request.body)
        if request.fd is None:
            self.count("adopt.refused")
            raise OSError(errno.EBADF, "no descriptor came with the request")
        entry = self.sockets.get(body.sock)
        if entry is None:
            self.count("adopt.refused")
            raise OSError(errno.EBADF, f"no socket {body.sock}")
        if session.sockets.get(body.sock) is entry:
            return p.reply_to(request)  # already ours: nothing to do
        link = entry.link
        expected = link.client_file if link is not None and not link.closed else None
        try:
            st = os.fstat(request.fd)
            given: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            given = None
        if expected is None or given != expected:
            self.count("adopt.refused")
            raise OSError(errno.EPERM, f"that descriptor is not socket {body.sock}'s")
        if len(session.sockets) >= MAX_SOCKETS_PER_CLIENT:
            raise OSError(errno.EMFILE, f"more than {MAX_SOCKETS_PER_CLIENT} sockets open")
        session.sockets[entry.sock_id] = entry
        if entry.session is not session and session not in entry.sharers:
            entry.sharers.append(session)
        self.count("adopt.ok")
        return p.reply_to(request)

    def _stat(self, session: Session, request: Message, now: float) -> Message:
        p.Empty.decode(request.body)
        return p.reply_to(request, p.JsonBody(value=self.stat_report(now)).encode())

    # ------------------------------------------------------------------ reports

    def socket_rows(self, now: float) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for entry in sorted(self.sockets.values(), key=lambda e: e.sock_id):
            sock = entry.sock
            rows.append({
                "id": entry.sock_id,
                "client": entry.session.client_id,
                "pid": entry.session.pid,
                "command": command_of(entry.session.pid),
                "kind": entry.kind.name.lower(),
                "family": "ipv6" if entry.family == AF_INET6 else "ipv4",
                "local": _address_or_none(sock.getsockname),
                "remote": _address_or_none(sock.getpeername),
                "state": _state(sock),
                "recv_queue": _recv_queue(sock),
                "send_queue": _send_queue(sock),
                "waiting": len(self.waiting.get(sock, ())),
                "age": round(now - entry.created, 3),
                "stalled": self.watchdog.stalled.get(entry.sock_id),
                "fd": entry.link is not None,
                **_tcp_details(sock, now),
            })
        return rows

    def stat_report(self, now: float) -> dict[str, object]:
        return {
            "sockets": self.socket_rows(now),
            "clients": [{"client": s.client_id, "pid": s.pid, "peer": s.peer,
                         "command": command_of(s.pid),
                         "sockets": len(s.sockets), "parked": len(s.waiters),
                         "requests": s.requests}
                        for s in sorted(self.sessions.values(), key=lambda s: s.client_id)],
            "netd": dict(sorted(self.counters.items())),
        }


def command_of(pid: int | None) -> str | None:
    """The command line of a client process, as ``ps`` shows it (None once it is gone)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")[:200] or None


def _address_or_none(getter: Callable[[], Address]) -> str | None:
    """``ip:port``, or ``[ip]:port`` for an IPv6 address (as ``ss`` and URLs write it)."""
    try:
        address = getter()
    except OSError:
        return None
    host, port = address[0], address[1]
    # An AF_INET6 socket's host is already inet_ntop's text (format_address6).
    return f"[{host}]:{port}" if len(address) == 4 else f"{host}:{port}"


# The StackSocket contract has no state or queue sizes; these read what the stack's
# socket classes happen to expose (TCP: state + connection buffers, UDP: queued_bytes)
# and fall back to something honest, so stat never breaks on a socket kind it lacks.

def _state(sock: StackSocket) -> str:
    state = getattr(sock, "state", None)
    if state is not None:
        return str(getattr(state, "name", state))
    if sock.closed:
        return "CLOSED"
    try:
        sock.getpeername()
    except OSError:
        return "UNCONN"
    return "ESTAB"


def _tcp_details(sock: StackSocket, now: float) -> dict[str, object]:
    """What ``ss -ti`` shows of a TCP connection, for ``vipernet stat -i`` and debugging
    (sequence numbers relative to the initial ones, like tshark's)."""
    conn = getattr(sock, "connection", None)
    if conn is None or not hasattr(conn, "snd_una"):
        return {}
    rto = conn.rto
    return {"tcp": {
        "snd_una": conn.snd_una, "snd_nxt": conn.snd_nxt, "snd_max": conn.snd_max,
        "snd_wnd": conn.snd_wnd, "cwnd": conn.cc.cwnd, "ssthresh": conn.cc.ssthresh,
        "rcv_nxt": conn.rcv_nxt, "rcv_wnd": max(conn.rcv_adv - conn.rcv_nxt, 0),
        "out_of_order": conn.rb.ooo_bytes, "unread": conn.rb.size,
        "srtt_ms": None if rto.srtt is None else round(rto.srtt * 1000, 3),
        "rto_ms": round(rto.current() * 1000, 1), "backoff": rto.backoff,
        "retransmits": conn.rtx_count, "in_recovery": conn.in_recovery,
        "timer": None if conn.scheduled is None else round(conn.scheduled - now, 3),
        "last_rx": round(now - conn.last_rx, 3) if conn.last_rx else None,
    }}


def _recv_queue(sock: StackSocket) -> int:
    conn = getattr(sock, "connection", None)
    buffer = getattr(conn, "rb", None)
    if buffer is not None:
        return int(getattr(buffer, "size", 0))
    return int(getattr(sock, "queued_bytes", 0) or 0)


def _send_queue(sock: StackSocket) -> int:
    """Bytes the application gave that the peer has not acknowledged (as ``ss``'s Send-Q)."""
    conn = getattr(sock, "connection", None)
    buffer = getattr(conn, "sb", None)
    try:
        return len(buffer) if buffer is not None else 0
    except TypeError:
        return 0
