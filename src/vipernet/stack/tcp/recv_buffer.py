"""The receive side: in-order bytes for the application and out-of-order reassembly.

In-order data is a deque of chunks exactly as they arrived: zero-copy memoryviews into the
received frames (which are immutable ``bytes``), so the only copy of the payload on the way
to the application is the one a read makes when it joins chunks into the ``bytes`` it
returns.  Out-of-order data is a sorted list of non-overlapping pieces
``[start, data]`` in unwrapped receive offsets.  Memory is bounded twice: the connection
only accepts bytes inside the window it advertised (so all bytes held fit the receive buffer
size), and the number of pieces is capped so a flood of one-byte segments cannot cost more
than ``MAX_PIECES`` list entries.  The SACK blocks (RFC 2018) are the merged pieces, the one
that changed last reported first.
"""

from __future__ import annotations

import bisect
from collections import deque

MAX_PIECES = 2048


class RecvBuffer:
    __slots__ = ("_chunks", "_last", "_ooo_data", "_ooo_starts", "ooo_bytes", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self.size = 0  # in-order bytes not yet read by the application
        self._ooo_starts: list[int] = []
        self._ooo_data: list[bytes] = []
        self.ooo_bytes = 0
        self._last: int | None = None  # an offset inside the piece that changed last

    # -- in order -------------------------------------------------------------------------

    def push(self, data: bytes | memoryview) -> None:
        """Queue in-order data; a memoryview is kept only over immutable bytes."""
        if data:
            if isinstance(data, memoryview) and not isinstance(data.obj, bytes):
                data = bytes(data)
            self._chunks.append(data)
            self.size += len(data)

    def read(self, max_bytes: int) -> bytes:
        chunks = self._chunks
        if not chunks or max_bytes <= 0:
            return b""
        first = chunks[0]
        if len(first) >= max_bytes:
            if len(first) == max_bytes:
                chunks.popleft()
                out = bytes(first)
            else:
                out = bytes(first[:max_bytes])
                chunks[0] = first[max_bytes:]
            self.size -= len(out)
            return out
        parts: list[bytes | memoryview] = []
        want = max_bytes
        while chunks and want > 0:
            c = chunks[0]
            if len(c) <= want:
                parts.append(chunks.popleft())
                want -= len(c)
            else:
                parts.append(c[:want])
                chunks[0] = c[want:]
                want = 0
        out = b"".join(parts)
        self.size -= len(out)
        return out

    # -- out of order ---------------------------------------------------------------------

    @property
    def has_gaps(self) -> bool:
        return bool(self._ooo_starts)

    def add_out_of_order(self, start: int, data: bytes | memoryview) -> bool:
        """Hold ``data`` at ``start``, keeping only bytes not held yet; False if dropped."""
        end = start + len(data)
        starts = self._ooo_starts
        datas = self._ooo_data
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0:
            prev_end = starts[i] + len(datas[i])
            if prev_end >= end:
                self._last = start
                return True  # wholly duplicate
            if prev_end > start:
                data = data[prev_end - start:]
                start = prev_end
        i += 1
        pieces: list[tuple[int, bytes | memoryview]] = []
        cur = start
        while i < len(starts) and starts[i] < end:
            s = starts[i]
            if s > cur:
                pieces.append((cur, data[cur - start : s - start]))
            cur = max(cur, s + len(datas[i]))
            i += 1
        if cur < end:
            pieces.append((cur, data[cur - start :]))
        if not pieces:
            self._last = start
            return True
        if len(starts) + len(pieces) > MAX_PIECES:
            return False
        for s, d in pieces:
            j = bisect.bisect_left(starts, s)
            starts.insert(j, s)
            datas.insert(j, bytes(d))  # a copy: held out of order, maybe for long
            self.ooo_bytes += len(d)
        self._last = start
        return True

    def pop_ready(self, rcv_nxt: int) -> int:
        """Move pieces that now continue the in-order stream; returns the new rcv_nxt."""
        starts = self._ooo_starts
        datas = self._ooo_data
        while starts and starts[0] <= rcv_nxt:
            s = starts.pop(0)
            d = datas.pop(0)
            self.ooo_bytes -= len(d)
            e = s + len(d)
            if e > rcv_nxt:
                self.push(d[rcv_nxt - s :])
                rcv_nxt = e
        return rcv_nxt

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """Merged out-of-order ranges (unwrapped), the most recently changed first."""
        blocks: list[tuple[int, int]] = []
        for s, d in zip(self._ooo_starts, self._ooo_data, strict=True):
            e = s + len(d)
            if blocks and blocks[-1][1] == s:
                blocks[-1] = (blocks[-1][0], e)
            else:
                blocks.append((s, e))
        last = self._last
        if last is not None:
            for k, (s, e) in enumerate(blocks):
                if s <= last < e:
                    if k:
                        blocks.insert(0, blocks.pop(k))
                    break
        return blocks[:limit]

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0
        self._ooo_starts.clear()
        self._ooo_data.clear()
        self.ooo_bytes = 0
