"""The send queue: bytes the application wrote that the peer has not acknowledged yet.

One bytearray with a moving head.  Acknowledged bytes are only marked (``_head`` moves);
the memory is reclaimed in one ``del`` once the dead prefix is both large and at least half
of the buffer, so an ACK costs O(1) and each byte is moved at most about once more.  Segments
copy straight from a short-lived memoryview of the buffer (a live export would forbid
resizing the bytearray, so the view never outlives the copy).

Positions are the connection's unwrapped send offsets: the first data byte is offset 1 (the
SYN is 0).
"""

from __future__ import annotations

_COMPACT_MIN = 256 * 1024


class SendBuffer:
    __slots__ = ("_buf", "_head", "start")

    def __init__(self, start: int = 1) -> None:
        self._buf = bytearray()
        self._head = 0
        self.start = start  # offset of the oldest unacknowledged byte held

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def end(self) -> int:
        """Offset one past the last byte queued."""
        return self.start + len(self._buf) - self._head

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def ack_to(self, offset: int) -> int:
        """Forget bytes below ``offset``; returns how many were released."""
        n = min(offset - self.start, len(self._buf) - self._head)
        if n <= 0:
            return 0
        self._head += n
        self.start += n
        if self._head == len(self._buf):
            self._buf.clear()
            self._head = 0
        elif self._head >= _COMPACT_MIN and self._head * 2 >= len(self._buf):
            del self._buf[: self._head]
            self._head = 0
        return n

    def copy_into(self, out: bytearray, offset: int, length: int) -> None:
        """Append ``length`` bytes starting at ``offset`` to ``out``."""
        i = self._head + offset - self.start
        with memoryview(self._buf) as view:
            out += view[i : i + length]
