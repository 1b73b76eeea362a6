"""SSH data types (RFC 4251 section 5) on top of :mod:`vipernet.buffer`.

``string`` is a uint32-length byte string, ``mpint`` a two's-complement big-endian integer
with the minimal number of bytes, ``name-list`` a comma-separated ASCII string, ``boolean``
one byte.  Reads of untrusted input raise :class:`vipernet.buffer.BufferUnderflow` or
:class:`SSHProtocolError`, never anything else.
"""

from __future__ import annotations

from vipernet.buffer import Buffer, Writer
from vipernet.ssh.errors import SSHProtocolError

# Names are US-ASCII without commas, at most 64 characters (RFC 4251 section 6); we are
# lenient on length but bound the whole list to keep hostile KEXINITs cheap.
MAX_NAME_LIST = 64 * 1024


class SSHBuffer(Buffer):
    """:class:`Buffer` plus the SSH types."""

    __slots__ = ()

    def pull_bool(self, what: str = "boolean") -> bool:
        return self.pull_uint8(what) != 0

    def pull_string(self, what: str = "string") -> bytes:
        return self.pull_vector(4, what)

    def pull_text(self, what: str = "text") -> str:
        data = self.pull_string(what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSHProtocolError(f"{what}: not UTF-8 ({exc.reason})") from None

    def pull_mpint(self, what: str = "mpint") -> int:
        return int.from_bytes(self.pull_string(what), "big", signed=True)

    def pull_name_list(self, what: str = "name-list") -> tuple[str, ...]:
        data = self.pull_string(what)
        if len(data) > MAX_NAME_LIST:
            raise SSHProtocolError(f"{what}: {len(data)} bytes exceeds {MAX_NAME_LIST}")
        if not data:
            return ()
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise SSHProtocolError(f"{what}: not ASCII") from None
        return tuple(text.split(","))

    def expect_end(self, what: str) -> None:
        if not self.eof():
            raise SSHProtocolError(f"{what}: {self.remaining} trailing bytes")


class SSHWriter(Writer):
    """:class:`Writer` plus the SSH types."""

    __slots__ = ()

    def push_bool(self, value: bool) -> None:
        self.push_uint8(1 if value else 0)

    def push_string(self, data: bytes | bytearray | memoryview | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.push_uint32(len(data))
        self.push_bytes(data)

    def push_mpint(self, value: int) -> None:
        self.push_string(mpint_bytes(value))

    def push_name_list(self, names: tuple[str, ...] | list[str]) -> None:
        self.push_string(",".join(names).encode("ascii"))


def mpint_bytes(value: int) -> bytes:
    """The minimal two's-complement big-endian encoding (zero is the empty string)."""
    if value == 0:
        return b""
    length = (value.bit_length() + 8) // 8  # room for the sign bit
    data = value.to_bytes(length, "big", signed=True)
    # Strip a redundant leading byte: 0x00 before a byte < 0x80, 0xff before a byte >= 0x80.
    while len(data) > 1 and (
        (data[0] == 0 and data[1] < 0x80) or (data[0] == 0xFF and data[1] >= 0x80)
    ):
        data = data[1:]
    return data


def string(data: bytes | str) -> bytes:
    """One SSH ``string`` as bytes (handy for building signatures and hashes)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def mpint(value: int) -> bytes:
    return string(mpint_bytes(value))
