"""The vhost-user control protocol (QEMU ``docs/interop/vhost-user.rst``), sans-IO.

Every message is a 12-byte header — ``u32 request | u32 flags | u32 size`` in the machine's
byte order — and ``size`` bytes of payload; file descriptors ride along as SCM_RIGHTS
ancillary data.  :class:`MessageDecoder` takes what ``recvmsg`` returned (bytes and fds)
and gives back typed messages, each holding the fds that came with it; the encoders build
the back-end's replies.  No sockets here, so the codec is unit-tested and fuzzed alone.

Which message owns a batch of fds: the front-end sends each message with one ``sendmsg``
and Linux never merges stream data past a segment that carries fds, so the fds of one
``recvmsg`` belong to the message that holds the *last byte* read.  A peer that breaks the
framing (wrong version bits, a payload over :data:`MAX_PAYLOAD`, a payload too short for
its request, the wrong number of fds) gets :class:`VhostUserProtocolError`, and every fd
the decoder still held is closed: a hostile front-end cannot make us leak descriptors.
"""

from __future__ import annotations

import contextlib
import enum
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from vipernet.link.errors import LinkProtocolError

HEADER = struct.Struct("=III")
HEADER_LEN = HEADER.size
VERSION = 0x1
VERSION_MASK = 0x3
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
# The largest payload QEMU sends is a memory table (8 + 8 * 32 bytes) or a config-space
# read (12 + 256); anything far beyond that is a peer that lost the framing.
MAX_PAYLOAD = 4096
MAX_FDS = 8  # VHOST_MEMORY_BASELINE_NREGIONS: the most fds one message may carry
MAX_REGIONS = 8
VRING_INDEX_MASK = 0xFF
VRING_NOFD_FLAG = 1 << 8  # in the u64 of SET_VRING_KICK/CALL/ERR: no fd, poll instead

_U64 = struct.Struct("=Q")
_STATE = struct.Struct("=II")
_ADDR = struct.Struct("=IIQQQQ")
_TABLE_HEAD = struct.Struct("=II")
_REGION = struct.Struct("=QQQQ")


class Request(enum.IntEnum):
    """Front-end request codes (the ones this back-end knows by name)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class ProtocolFeature(enum.IntFlag):
    """``VHOST_USER_PROTOCOL_F_*`` bits (only the ones we name somewhere)."""

    MQ = 1 << 0
    LOG_SHMFD = 1 << 1
    RARP = 1 << 2
    REPLY_ACK = 1 << 3
    MTU = 1 << 4
    BACKEND_REQ = 1 << 5
    CONFIG = 1 << 9
    RESET_DEVICE = 1 << 13
    INBAND_NOTIFICATIONS = 1 << 14
    CONFIGURE_MEM_SLOTS = 1 << 15
    STATUS = 1 << 16


class VhostUserProtocolError(LinkProtocolError):
    """The front-end broke the vhost-user framing or sent a payload that cannot be right."""


# -- typed messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bare:
    """A request without payload (GET_FEATURES, SET_OWNER, GET_QUEUE_NUM, ...)."""

    request: int
    flags: int


@dataclass(frozen=True, slots=True)
class U64Message:
    """A request carrying one u64 (SET_FEATURES, SET_PROTOCOL_FEATURES, NET_SET_MTU, ...)."""

    request: int
    flags: int
    value: int


@dataclass(frozen=True, slots=True)
class VringState:
    """SET_VRING_NUM / SET_VRING_BASE / GET_VRING_BASE / SET_VRING_ENABLE: index + number."""

    request: int
    flags: int
    index: int
    num: int


@dataclass(frozen=True, slots=True)
class VringAddress:
    """SET_VRING_ADDR: the ring's three parts, as front-end (QEMU) *user* addresses."""

    flags: int
    index: int
    ring_flags: int
    desc: int
    used: int
    avail: int
    log: int
    request: int = Request.SET_VRING_ADDR


@dataclass(frozen=True, slots=True)
class VringFd:
    """SET_VRING_KICK / CALL / ERR: a ring index and its eventfd (None: poll instead)."""

    request: int
    flags: int
    index: int
    fd: int | None


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """One guest memory region of SET_MEM_TABLE, as the front-end describes it."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int


@dataclass(frozen=True, slots=True)
class MemoryTable:
    """SET_MEM_TABLE: the regions and one fd per region, in the same order."""

    flags: int
    regions: tuple[RegionSpec, ...]
    fds: tuple[int, ...]
    request: int = Request.SET_MEM_TABLE


@dataclass(frozen=True, slots=True)
class Other:
    """Any request we do not interpret: answered with a failure if a reply is wanted."""

    request: int
    flags: int
    payload: bytes
    fds: tuple[int, ...]


Message = Bare | U64Message | VringState | VringAddress | VringFd | MemoryTable | Other


def need_reply(message: Message) -> bool:
    return bool(message.flags & FLAG_NEED_REPLY)


def message_fds(message: Message) -> tuple[int, ...]:
    """The fds a message carries (the receiver owns them and must close what it keeps not)."""
    if isinstance(message, MemoryTable | Other):
        return message.fds
    if isinstance(message, VringFd) and message.fd is not None:
        return (message.fd,)
    return ()


_BARE = frozenset({Request.GET_FEATURES, Request.SET_OWNER, Request.RESET_OWNER,
                   Request.GET_PROTOCOL_FEATURES, Request.GET_QUEUE_NUM, Request.RESET_DEVICE,
                   Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS})
_U64_REQUESTS = frozenset({Request.SET_FEATURES, Request.SET_PROTOCOL_FEATURES,
                           Request.NET_SET_MTU, Request.SET_STATUS, Request.SEND_RARP})
_STATE_REQUESTS = frozenset({Request.SET_VRING_NUM, Request.SET_VRING_BASE,
                             Request.GET_VRING_BASE, Request.SET_VRING_ENABLE,
                             Request.VRING_KICK})
_FD_REQUESTS = frozenset({Request.SET_VRING_KICK, Request.SET_VRING_CALL,
                          Request.SET_VRING_ERR})


def parse_message(request: int, flags: int, payload: bytes, fds: tuple[int, ...]) -> Message:
    """The typed form of one framed message; raises :class:`VhostUserProtocolError`.

    On an error the caller still owns ``fds`` (the decoder closes them).
    """
    if request in _BARE:
        _no_fds(request, fds)
        return Bare(request, flags)
    if request in _U64_REQUESTS:
        _no_fds(request, fds)
        (value,) = _unpack(_U64, payload, request)
        return U64Message(request, flags, value)
    if request in _STATE_REQUESTS:
        _no_fds(request, fds)
        index, num = _unpack(_STATE, payload, request)
        return VringState(request, flags, index, num)
    if request == Request.SET_VRING_ADDR:
        _no_fds(request, fds)
        index, ring_flags, desc, used, avail, log = _unpack(_ADDR, payload, request)
        return VringAddress(flags, index, ring_flags, desc, used, avail, log)
    if request in _FD_REQUESTS:
        (value,) = _unpack(_U64, payload, request)
        nofd = bool(value & VRING_NOFD_FLAG)
        if len(fds) != (0 if nofd else 1):
            raise VhostUserProtocolError(
                f"vhost-user {_name(request)}: {len(fds)} fds with no-fd flag {nofd}")
        return VringFd(request, flags, value & VRING_INDEX_MASK, None if nofd else fds[0])
    if request == Request.SET_MEM_TABLE:
        return _memory_table(flags, payload, fds)
    return Other(request, flags, payload, fds)


def _memory_table(flags: int, payload: bytes, fds: tuple[int, ...]) -> MemoryTable:
    count, _padding = _unpack(_TABLE_HEAD, payload, Request.SET_MEM_TABLE)
    if not 1 <= count <= MAX_REGIONS:
        raise VhostUserProtocolError(f"vhost-user SET_MEM_TABLE: {count} regions (1..8)")
    need = _TABLE_HEAD.size + count * _REGION.size
    if len(payload) < need:
        raise VhostUserProtocolError(
            f"vhost-user SET_MEM_TABLE: {len(payload)} bytes for {count} regions")
    if len(fds) != count:
        raise VhostUserProtocolError(
            f"vhost-user SET_MEM_TABLE: {len(fds)} fds for {count} regions")
    regions = tuple(RegionSpec(*_REGION.unpack_from(payload, _TABLE_HEAD.size + i * _REGION.size))
                    for i in range(count))
    for region in regions:
        if region.size == 0 or region.guest_addr + region.size > 1 << 64 \
                or region.user_addr + region.size > 1 << 64:
            raise VhostUserProtocolError(f"vhost-user SET_MEM_TABLE: bad region {region}")
    return MemoryTable(flags, regions, fds)


def _unpack(layout: struct.Struct, payload: bytes, request: int) -> tuple[int, ...]:
    if len(payload) < layout.size:
        raise VhostUserProtocolError(
            f"vhost-user {_name(request)}: payload of {len(payload)} bytes, "
            f"needs {layout.size}")
    return layout.unpack_from(payload)


def _no_fds(request: int, fds: tuple[int, ...]) -> None:
    if fds:
        raise VhostUserProtocolError(f"vhost-user {_name(request)} came with {len(fds)} fds")


def _name(request: int) -> str:
    try:
        return Request(request).name
    except ValueError:
        return f"request {request}"


# -- the decoder ------------------------------------------------------------------------------


class MessageDecoder:
    """Bytes and fds in (as ``recvmsg`` returned them), typed messages out.

    After an error the decoder is finished: ``error`` says why, and later feeds raise.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fds: list[int] = []  # fds of the message whose bytes are at the buffer's end
        self.error: str | None = None

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview, fds: Iterable[int] = ()) -> list[Message]:
        """Every message the new bytes complete; the fds go to the message holding the last
        byte.  Raises :class:`VhostUserProtocolError` (having closed every fd it held)."""
        new_fds = list(fds)
        if self.error is not None:
            close_fds(new_fds)
            raise VhostUserProtocolError(self.error)
        buf = self._buf
        buf += data
        messages: list[Message] = []
        pos = 0
        end = len(buf)
        try:
            if new_fds and not data:
                raise VhostUserProtocolError("vhost-user: fds arrived without any bytes")
            while end - pos >= HEADER_LEN:
                request, flags, size = HEADER.unpack_from(buf, pos)
                if flags & VERSION_MASK != VERSION:
                    raise VhostUserProtocolError(
                        f"vhost-user: version {flags & VERSION_MASK} (flags {flags:#x}), "
                        f"expected {VERSION}")
                if size > MAX_PAYLOAD:
                    raise VhostUserProtocolError(
                        f"vhost-user {_name(request)}: payload size {size} > {MAX_PAYLOAD}")
                stop = pos + HEADER_LEN + size
                if stop > end:
                    break
                mine = self._fds
                self._fds = []
                if stop == end:
                    mine += new_fds  # this message holds the last byte read
                    new_fds = []
                if len(mine) > MAX_FDS:
                    close_fds(mine)
                    raise VhostUserProtocolError(f"vhost-user: {len(mine)} fds on one message")
                payload = bytes(buf[pos + HEADER_LEN:stop])
                try:
                    messages.append(parse_message(request, flags, payload, tuple(mine)))
                except VhostUserProtocolError:
                    close_fds(mine)
                    raise
                pos = stop
            self._fds += new_fds  # the unfinished message at the end gets them
            new_fds = []
            if len(self._fds) > MAX_FDS:
                raise VhostUserProtocolError(f"vhost-user: {len(self._fds)} fds on one message")
        except VhostUserProtocolError as exc:
            self.error = str(exc)
            close_fds(new_fds)
            self.close()
            for message in messages:
                close_fds(message_fds(message))
            raise
        del buf[:pos]
        return messages

    def close(self) -> None:
        """Close the fds of an unfinished message and drop its bytes."""
        close_fds(self._fds)
        self._fds = []
        self._buf.clear()


def close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# -- replies ----------------------------------------------------------------------------------


def encode_reply(request: int, payload: bytes = b"") -> bytes:
    """A back-end reply: the request's code, version + REPLY flag, and the payload."""
    return HEADER.pack(request, VERSION | FLAG_REPLY, len(payload)) + payload


def encode_u64_reply(request: int, value: int) -> bytes:
    return encode_reply(request, _U64.pack(value & 0xFFFF_FFFF_FFFF_FFFF))


def encode_state_reply(request: int, index: int, num: int) -> bytes:
    return encode_reply(request, _STATE.pack(index, num))


def encode_message(request: int, payload: bytes = b"", *, flags: int = VERSION) -> bytes:
    """A front-end style message (what the tests play QEMU with)."""
    return HEADER.pack(request, flags, len(payload)) + payload


def u64_payload(value: int) -> bytes:
    return _U64.pack(value)


def state_payload(index: int, num: int) -> bytes:
    return _STATE.pack(index, num)


def address_payload(index: int, desc: int, used: int, avail: int, *, ring_flags: int = 0,
                    log: int = 0) -> bytes:
    return _ADDR.pack(index, ring_flags, desc, used, avail, log)


def memory_table_payload(regions: Iterable[RegionSpec]) -> bytes:
    items = list(regions)
    return _TABLE_HEAD.pack(len(items), 0) + b"".join(
        _REGION.pack(r.guest_addr, r.size, r.user_addr, r.mmap_offset) for r in items)
