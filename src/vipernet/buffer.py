"""A cursor over bytes for length-prefixed binary protocols (TLS, SSH, SFTP, netd IPC).

Reading never runs past the end: a short read raises :class:`BufferUnderflow`, which
names what was being read, so parsers of untrusted input get a typed error for free.
``pull_block`` / ``push_block`` handle length-prefixed vectors and insist that a block
is consumed exactly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from vipernet.errors import ProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class BufferUnderflow(ProtocolError):
    """The input ended before a field it promised."""


class BlockLengthError(ProtocolError):
    """A length-prefixed block was not consumed exactly."""


class Buffer:
    """Read cursor over immutable bytes."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._end = len(self._data)

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self._pos + n > self._end:
            raise BufferUnderflow(f"{what}: need {n} bytes, have {self._end - self._pos}")
        start = self._pos
        self._pos += n
        return self._data[start : self._pos]

    def pull_bytes(self, n: int, what: str = "bytes") -> bytes:
        return self._take(n, what)

    def pull_rest(self) -> bytes:
        return self._take(self._end - self._pos, "rest")

    def pull_uint8(self, what: str = "uint8") -> int:
        return self._take(1, what)[0]

    def pull_uint16(self, what: str = "uint16") -> int:
        value: int = _U16.unpack(self._take(2, what))[0]
        return value

    def pull_uint24(self, what: str = "uint24") -> int:
        return int.from_bytes(self._take(3, what), "big")

    def pull_uint32(self, what: str = "uint32") -> int:
        value: int = _U32.unpack(self._take(4, what))[0]
        return value

    def pull_uint64(self, what: str = "uint64") -> int:
        value: int = _U64.unpack(self._take(8, what))[0]
        return value

    def pull_vector(self, length_size: int, what: str = "vector") -> bytes:
        """A length-prefixed byte string (prefix of 1, 2, 3 or 4 bytes)."""
        length = int.from_bytes(self._take(length_size, f"{what} length"), "big")
        return self._take(length, what)

    @contextmanager
    def pull_block(self, length_size: int, what: str = "block") -> Iterator[int]:
        """Scope reads to a length-prefixed block; leftover bytes are an error."""
        length = int.from_bytes(self._take(length_size, f"{what} length"), "big")
        if self._pos + length > self._end:
            raise BufferUnderflow(f"{what}: need {length} bytes, have {self._end - self._pos}")
        outer_end = self._end
        self._end = self._pos + length
        try:
            yield length
            if self._pos != self._end:
                raise BlockLengthError(f"{what}: {self._end - self._pos} bytes left unread")
        finally:
            self._end = outer_end


class Writer:
    """Append-only builder, the mirror of :class:`Buffer`."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out = bytearray()

    def data(self) -> bytes:
        return bytes(self._out)

    def __len__(self) -> int:
        return len(self._out)

    def push_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._out += data

    def push_uint8(self, value: int) -> None:
        self._out.append(value)

    def push_uint16(self, value: int) -> None:
        self._out += _U16.pack(value)

    def push_uint24(self, value: int) -> None:
        self._out += value.to_bytes(3, "big")

    def push_uint32(self, value: int) -> None:
        self._out += _U32.pack(value)

    def push_uint64(self, value: int) -> None:
        self._out += _U64.pack(value)

    def push_vector(self, length_size: int, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= 1 << (8 * length_size):
            raise ValueError(f"vector of {len(data)} bytes exceeds a {length_size}-byte length")
        self._out += len(data).to_bytes(length_size, "big")
        self._out += data

    @contextmanager
    def push_block(self, length_size: int) -> Iterator[None]:
        """Write a length prefix that covers whatever is pushed inside the block."""
        start = len(self._out)
        self._out += bytes(length_size)
        yield
        length = len(self._out) - start - length_size
        if length >= 1 << (8 * length_size):
            raise ValueError(f"block of {length} bytes does not fit a {length_size}-byte length")
        self._out[start : start + length_size] = length.to_bytes(length_size, "big")
