"""QEMU's socket network backends: ``-netdev stream`` and ``-netdev dgram`` (also passt's).

* :class:`StreamDevice` — a byte stream (UNIX or TCP) carrying frames, each prefixed by its
  length as a 4-byte big-endian integer.  Reads and writes may be partial at any byte: the
  reader keeps an input buffer and cuts frames out of it; the writer keeps an output buffer
  and finishes it on later calls.  A length that cannot be an Ethernet frame (over
  ``MAX_STREAM_FRAME``) means the peer is not speaking the protocol, or the stream lost sync:
  the device stops with :class:`LinkProtocolError` rather than waiting for 4 GB that will never
  come.
* :class:`DgramDevice` — one frame per datagram, over UDP or UNIX datagram sockets.

The stream framing itself is sans-IO (:class:`StreamDecoder`, :func:`encode_stream_frame`), so
it is tested — and fuzzed — without sockets.

Neither backend can offload anything (``DeviceCapabilities`` without checksum offload or TSO),
so frames carrying partial checksums are completed in software before they leave.  ``mtu`` is a
parameter: QEMU's user networking uses 1500, passt offers 65520.

Neither device blocks: a send that finds the socket full is buffered (stream, up to
``MAX_PENDING_OUTPUT``) or dropped and counted (datagram, or a stream buffer already full).
While output is pending, ``next_deadline()`` asks to be called back shortly, and that call
(``receive``) writes what the socket will take; ``wants_write`` lets a runtime wait for
writability instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct

from vipernet.link.counters import LinkCounters
from vipernet.link.errors import DeviceClosed, LinkError, LinkProtocolError, NoSuchInterface
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.link.offload import ETH_HEADER_LEN, check_frame_size, resolve_offloads

log = logging.getLogger(__name__)

Address = str | tuple[str, int]  # a UNIX socket path, or (host, port) for TCP/UDP

MAX_STREAM_FRAME = 65535 + ETH_HEADER_LEN + 4  # an IPv4 packet, Ethernet + a VLAN tag
MAX_PENDING_OUTPUT = 4 * 1024 * 1024
READ_CHUNK = 256 * 1024
MAX_READ_PER_CALL = 4 * 1024 * 1024  # bytes per receive(), so one busy peer cannot starve us
RETRY_INTERVAL = 0.002  # seconds between flush attempts while output is pending
_LENGTH = struct.Struct("!I")


def _capabilities(mtu: int) -> DeviceCapabilities:
    if not 68 <= mtu <= 65535:
        raise LinkError(f"mtu={mtu} is outside 68..65535")
    return DeviceCapabilities(mtu=mtu, tx_csum_offload=False, tso=False,
                              max_frame=mtu + ETH_HEADER_LEN)


def _socket_for(address: Address, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    return socket.socket(family, kind)


def _connect_error(address: Address, exc: OSError) -> LinkError:
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return NoSuchInterface(f"nothing is listening at {address!r}: {exc.strerror}")
    return LinkError(f"cannot connect to {address!r}: {exc.strerror or exc}")


class StreamDecoder:
    """Sans-IO reader of the stream protocol: bytes in, whole frames out.

    ``feed`` returns every frame completed by the new bytes.  A length over ``max_frame``
    stops the decoder for good: ``error`` says why, the frames before it were returned, and
    later feeds raise :class:`LinkProtocolError`.  Runts (shorter than an Ethernet header)
    are skipped and counted in ``runts``: their framing is intact, only the content is junk.
    The buffer never holds more than one frame plus one read.
    """

    def __init__(self, max_frame: int = MAX_STREAM_FRAME) -> None:
        self.max_frame = max_frame
        self.runts = 0
        self.error: str | None = None
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of a frame (or length prefix) received but not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self.error is not None:
            raise LinkProtocolError(self.error)
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > self.max_frame:
                self.error = (f"frame length {length} > {self.max_frame}: peer does not speak "
                              "the QEMU stream protocol, or the stream lost sync")
                buf.clear()
                return frames
            if end - pos - 4 < length:
                break
            frame = bytes(buf[pos + 4:pos + 4 + length])
            pos += 4 + length
            if length < ETH_HEADER_LEN:
                self.runts += 1
                continue
            frames.append(frame)
        del buf[:pos]
        return frames


def encode_stream_frame(frame: bytes | bytearray | memoryview) -> bytes:
    """One frame as the stream protocol carries it: 4-byte big-endian length, then the bytes."""
    return _LENGTH.pack(len(frame)) + bytes(frame)


def listening_socket(address: Address, *, backlog: int) -> tuple[socket.socket, str | None]:
    """A stream socket listening at ``address``, and the UNIX path it published (or None).

    A UNIX path is bound under a private name and hard-linked into place once listening,
    so a peer that connects as soon as the path appears is never refused, and an existing
    file at the path is an error, never replaced or removed.  The caller unlinks the
    published path when it stops listening.
    """
    listener = _socket_for(address, socket.SOCK_STREAM)
    staging: str | None = None
    try:
        if isinstance(address, str):
            staging = f"{address}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
            listener.bind(staging)
            listener.listen(backlog)
            os.link(staging, address)  # EEXIST if something is there already
            return listener, address
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
        return listener, None
    except OSError as exc:
        listener.close()
        raise LinkError(f"cannot listen at {address!r}: {exc.strerror or exc}") from None
    finally:
        if staging is not None:
            with contextlib.suppress(OSError):
                os.unlink(staging)


class StreamDevice:
    """The QEMU stream protocol over a connected stream socket."""

    def __init__(self, sock: socket.socket, *, name: str = "stream", mtu: int = 1500,
                 autoflush: bool = True) -> None:
        """``autoflush=False``: :meth:`send` only queues, and the caller's :meth:`flush`
        after a batch writes it all in as few system calls as the socket allows."""
        sock.setblocking(False)
        self._sock = sock
        self.autoflush = autoflush
        self.name = name
        self.capabilities = _capabilities(mtu)
        self.counters = LinkCounters()
        self._decoder = StreamDecoder()
        self._out = bytearray()
        self._failure: LinkError | None = None  # set once the stream is unusable
        self._closed = False
        self._last_now = 0.0

    @classmethod
    def connect(cls, address: Address, *, mtu: int = 1500, timeout: float = 10.0) -> StreamDevice:
        """Connect to a listening peer (passt's ``-s SOCKET``, or QEMU ``server=on``)."""
        sock = _socket_for(address, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise _connect_error(address, exc) from None
        return cls(sock, name=f"stream:{address}", mtu=mtu)

    @classmethod
    def listen(cls, address: Address, *, mtu: int = 1500,
               timeout: float | None = None) -> StreamDevice:
        """Listen at ``address`` and wait (up to ``timeout``) for one peer to connect.

        The listener is :func:`listening_socket`'s, and is closed (its path removed) once
        the peer is in.
        """
        listener, published = listening_socket(address, backlog=1)
        try:
            listener.settimeout(timeout)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise LinkError(f"no peer connected to {address!r} within {timeout}s") from None
            except OSError as exc:
                raise LinkError(f"cannot listen at {address!r}: {exc.strerror or exc}") from None
        finally:
            listener.close()
            if published is not None:
                with contextlib.suppress(OSError):
                    os.unlink(published)
        return cls(conn, name=f"stream:{address}", mtu=mtu)

    def fileno(self) -> int | None:
        return None if self._closed else self._sock.fileno()

    @property
    def wants_write(self) -> bool:
        """True while output waits for the socket to accept it."""
        return bool(self._out) and self._failure is None

    def receive(self, now: float) -> list[Frame]:
        self._check_usable()
        self._last_now = now
        self._flush()
        frames: list[Frame] = []
        received = 0
        eof = False
        while received < MAX_READ_PER_CALL:
            try:
                chunk = self._sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail(DeviceClosed(f"{self.name}: {exc.strerror or exc}"))
                break
            if not chunk:
                eof = True
                break
            received += len(chunk)
            for data in self._decoder.feed(chunk):
                frames.append(Frame(data))
                self.counters.count_rx(len(data))
            self.counters.rx_drops = self._decoder.runts
            if self._decoder.error is not None:
                self._fail(LinkProtocolError(f"{self.name}: {self._decoder.error}"))
                break
        if eof and self._failure is None:
            pending = self._decoder.pending
            leftover = f" ({pending} bytes of a partial frame lost)" if pending else ""
            self._fail(DeviceClosed(f"{self.name}: peer closed the connection{leftover}"))
        if self._failure is not None and not frames:
            self._raise_failure()
        return frames  # on failure, frames cut before it are still delivered; next call raises

    def send(self, frame: Frame, now: float) -> None:
        self._check_usable()
        self._last_now = now
        check_frame_size(self.name, frame, self.capabilities)
        for out in resolve_offloads(frame, csum=False, tso=False):
            length = len(out.data)
            if len(self._out) + 4 + length > MAX_PENDING_OUTPUT:
                self.counters.tx_drops += 1  # the peer is not reading: lose, don't block
                continue
            self._out += _LENGTH.pack(length)
            self._out += out.data
            self.counters.count_tx(length)
        if self.autoflush:
            self._flush()

    def flush(self, now: float) -> None:
        """Write what the socket will take of the pending output (e.g. when it is writable)."""
        self._last_now = now
        if self._failure is None and not self._closed:
            self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(DeviceClosed(f"{self.name}: {exc.strerror or exc}"))
                return
            if sent < len(self._out):
                self.counters.short_writes += 1
            del self._out[:sent]

    def next_deadline(self) -> float | None:
        # A batching caller waits for writability (``wants_write``) instead of a timer.
        if self.autoflush and self._out and self._failure is None and not self._closed:
            return self._last_now + RETRY_INTERVAL
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def _fail(self, error: LinkError) -> None:
        if self._failure is None:
            self._failure = error
            self._out.clear()
            # Tell the peer at once; the fd itself stays open (and registered in the
            # caller's selector) until close().
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def _check_usable(self) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        if self._failure is not None:
            self._raise_failure()

    def _raise_failure(self) -> None:
        error = self._failure
        if error is None:
            return
        if isinstance(error, LinkProtocolError):
            # Report the protocol error once; afterwards the device is simply closed.
            self._failure = DeviceClosed(f"{self.name}: closed after a protocol error")
        raise error

    def __enter__(self) -> StreamDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DgramDevice:
    """One Ethernet frame per datagram (``-netdev dgram``), over UDP or UNIX datagrams."""

    def __init__(self, sock: socket.socket, *, remote: Address | None = None,
                 name: str = "dgram", mtu: int = 1500) -> None:
        sock.setblocking(False)
        self._sock = sock
        if isinstance(remote, tuple):
            # Resolved once: received datagrams are matched against what the kernel reports.
            remote = (socket.gethostbyname(remote[0]), int(remote[1]))
        self._remote = remote
        self.name = name
        self.capabilities = _capabilities(mtu)
        self.counters = LinkCounters()
        self._closed = False
        self._bound_path: str | None = None

    @classmethod
    def open(cls, local: Address, remote: Address, *, mtu: int = 1500) -> DgramDevice:
        """Bind ``local`` and exchange frames with ``remote`` (both paths, or both host/port)."""
        if isinstance(local, str) != isinstance(remote, str):
            raise LinkError("dgram local and remote must both be UNIX paths or both host/port")
        sock = _socket_for(local, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
        except OSError as exc:
            sock.close()
            raise LinkError(f"cannot bind {local!r}: {exc.strerror or exc}") from None
        device = cls(sock, remote=remote, name=f"dgram:{local}->{remote}", mtu=mtu)
        if isinstance(local, str):
            device._bound_path = local
        return device

    def fileno(self) -> int | None:
        return None if self._closed else self._sock.fileno()

    def receive(self, now: float) -> list[Frame]:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        frames: list[Frame] = []
        for _ in range(1024):
            try:
                data, source = self._sock.recvfrom(MAX_STREAM_FRAME + 1)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue  # ICMP port unreachable from an earlier send: the peer is not up yet
            except OSError as exc:
                self.counters.rx_errors += 1
                log.debug("%s: recvfrom failed: %s", self.name, exc)
                break
            if isinstance(self._remote, tuple) and source[:2] != self._remote:
                self.counters.rx_drops += 1  # not from our peer: ignore, as a NIC would not
                continue
            if not ETH_HEADER_LEN <= len(data) <= MAX_STREAM_FRAME:
                self.counters.rx_drops += 1
                continue
            frames.append(Frame(data))
            self.counters.count_rx(len(data))
        return frames

    def send(self, frame: Frame, now: float) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name}: device is closed")
        check_frame_size(self.name, frame, self.capabilities)
        for out in resolve_offloads(frame, csum=False, tso=False):
            try:
                if self._remote is None:
                    self._sock.send(out.data)
                else:
                    self._sock.sendto(out.data, self._remote)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError,
                    FileNotFoundError):
                self.counters.tx_drops += 1  # full, or nobody there yet: a lost frame
                continue
            except OSError as exc:
                self.counters.tx_drops += 1
                log.debug("%s: send failed: %s", self.name, exc)
                continue
            self.counters.count_tx(len(out.data))

    def next_deadline(self) -> float | None:
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()
            if self._bound_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._bound_path)

    def __enter__(self) -> DgramDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
