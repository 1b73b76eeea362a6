"""The vhost-user virtio-net back-end as a vipernet link :class:`~vipernet.link.frame.Device`.

QEMU (``-netdev vhost-user,chardev=...`` over ``-chardev socket,path=SOCK``) is the
front-end: it shares guest RAM and the two virtqueues of a ``virtio-net-pci`` device with
us, and the guest's driver talks to us through them without QEMU in the data path.

* :meth:`VhostUserDevice.listen` makes the UNIX socket QEMU connects to (``server=off``,
  QEMU's default) and returns at once; QEMU may connect, disconnect and connect again (a
  rebooted QEMU, or ``reconnect=N`` on its chardev): each connection is a fresh
  :class:`~.session.Session`.  While nobody is connected, ``receive`` returns nothing and
  ``send`` drops (counted).  With ``reconnect=False`` the first disconnect closes the device
  instead, as :meth:`connect` always does.
* :meth:`VhostUserDevice.connect` connects to QEMU listening (``server=on``); when QEMU goes
  away, ``receive`` raises :class:`~vipernet.link.errors.DeviceClosed`.

:meth:`fileno` is an epoll fd over the listening socket, the control connection and the
rings' kick eventfds, so a runtime waits on one fd for all of them.  :meth:`receive`
services control messages, clears kicks, takes every frame the guest queued on its TX ring
(queue 1; the virtio-net header becomes the frame's ``Offload``, decoded by the TAP's
codec), and pushes frames waiting for RX buffers.  :meth:`send` writes a frame into the
guest's RX ring (queue 0); when the guest has posted no buffers the frame waits in a bounded
backlog, retried when the guest kicks RX with new buffers.  The guest is signalled on the
call eventfd once per batch, and only when it asked (``NO_INTERRUPT`` / ``used_event``).

Offloads follow what the guest accepted: ``capabilities`` says partial checksums and TSO
only with ``GUEST_CSUM`` (+ ``GUEST_TSO4``/``6``).  Until the driver has negotiated,
``capabilities`` states what we offer (a stack built then plans with it), and ``send``
finishes in software whatever the guest turned down (checksums; TCP/IPv4 GSO is cut to MSS
segments; a TCP/IPv6 GSO frame, which no software path here can cut, is dropped, counted).

Guest resets need nothing special: the front-end stops each ring with GET_VRING_BASE (we
answer where it stopped, and drop the RX backlog meant for the old driver), may replace the
memory table, and sets the rings up again.
"""

from __future__ import annotations

import array
import contextlib
import errno
import logging
import os
import select
import socket
import time
from collections import deque
from dataclasses import dataclass

from vipernet.link.counters import LinkCounters
from vipernet.link.errors import DeviceClosed, LinkError, LinkProtocolError, NoSuchInterface
from vipernet.link.frame import DeviceCapabilities, Frame, GsoType
from vipernet.link.offload import ETH_HEADER_LEN, OffloadError, check_frame_size, resolve_offloads
from vipernet.link.qemu import listening_socket
from vipernet.link.vhost_user.features import OFFERED, Feature, feature_names
from vipernet.link.vhost_user.net import OffloadDecoder, RxVerdict, TxVerdict, put_frame, take_frame
from vipernet.link.vhost_user.protocol import (
    MAX_FDS,
    Message,
    MessageDecoder,
    VhostUserProtocolError,
    close_fds,
    message_fds,
)
from vipernet.link.vhost_user.session import RX, TX, RingState, Session
from vipernet.link.vhost_user.virtqueue import RingError

log = logging.getLogger(__name__)

MAX_GSO_FRAME = 65535 + ETH_HEADER_LEN
MAX_TX_BATCH = 1024  # guest frames per receive(); more waits for the next call (due at once)
MAX_BACKLOG_FRAMES = 2048  # frames waiting for RX buffers ...
MAX_BACKLOG_BYTES = 8 * 1024 * 1024  # ... and their bytes
BACKLOG_POLL = 0.01  # seconds: a waiting backlog is retried this often even without a kick
POLLING_INTERVAL = 0.001  # a ring set up without a kick fd ("poll instead") is looked at so
RECV_CHUNK = 65536
_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS * 4 + 4 * 4)  # room to notice a peer sending too many
_ONE = (1).to_bytes(8, "little")
_LISTENER, _CONTROL = "listener", "control"


@dataclass(slots=True)
class VhostUserCounters(LinkCounters):
    """LinkCounters plus what only a vhost-user device sees."""

    sessions: int = 0  # front-end connections accepted (or made)
    rejected: int = 0  # second connections turned away while one is active
    protocol_errors: int = 0
    bad_chains: int = 0  # malformed descriptor chains (returned empty, or skipped)
    rx_disabled: int = 0  # guest frames discarded because their ring was disabled
    backlogged: int = 0  # frames that had to wait for RX buffers
    kicks: int = 0
    calls: int = 0  # interrupts we raised
    ring_stops: int = 0  # GET_VRING_BASE: the front-end stopped a ring (reset, shutdown)


def _capabilities(features: int, mtu: int) -> DeviceCapabilities:
    csum = bool(features & Feature.GUEST_CSUM)
    tso = csum and bool(features & Feature.GUEST_TSO4) and bool(features & Feature.GUEST_TSO6)
    return DeviceCapabilities(mtu=mtu, tx_csum_offload=csum, tso=tso,
                              max_frame=MAX_GSO_FRAME if tso else mtu + ETH_HEADER_LEN)


class VhostUserDevice:
    """See the module docstring; make one with :meth:`listen` or :meth:`connect`."""

    def __init__(self, *, name: str, listener: socket.socket | None = None,
                 conn: socket.socket | None = None, path: str | None = None,
                 reconnect: bool = True, mtu: int = 1500) -> None:
        if not 68 <= mtu <= 65535:
            raise LinkError(f"mtu={mtu} is outside 68..65535")
        self.name = name
        self.counters = VhostUserCounters()
        self.capabilities = _capabilities(int(OFFERED), mtu)
        self._mtu = mtu
        self._listener = listener
        self._path = path  # the socket file we made (removed by close)
        self._reconnect = reconnect and listener is not None
        self._epoll = select.epoll()
        self._roles: dict[int, str | int] = {}  # fd -> listener / control / ring index
        self._conn: socket.socket | None = None
        self._session: Session | None = None
        self._decoder = MessageDecoder()
        self._backlog: deque[Frame] = deque()
        self._backlog_bytes = 0
        self._offloads = OffloadDecoder()
        self._tx_more = False  # receive() stopped at MAX_TX_BATCH with frames left
        self._last_now = 0.0
        self._failure: LinkError | None = None
        self._closed = False
        self.negotiated: int | None = None  # the last session's SET_FEATURES, for reports
        if listener is not None:
            listener.setblocking(False)
            self._watch(listener.fileno(), _LISTENER)
        if conn is not None:
            self._attach(conn)

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def listen(cls, path: str, *, reconnect: bool = True, mtu: int = 1500) -> VhostUserDevice:
        """Listen at ``path`` for QEMU (which connects with ``server=off``).  Returns at once;
        an existing file at ``path`` is an error, never replaced."""
        # Published only once listening, so a QEMU started as soon as the path exists
        # is never refused (LinkError if the path is taken).
        listener, _published = listening_socket(path, backlog=1)
        try:
            return cls(name=f"vhost-user:{path}", listener=listener, path=path,
                       reconnect=reconnect, mtu=mtu)
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    @classmethod
    def connect(cls, path: str, *, mtu: int = 1500, timeout: float = 10.0) -> VhostUserDevice:
        """Connect to QEMU listening at ``path`` (``-chardev socket,server=on``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                raise NoSuchInterface(f"nothing is listening at {path!r}: {exc.strerror}"
                                      ) from None
            raise LinkError(f"cannot connect to {path!r}: {exc.strerror or exc}") from None
        return cls(name=f"vhost-user:{path}", conn=sock, reconnect=False, mtu=mtu)

    # -- Device ---------------------------------------------------------------------------------

    def fileno(self) -> int | None:
        return None if self._closed else self._epoll.fileno()

    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session | None:
        return self._session

    def receive(self, now: float) -> list[Frame]:
        self._check_usable()
        self._last_now = now
        for fd, _events in self._epoll.poll(0):
            role = self._roles.get(fd)
            if role is None:
                continue
            if role == _LISTENER:
                self._accept()
            elif role == _CONTROL:
                self._service_control()
            else:
                self._clear_kick(fd)
        session = self._session
        if session is None:
            if self._failure is not None:
                self._raise_failure()
            return []
        if self._backlog:
            self._flush_backlog(session)
        return self._drain_tx(session)

    def send(self, frame: Frame, now: float) -> None:
        self._check_usable()
        self._last_now = now
        length = len(frame.data)
        if not ETH_HEADER_LEN <= length <= MAX_GSO_FRAME:
            # What we accept does not shrink with the guest's features: we can cut it.
            check_frame_size(self.name, frame, DeviceCapabilities(max_frame=MAX_GSO_FRAME))
        session = self._session
        ring = session.rings[RX] if session is not None else None
        if session is None or ring is None or ring.queue is None or not ring.enabled:
            self.counters.tx_drops += 1  # no driver listening (yet): a cable into nothing
            return
        try:
            frames = self._resolve(session, frame)
        except OffloadError as exc:
            self.counters.tx_drops += 1
            log.debug("%s: dropped frame: %s", self.name, exc)
            return
        if self._backlog:
            self._flush_backlog(session)
        for out in frames:
            if self._backlog or not self._put(session, ring, out):
                self._queue(out)
        self._signal(ring)
        if self._backlog and ring.queue is not None and ring.queue.enable_kicks():
            self._flush_backlog(session)  # buffers came in before our request was seen

    def next_deadline(self) -> float | None:
        if self._closed or self._session is None:
            return None
        if self._tx_more:
            return self._last_now
        polling = any(ring.started and ring.kick is None for ring in self._session.rings)
        if polling:
            return self._last_now + POLLING_INTERVAL
        if self._backlog:
            return self._last_now + BACKLOG_POLL
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end_session("device closed")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        self._epoll.close()

    def __enter__(self) -> VhostUserDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float) -> bool:
        """Serve the control connection (accepting QEMU first, if listening) until the guest's
        driver has negotiated features and started both rings, or ``timeout`` passes.

        Frames are not touched, so a caller can build its stack with the negotiated
        ``capabilities`` before any traffic flows."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_usable()
            session = self._session
            if session is not None and session.features_set and all(
                    ring.queue is not None for ring in session.rings):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            waiting = [s for s in (self._conn, self._listener) if s is not None]
            readable, _, _ = select.select(waiting, [], [], min(remaining, 0.5))
            for sock in readable:
                if sock is self._listener:
                    self._accept()
                else:
                    self._service_control()
            if self._session is None and self._failure is not None:
                self._raise_failure()

    # -- the control connection -------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("%s: accept failed: %s", self.name, exc)
            return
        if self._session is not None:
            self.counters.rejected += 1  # one front-end at a time
            conn.close()
            return
        self._attach(conn)

    def _attach(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self._conn = conn
        self._session = Session()
        self._session.on_stop = self._ring_stopping
        self._session.forget_fd = self._unwatch
        self._decoder = MessageDecoder()
        self._watch(conn.fileno(), _CONTROL)
        self.counters.sessions += 1
        log.info("%s: front-end connected", self.name)

    def _service_control(self) -> None:
        conn = self._conn
        for _ in range(64):  # control traffic is small; epoll brings us back for more
            if conn is None or conn is not self._conn:
                return
            try:
                data, ancdata, msg_flags, _ = conn.recvmsg(
                    RECV_CHUNK, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._end_session(f"control connection failed: {exc.strerror or exc}")
                return
            fds = _received_fds(ancdata)
            if msg_flags & socket.MSG_CTRUNC:
                close_fds(fds)
                self._protocol_error("front-end sent more fds than one message may carry")
                return
            if not data:
                close_fds(fds)
                self._end_session("front-end closed the connection")
                return
            try:
                messages = self._decoder.feed(data, fds)
            except VhostUserProtocolError as exc:
                self._protocol_error(str(exc))
                return
            for index, message in enumerate(messages):
                if not self._handle(message):
                    for rest in messages[index + 1:]:
                        close_fds(message_fds(rest))
                    return

    def _handle(self, message: Message) -> bool:
        """Carry out one message; False if the session ended on it."""
        session = self._session
        conn = self._conn
        if session is None or conn is None:
            return False
        try:
            reply = session.handle(message)
        except Exception:  # a bug here must not take the caller's loop down
            log.exception("%s: internal error on a control message", self.name)
            self._end_session("internal error")
            return False
        if session.features_set and self.negotiated != session.features:
            self.negotiated = session.features
            self.capabilities = _capabilities(session.features, self._mtu)
            log.info("%s: guest features %s", self.name, " ".join(feature_names(session.features)))
        if session.changed:
            session.changed = False
            self._sync_kicks(session)
        if reply is not None:
            try:
                conn.sendall(reply)
            except OSError as exc:
                self._end_session(f"cannot reply: {exc.strerror or exc}")
                return False
        return True

    def _protocol_error(self, reason: str) -> None:
        self.counters.protocol_errors += 1
        log.warning("%s: %s", self.name, reason)
        self._end_session(reason, LinkProtocolError(f"{self.name}: {reason}"))

    def _end_session(self, reason: str, error: LinkError | None = None) -> None:
        session, conn = self._session, self._conn
        self._session = None
        self._conn = None
        for fd in [fd for fd, role in self._roles.items() if role != _LISTENER]:
            self._unwatch(fd)
        if self._backlog:
            self.counters.tx_drops += len(self._backlog)
            self._backlog.clear()
            self._backlog_bytes = 0
        self._tx_more = False
        self._decoder.close()
        if session is not None:
            session.close()
        if conn is not None:
            conn.close()
            log.info("%s: session ended: %s", self.name, reason)
        if not self._reconnect and not self._closed and self._failure is None:
            self._failure = error or DeviceClosed(f"{self.name}: {reason}")

    def _ring_stopping(self, ring: RingState) -> None:
        """GET_VRING_BASE: publish what is done; RX frames waiting were for this driver."""
        self.counters.ring_stops += 1
        if ring.queue is not None:
            self._signal(ring)
        if ring.index == RX and self._backlog:
            self.counters.tx_drops += len(self._backlog)
            self._backlog.clear()
            self._backlog_bytes = 0

    # -- epoll bookkeeping --------------------------------------------------------------------

    def _watch(self, fd: int, role: str | int) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._roles[fd] = role

    def _unwatch(self, fd: int) -> None:
        self._roles.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def _sync_kicks(self, session: Session) -> None:
        """Watch exactly the rings' current kick fds."""
        wanted = {ring.kick: ring.index for ring in session.rings if ring.kick is not None}
        for fd, role in list(self._roles.items()):
            if isinstance(role, int) and wanted.get(fd) != role:
                self._unwatch(fd)
        for fd, index in wanted.items():
            if fd not in self._roles:
                self._watch(fd, index)

    def _clear_kick(self, fd: int) -> None:
        self.counters.kicks += 1
        try:
            os.read(fd, 8)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            log.debug("%s: reading a kick failed: %s", self.name, exc)
            self._unwatch(fd)  # never spin on a broken fd; the ring is still polled

    # -- the data path ----------------------------------------------------------------------

    def _drain_tx(self, session: Session) -> list[Frame]:
        """Every frame the guest queued on its TX ring (up to MAX_TX_BATCH)."""
        self._tx_more = False
        ring = session.rings[TX]
        queue = ring.queue
        if queue is None:
            return []
        try:
            queue.pending()
        except RingError as exc:
            session.break_ring(ring, str(exc))
            return []
        frames: list[Frame] = []
        counters = self.counters
        hdr_len = session.header_len
        decoder = self._offloads
        enabled = ring.enabled
        rx_bytes = 0
        queue.disable_kicks()
        pop, push = queue.pop, queue.push
        while True:
            if len(frames) >= MAX_TX_BATCH:
                self._tx_more = True
                break
            chain = pop()
            if chain is None:
                if queue.enable_kicks():
                    continue  # more arrived while we asked for kicks: no kick will come
                break
            if chain.error is not None:
                counters.bad_chains += 1
                log.debug("%s: bad TX chain: %s", self.name, chain.error)
                if chain.head < queue.size:
                    push(chain.head, 0)
                continue
            if not enabled:
                counters.rx_disabled += 1
                push(chain.head, 0)
                continue
            result = take_frame(chain, hdr_len, MAX_GSO_FRAME, decoder)
            push(chain.head, 0)
            if isinstance(result, TxVerdict):
                counters.rx_drops += 1
                log.debug("%s: dropped guest frame: %s", self.name, result.value)
                continue
            data, offload = result
            frames.append(Frame(data, offload))
            rx_bytes += len(data)
        self._signal(ring)
        if frames:
            counters.rx_frames += len(frames)
            counters.rx_bytes += rx_bytes
        return frames

    def _resolve(self, session: Session, frame: Frame) -> list[Frame]:
        """The frame as this guest can take it: offloads it declined done in software."""
        offload = frame.offload
        if offload is None:
            return [frame]
        gso = offload.gso_type
        tso = (gso == GsoType.TCPV4 and session.has(Feature.GUEST_TSO4)) or (
            gso == GsoType.TCPV6 and session.has(Feature.GUEST_TSO6))
        return resolve_offloads(frame, csum=session.has(Feature.GUEST_CSUM), tso=tso)

    def _put(self, session: Session, ring: RingState, frame: Frame) -> bool:
        """Write one frame into the RX ring; False if it must wait for buffers."""
        queue = ring.queue
        if queue is None:
            self.counters.tx_drops += 1
            return True
        try:
            verdict, bad = put_frame(queue, frame.data, frame.offload,
                                     hdr_len=session.header_len,
                                     mergeable=session.has(Feature.MRG_RXBUF))
        except RingError as exc:
            session.break_ring(ring, str(exc))
            self.counters.tx_drops += 1
            return True
        if bad:
            self.counters.bad_chains += bad
        if verdict is RxVerdict.NO_ROOM:
            return False
        if verdict is RxVerdict.TOO_BIG:
            self.counters.tx_drops += 1
            return True
        self.counters.count_tx(len(frame.data))
        return True

    def _queue(self, frame: Frame) -> None:
        length = len(frame.data)
        if len(self._backlog) >= MAX_BACKLOG_FRAMES or \
                self._backlog_bytes + length > MAX_BACKLOG_BYTES:
            self.counters.tx_drops += 1
            return
        data = frame.data
        if not isinstance(data, bytes):
            frame = Frame(bytes(data), frame.offload)  # the caller may reuse its buffer
        self._backlog.append(frame)
        self._backlog_bytes += length
        self.counters.backlogged += 1

    def _flush_backlog(self, session: Session) -> None:
        ring = session.rings[RX]
        backlog = self._backlog
        if ring.queue is None or not ring.enabled:
            return
        while backlog:
            frame = backlog[0]
            if not self._put(session, ring, frame):
                queue = ring.queue
                if queue is not None and queue.enable_kicks():
                    continue  # buffers arrived meanwhile
                break
            backlog.popleft()
            self._backlog_bytes -= len(frame.data)
        else:
            if ring.queue is not None:
                ring.queue.disable_kicks()  # not starved: refills need not kick us
        self._signal(ring)

    def _signal(self, ring: RingState) -> None:
        """Publish the used entries and raise the guest's interrupt if it wants one."""
        queue = ring.queue
        if queue is None or not queue.publish() or not queue.notify_due():
            return
        call = ring.call
        if call is None:
            return
        try:
            os.write(call, _ONE)
            self.counters.calls += 1
        except BlockingIOError:
            pass  # the counter is saturated: the guest has an interrupt pending anyway
        except OSError as exc:
            if exc.errno != errno.EINTR:
                log.debug("%s: signalling the guest failed: %s", self.name, exc)

    # -- failure ------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        if self._failure is not None and self._session is None:
            self._raise_failure()

    def _raise_failure(self) -> None:
        error = self._failure
        if error is None:
            return
        if isinstance(error, LinkProtocolError):
            self._failure = DeviceClosed(f"{self.name}: closed after a protocol error")
        raise error


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            items = array.array("i")
            items.frombytes(data[:len(data) - len(data) % items.itemsize])
            fds.extend(items)
    return fds
