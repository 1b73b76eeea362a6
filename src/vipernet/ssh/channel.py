"""One SSH channel (RFC 4254 section 5): flow-control windows, data, requests, EOF/close.

A :class:`Channel` is sans-IO: it is created and fed by :class:`~.connection.SSHConnection`
and sends through the connection's ``send`` function.  Received data lands in
``stdout``/``stderr`` buffers (or goes to ``on_data`` if set, the SFTP fast path); the
window is re-opened as the application consumes data, so a slow reader pushes back on
the server instead of growing our memory.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable
from typing import Protocol

from vipernet.ssh.codec import SSHWriter
from vipernet.ssh.errors import ChannelError, SSHProtocolError, SSHUsageError
from vipernet.ssh.messages import Msg
from vipernet.ssh.packet import Data

_DATA_HEADER = struct.Struct(">BII")
_WINDOW_ADJUST = struct.Struct(">BII")

DEFAULT_WINDOW = 8 * 1024 * 1024
DEFAULT_MAX_PACKET = 256 * 1024


class Sender(Protocol):
    """How a channel sends a message: ``payload + tail`` (see :meth:`Transport.send`)."""

    def __call__(self, payload: Data, tail: Data = b"") -> None: ...


class ChannelState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class Channel:
    def __init__(self, local_id: int, send: Sender, *,
                 window: int = DEFAULT_WINDOW, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self.local_id = local_id
        self.remote_id = 0
        self._send = send
        self.state = ChannelState.OPENING
        self.local_window = window
        self.window_size = window
        self.max_packet = max_packet
        self.remote_window = 0
        self.remote_max_packet = 0
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._consumed = 0
        self.on_data: Callable[[memoryview], None] | None = None
        self._outgoing: deque[Data] = deque()
        self._queued = 0
        self.eof_received = False
        self.eof_sent = False
        self._eof_pending = False
        self.close_received = False
        self.close_sent = False
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.open_error: ChannelError | None = None
        self._replies: deque[Callable[[bool], None]] = deque()
        self.request_results: list[tuple[str, bool]] = []
        self._tickets = 0

    # -- application side ------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is ChannelState.OPEN and not self.close_received

    @property
    def closed(self) -> bool:
        return self.state in (ChannelState.CLOSED, ChannelState.FAILED)

    def request(self, name: str, body: bytes = b"", *, want_reply: bool = True) -> int:
        """Send a CHANNEL_REQUEST; returns a ticket: its reply will be
        ``request_results[ticket]`` (replies come in request order).  -1 if no reply."""
        self._require_open()
        w = SSHWriter()
        w.push_uint8(Msg.CHANNEL_REQUEST)
        w.push_uint32(self.remote_id)
        w.push_string(name)
        w.push_bool(want_reply)
        w.push_bytes(body)
        ticket = -1
        if want_reply:
            ticket = self._tickets
            self._tickets += 1
            self._replies.append(lambda ok: self.request_results.append((name, ok)))
        self._send(w.data())
        return ticket

    def exec(self, command: str) -> int:
        w = SSHWriter()
        w.push_string(command)
        return self.request("exec", w.data())

    def subsystem(self, name: str) -> int:
        w = SSHWriter()
        w.push_string(name)
        return self.request("subsystem", w.data())

    def shell(self) -> int:
        return self.request("shell")

    def request_pty(self, term: str = "xterm", cols: int = 80, rows: int = 24,
                    modes: bytes = b"\x00") -> int:
        w = SSHWriter()
        w.push_string(term)
        for v in (cols, rows, 0, 0):
            w.push_uint32(v)
        w.push_string(modes)
        return self.request("pty-req", w.data())

    def window_change(self, cols: int, rows: int) -> None:
        w = SSHWriter()
        for v in (cols, rows, 0, 0):
            w.push_uint32(v)
        self.request("window-change", w.data(), want_reply=False)

    def setenv(self, name: str, value: str) -> int:
        w = SSHWriter()
        w.push_string(name)
        w.push_string(value)
        return self.request("env", w.data())

    def write(self, data: Data, *, take: bool = False) -> None:
        """Queue data; whatever the peer's window allows goes out now, the rest later.

        The channel copies a mutable ``data`` unless ``take`` is true: then it keeps the
        object itself, and the caller must not modify it afterwards (the SFTP client
        hands over the buffers it read the file into).
        """
        self._require_open()
        if self.eof_sent or self._eof_pending:
            raise SSHUsageError("write after EOF")
        if data:
            self._outgoing.append(data if take or isinstance(data, bytes) else bytes(data))
            self._queued += len(data)
            self._flush()

    @property
    def pending_output(self) -> int:
        return self._queued

    def send_eof(self) -> None:
        if self.eof_sent or self.closed or self.close_sent:
            return
        self._eof_pending = True
        self._flush()

    def close(self) -> None:
        if self.close_sent or self.state is ChannelState.FAILED:
            return
        if self.state is ChannelState.OPENING:
            raise SSHUsageError("close before the channel opened")
        self.close_sent = True
        self._send(struct.pack(">BI", Msg.CHANNEL_CLOSE, self.remote_id))
        if self.close_received:
            self.state = ChannelState.CLOSED

    def read(self, max_bytes: int = -1, *, stderr: bool = False) -> bytes:
        """Take buffered data (and re-open the window by as much)."""
        buf = self.stderr if stderr else self.stdout
        n = len(buf) if max_bytes < 0 else min(max_bytes, len(buf))
        data = bytes(buf[:n])
        del buf[:n]
        self.consumed(n)
        return data

    def consumed(self, n: int) -> None:
        """Tell the channel the application has taken ``n`` bytes (re-opens the window)."""
        self._consumed += n
        if self._consumed >= self.window_size // 2 and not self.close_received:
            self.local_window += self._consumed
            if self.state is ChannelState.OPEN and not self.close_sent:
                self._send(_WINDOW_ADJUST.pack(Msg.CHANNEL_WINDOW_ADJUST, self.remote_id,
                                               self._consumed))
            self._consumed = 0

    def _require_open(self) -> None:
        if self.state is not ChannelState.OPEN or self.close_sent:
            raise SSHUsageError(f"channel {self.local_id} is {self.state.value}")

    def _flush(self) -> None:
        out = self._outgoing
        send = self._send
        pack = _DATA_HEADER.pack
        while out and self.remote_window > 0 and not self.close_sent:
            head = out[0]
            n = min(len(head), self.remote_window, self.remote_max_packet)
            if n == len(head):
                out.popleft()
            else:
                # Slicing a memoryview copies nothing; the tail stays queued.
                view = head if isinstance(head, memoryview) else memoryview(head)
                out[0] = view[n:]
                head = view[:n]
            self._queued -= n
            self.remote_window -= n
            send(pack(Msg.CHANNEL_DATA, self.remote_id, n), head)  # no join: see seal_to
        if self._eof_pending and not out and not self.close_sent:
            self._eof_pending = False
            self.eof_sent = True
            self._send(struct.pack(">BI", Msg.CHANNEL_EOF, self.remote_id))

    # -- connection side -------------------------------------------------------------

    def on_open_confirmation(self, remote_id: int, window: int, max_packet: int) -> None:
        if self.state is not ChannelState.OPENING:
            raise SSHProtocolError(f"channel {self.local_id}: confirmation while {self.state}")
        self.remote_id = remote_id
        self.remote_window = window
        self.remote_max_packet = max(1, min(max_packet, 1 << 20))
        self.state = ChannelState.OPEN

    def on_open_failure(self, code: int, description: str) -> None:
        self.state = ChannelState.FAILED
        self.open_error = ChannelError(f"channel open failed ({code}): {description}", code)

    def on_window_adjust(self, n: int) -> None:
        if self.remote_window + n > 0xFFFFFFFF:
            raise SSHProtocolError("window adjust overflows 2^32-1")
        self.remote_window += n
        self._flush()

    def receive(self, data: memoryview, extended: bool) -> None:
        n = len(data)
        if n > self.local_window:
            raise SSHProtocolError(f"channel {self.local_id}: {n} bytes exceed window "
                                   f"{self.local_window}")
        if self.eof_received:
            raise SSHProtocolError(f"channel {self.local_id}: data after EOF")
        self.local_window -= n
        if extended:
            self.stderr += data
        elif self.on_data is not None:
            self.on_data(data)
            self.consumed(n)
        else:
            self.stdout += data

    def on_eof(self) -> None:
        self.eof_received = True

    def on_close(self) -> None:
        self.close_received = True
        self.eof_received = True
        self._replies_fail()
        if not self.close_sent and self.state is ChannelState.OPEN:
            self.close_sent = True
            self._send(struct.pack(">BI", Msg.CHANNEL_CLOSE, self.remote_id))
        self.state = ChannelState.CLOSED

    def on_reply(self, ok: bool) -> None:
        if not self._replies:
            raise SSHProtocolError(f"channel {self.local_id}: reply without a request")
        self._replies.popleft()(ok)

    def _replies_fail(self) -> None:
        while self._replies:
            self._replies.popleft()(False)
