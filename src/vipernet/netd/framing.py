"""netd IPC framing: the 12-byte header, message codes, errors and the stream decoder.

Every message, in both directions, is ``length u32 | code u8 | flags u8 | status u16 |
request_id u32 | body[length]`` (big-endian).  ``length`` counts the body only and is at
most :data:`MAX_BODY`; a reply echoes ``code`` and ``request_id``, sets
:attr:`Flags.REPLY` and carries ``status`` = 0 or an errno (then the body is a UTF-8
message).  A broken header raises :class:`FramingError` (the channel cannot resync and is
dropped); the bodies live in :mod:`vipernet.netd.bodies`.  ``docs/netd-protocol.md`` has
the byte-by-byte layout.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from vipernet.errors import ProtocolError

HEADER = struct.Struct(">IBBHI")
HEADER_SIZE = HEADER.size  # 12
MAX_BODY = 1 << 20  # any message
MAX_DATA = 256 * 1024  # payload of one SEND/SENDTO, or asked for by one RECV/RECVFROM
MAX_ERROR_TEXT = 1024
MAX_POLL_ENTRIES = 1024
MAX_NAME = 253  # a DNS name in text form
MAX_ADDRESSES = 64  # in a DNS_RESOLVE reply
MAX_PING_PAYLOAD = 65507 - 8
MAX_PING6_PAYLOAD = 65535 - 8  # an Echo Request filling one IPv6 payload (no jumbograms)
FOREVER = 0xFFFFFFFF  # timeout_ms meaning "block without limit"


class Code(enum.IntEnum):
    """Message codes; values below 0x40 are the spec's own."""

    SOCKET_CREATE = 0x01
    SOCKET_CONNECT = 0x02
    SOCKET_BIND = 0x03
    SOCKET_LISTEN = 0x04
    SOCKET_ACCEPT = 0x05
    SOCKET_SEND = 0x06
    SOCKET_RECV = 0x07
    SOCKET_CLOSE = 0x08
    SOCKET_POLL = 0x09
    DNS_RESOLVE = 0x14
    PING = 0x28
    GET_INFO = 0x29
    # Extensions (0x40-0x4F).
    SOCKET_GETSOCKNAME = 0x40
    SOCKET_GETPEERNAME = 0x41
    SOCKET_SHUTDOWN = 0x42
    SOCKET_SETSOCKOPT = 0x43
    SOCKET_SENDTO = 0x44
    SOCKET_RECVFROM = 0x45
    SOCKET_GET_ERROR = 0x46
    STAT = 0x47
    SOCKET_ATTACH_FD = 0x48
    SOCKET_ADOPT = 0x49
    PING6 = 0x4A
    DNS_RESOLVE_ALL = 0x4B


class Flags(enum.IntFlag):
    REPLY = 0x01


class SendFlags(enum.IntFlag):
    """Flags byte of SEND/SENDTO bodies."""

    ALL = 0x01  # keep parking until every byte is queued (sendall), not just the first


class PollEvents(enum.IntFlag):
    """Linux poll(2) bit values."""

    IN = 0x001
    OUT = 0x004
    ERR = 0x008
    HUP = 0x010


class SockOpt(enum.IntEnum):
    """Options SETSOCKOPT knows; passed to ``StackSocket.setsockopt`` by name."""

    TCP_NODELAY = 1
    SO_REUSEADDR = 2
    SO_KEEPALIVE = 3
    SO_RCVBUF = 4
    SO_SNDBUF = 5
    SO_BROADCAST = 6
    IPV6_V6ONLY = 7  # AF_INET6 sockets only, before bind/connect
    # Broadcast and multicast (extensions).  8-10 and 20-21 carry an i32 as the others;
    # 11-19 carry the option's struct instead (STRUCT_OPTIONS).
    IP_MULTICAST_TTL = 8
    IP_MULTICAST_LOOP = 9
    IP_MULTICAST_ALL = 10
    IP_MULTICAST_IF = 11
    IP_ADD_MEMBERSHIP = 12
    IP_DROP_MEMBERSHIP = 13
    IP_ADD_SOURCE_MEMBERSHIP = 14
    IP_DROP_SOURCE_MEMBERSHIP = 15
    IP_BLOCK_SOURCE = 16
    IP_UNBLOCK_SOURCE = 17
    IPV6_JOIN_GROUP = 18
    IPV6_LEAVE_GROUP = 19
    IPV6_MULTICAST_HOPS = 20
    IPV6_MULTICAST_LOOP = 21


# Options whose SETSOCKOPT value is the struct Linux's setsockopt(2) takes (ip_mreq,
# ip_mreqn, ip_mreq_source, in_addr, ipv6_mreq: 1..MAX_OPTION_STRUCT bytes), not an i32.
STRUCT_OPTIONS = frozenset(range(SockOpt.IP_MULTICAST_IF, SockOpt.IPV6_LEAVE_GROUP + 1))
MAX_OPTION_STRUCT = 64


class IpcError(ProtocolError):
    """Something on an IPC channel broke the protocol."""


class FramingError(IpcError):
    """The header is impossible: the stream cannot be resynchronised, drop the channel."""


class MalformedMessage(IpcError):
    """A body does not decode as its code says (answered with EINVAL)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One framed message; ``code`` is kept as a plain int so unknown codes survive."""

    code: int
    request_id: int
    body: bytes = b""
    flags: int = 0
    status: int = 0
    # A file descriptor travelling with the message (SCM_RIGHTS on the AF_UNIX channel,
    # the number itself in kernel mode); not part of the encoding.
    fd: int | None = field(default=None, compare=False, repr=False)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & Flags.REPLY)

    def encode(self) -> bytes:
        if len(self.body) > MAX_BODY:
            raise ValueError(f"body of {len(self.body)} bytes exceeds {MAX_BODY}")
        header = HEADER.pack(len(self.body), self.code, self.flags, self.status, self.request_id)
        return header + self.body


def reply_to(request: Message, body: bytes = b"") -> Message:
    return Message(code=request.code, request_id=request.request_id, body=body,
                   flags=Flags.REPLY)


def error_reply(request: Message, errno_value: int, text: str) -> Message:
    encoded = text.encode("utf-8", "replace")[:MAX_ERROR_TEXT]
    return Message(code=request.code, request_id=request.request_id, body=encoded,
                   flags=Flags.REPLY, status=errno_value & 0xFFFF)


def error_text(reply: Message) -> str:
    return reply.body[:MAX_ERROR_TEXT].decode("utf-8", "replace")


class FrameDecoder:
    """Splits a byte stream into :class:`Message`s; buffers at most one message."""

    __slots__ = ("_buf", "_max_body")

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buf = bytearray()
        self._max_body = max_body

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Append ``data`` and return every complete message; FramingError on a bad header."""
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER_SIZE:
            length, code, flags, status, request_id = HEADER.unpack_from(self._buf)
            if length > self._max_body:
                raise FramingError(f"body length {length} exceeds {self._max_body}")
            if flags & ~int(Flags.REPLY):
                raise FramingError(f"unknown flag bits 0x{flags:02x}")
            if not flags & Flags.REPLY and status != 0:
                raise FramingError(f"request carries status {status}, must be 0")
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            body = bytes(self._buf[HEADER_SIZE:end])
            del self._buf[:end]
            out.append(Message(code=code, request_id=request_id, body=body, flags=flags,
                               status=status))
        return out
