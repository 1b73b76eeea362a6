"""SFTP v3 wire format: packet types, status codes (mapped to exception classes), attributes,
and a sans-IO framer that cuts a channel's byte stream into packets.

Every packet is ``uint32 length, byte type, ...``; requests carry a ``uint32 id`` that the
response echoes.  Parsers raise :class:`SFTPProtocolError` (a typed error) on anything
malformed, never anything else.
"""

from __future__ import annotations

import dataclasses
import enum
import stat as statmod
import struct
from collections.abc import Callable

from vipernet.buffer import BufferUnderflow
from vipernet.ssh.codec import SSHBuffer, SSHWriter
from vipernet.ssh.errors import SSHError, SSHProtocolError

SFTP_VERSION = 3
MAX_SFTP_PACKET = 1024 * 1024  # OpenSSH's server sends at most 256 KiB
_HDR = struct.Struct(">IB")
_U32 = struct.Struct(">I")


class Fxp(enum.IntEnum):
    INIT = 1
    VERSION = 2
    OPEN = 3
    CLOSE = 4
    READ = 5
    WRITE = 6
    LSTAT = 7
    FSTAT = 8
    SETSTAT = 9
    FSETSTAT = 10
    OPENDIR = 11
    READDIR = 12
    REMOVE = 13
    MKDIR = 14
    RMDIR = 15
    REALPATH = 16
    STAT = 17
    RENAME = 18
    READLINK = 19
    SYMLINK = 20
    STATUS = 101
    HANDLE = 102
    DATA = 103
    NAME = 104
    ATTRS = 105
    EXTENDED = 200
    EXTENDED_REPLY = 201


class Fx(enum.IntEnum):
    OK = 0
    EOF = 1
    NO_SUCH_FILE = 2
    PERMISSION_DENIED = 3
    FAILURE = 4
    BAD_MESSAGE = 5
    NO_CONNECTION = 6
    CONNECTION_LOST = 7
    OP_UNSUPPORTED = 8


class OpenFlags(enum.IntFlag):
    READ = 0x01
    WRITE = 0x02
    APPEND = 0x04
    CREAT = 0x08
    TRUNC = 0x10
    EXCL = 0x20


class AttrFlags(enum.IntFlag):
    SIZE = 0x01
    UIDGID = 0x02
    PERMISSIONS = 0x04
    ACMODTIME = 0x08
    EXTENDED = 0x80000000


# -- errors ---------------------------------------------------------------------------


class SFTPError(SSHError):
    """A STATUS reply other than OK; ``code`` is the FX_* value."""

    code = Fx.FAILURE

    def __init__(self, message: str, code: int | None = None, path: str = "") -> None:
        super().__init__(f"{message}: {path}" if path else message)
        if code is not None:
            self.code = code  # type: ignore[assignment]
        self.path = path


class SFTPEOFError(SFTPError):
    code = Fx.EOF


class SFTPNoSuchFile(SFTPError, FileNotFoundError):
    code = Fx.NO_SUCH_FILE


class SFTPPermissionDenied(SFTPError, PermissionError):
    code = Fx.PERMISSION_DENIED


class SFTPFailure(SFTPError):
    code = Fx.FAILURE


class SFTPBadMessage(SFTPError):
    code = Fx.BAD_MESSAGE


class SFTPConnectionLost(SFTPError):
    code = Fx.CONNECTION_LOST


class SFTPOpUnsupported(SFTPError):
    code = Fx.OP_UNSUPPORTED


class SFTPProtocolError(SSHProtocolError):
    """The server sent a malformed or unexpected SFTP packet."""


STATUS_ERRORS: dict[int, type[SFTPError]] = {
    Fx.EOF: SFTPEOFError,
    Fx.NO_SUCH_FILE: SFTPNoSuchFile,
    Fx.PERMISSION_DENIED: SFTPPermissionDenied,
    Fx.FAILURE: SFTPFailure,
    Fx.BAD_MESSAGE: SFTPBadMessage,
    Fx.NO_CONNECTION: SFTPConnectionLost,
    Fx.CONNECTION_LOST: SFTPConnectionLost,
    Fx.OP_UNSUPPORTED: SFTPOpUnsupported,
}


def status_error(code: int, message: str, path: str = "") -> SFTPError:
    cls = STATUS_ERRORS.get(code, SFTPError)
    return cls(message or f"SFTP status {code}", code, path)


# -- attributes -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Attributes:
    size: int | None = None
    uid: int | None = None
    gid: int | None = None
    permissions: int | None = None
    atime: int | None = None
    mtime: int | None = None
    extended: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def is_dir(self) -> bool:
        return self.permissions is not None and statmod.S_ISDIR(self.permissions)

    @property
    def is_link(self) -> bool:
        return self.permissions is not None and statmod.S_ISLNK(self.permissions)

    @property
    def is_file(self) -> bool:
        return self.permissions is not None and statmod.S_ISREG(self.permissions)


def pull_attrs(buf: SSHBuffer) -> Attributes:
    flags = buf.pull_uint32("attr flags")
    size = buf.pull_uint64("size") if flags & AttrFlags.SIZE else None
    uid = gid = None
    if flags & AttrFlags.UIDGID:
        uid = buf.pull_uint32("uid")
        gid = buf.pull_uint32("gid")
    perms = buf.pull_uint32("permissions") if flags & AttrFlags.PERMISSIONS else None
    atime = mtime = None
    if flags & AttrFlags.ACMODTIME:
        atime = buf.pull_uint32("atime")
        mtime = buf.pull_uint32("mtime")
    extended: list[tuple[bytes, bytes]] = []
    if flags & AttrFlags.EXTENDED:
        count = buf.pull_uint32("extended count")
        if count > 1024:
            raise SFTPProtocolError(f"attrs: {count} extended attributes")
        for _ in range(count):
            extended.append((buf.pull_string("ext type"), buf.pull_string("ext data")))
    return Attributes(size=size, uid=uid, gid=gid, permissions=perms, atime=atime,
                      mtime=mtime, extended=tuple(extended))


def push_attrs(w: SSHWriter, a: Attributes) -> None:
    flags = 0
    if a.size is not None:
        flags |= AttrFlags.SIZE
    if a.uid is not None and a.gid is not None:
        flags |= AttrFlags.UIDGID
    if a.permissions is not None:
        flags |= AttrFlags.PERMISSIONS
    if a.atime is not None and a.mtime is not None:
        flags |= AttrFlags.ACMODTIME
    if a.extended:
        flags |= AttrFlags.EXTENDED
    w.push_uint32(flags)
    if a.size is not None:
        w.push_uint64(a.size)
    if a.uid is not None and a.gid is not None:
        w.push_uint32(a.uid)
        w.push_uint32(a.gid)
    if a.permissions is not None:
        w.push_uint32(a.permissions)
    if a.atime is not None and a.mtime is not None:
        w.push_uint32(a.atime)
        w.push_uint32(a.mtime)
    if a.extended:
        w.push_uint32(len(a.extended))
        for k, v in a.extended:
            w.push_string(k)
            w.push_string(v)


# -- responses ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NameEntry:
    filename: str
    longname: str
    attrs: Attributes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    code: int
    message: str


Response = Status | bytes | Attributes | list[NameEntry] | tuple[str, bytes]


def parse_response(kind: int, body: bytes | memoryview) -> Response:
    """Decode the body (after the request id) of a response packet of type ``kind``.

    STATUS -> :class:`Status`; HANDLE / DATA -> bytes; ATTRS -> :class:`Attributes`;
    NAME -> list of :class:`NameEntry`; EXTENDED_REPLY -> ("", raw bytes).
    """
    try:
        if kind == Fxp.DATA:
            if len(body) < 4:
                raise SFTPProtocolError("DATA: truncated")
            (n,) = _U32.unpack_from(body, 0)
            if n != len(body) - 4:
                raise SFTPProtocolError(f"DATA: length {n} but {len(body) - 4} bytes")
            return bytes(body[4:])
        buf = SSHBuffer(body)
        if kind == Fxp.STATUS:
            code = buf.pull_uint32("status code")
            message = ""
            if not buf.eof():  # v3 servers add message + language; very old ones do not
                message = buf.pull_string("status message").decode("utf-8", "replace")
                buf.pull_string("language")
            return Status(code=code, message=message)
        if kind == Fxp.HANDLE:
            handle = buf.pull_string("handle")
            if len(handle) > 256:
                raise SFTPProtocolError(f"HANDLE: {len(handle)} bytes (limit 256)")
            return handle
        if kind == Fxp.ATTRS:
            return pull_attrs(buf)
        if kind == Fxp.NAME:
            count = buf.pull_uint32("name count")
            if count > len(body):
                raise SFTPProtocolError(f"NAME: count {count} exceeds the packet")
            return [NameEntry(filename=buf.pull_text("filename"),
                              longname=buf.pull_string("longname").decode("utf-8", "replace"),
                              attrs=pull_attrs(buf)) for _ in range(count)]
        if kind == Fxp.EXTENDED_REPLY:
            return ("", bytes(body))
    except BufferUnderflow as exc:
        raise SFTPProtocolError(f"SFTP packet type {kind}: {exc}") from None
    raise SFTPProtocolError(f"unexpected SFTP response type {kind}")


def parse_version(body: bytes) -> tuple[int, dict[str, bytes]]:
    """VERSION body (after the type byte): the version and the extensions."""
    try:
        buf = SSHBuffer(body)
        version = buf.pull_uint32("version")
        ext: dict[str, bytes] = {}
        while not buf.eof() and len(ext) < 256:
            name = buf.pull_string("extension name").decode("ascii", "replace")
            ext[name] = buf.pull_string("extension data")
        return version, ext
    except BufferUnderflow as exc:
        raise SFTPProtocolError(f"SFTP VERSION: {exc}") from None


class Framer:
    """Cuts the channel's byte stream into (type, request id, body) packets."""

    def __init__(self, max_packet: int = MAX_SFTP_PACKET) -> None:
        self._buf = bytearray()
        self._max = max_packet

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def next(self) -> tuple[int, int, bytes] | None:
        """(type, id, body) -- for VERSION the "id" is the version and body the rest."""
        found: list[tuple[int, int, bytes]] = []
        self.drain(lambda kind, rid, body: found.append((kind, rid, bytes(body))), limit=1)
        return found[0] if found else None

    def drain(self, deliver: Callable[[int, int, memoryview], None], *,
              limit: int = -1) -> None:
        """Hand each complete packet to ``deliver(type, id, body)`` (at most ``limit``).

        ``body`` is a view into the framer's buffer, valid only during the call: a
        callback that keeps it must copy it, and must not :meth:`feed` this framer (the
        buffer cannot grow while viewed).  The consumed bytes are dropped once, after the
        last packet, rather than once per packet.
        """
        buf = self._buf
        pos = 0
        try:
            with memoryview(buf) as view:
                while limit and len(buf) - pos >= 5:
                    length, kind = _HDR.unpack_from(buf, pos)
                    if length < 5 or length > self._max:
                        raise SFTPProtocolError(
                            f"SFTP packet length {length} outside [5, {self._max}]")
                    end = pos + 4 + length
                    if len(buf) < end:
                        break
                    (rid,) = _U32.unpack_from(buf, pos + 5)
                    with view[pos + 9 : end] as body:
                        pos = end  # consumed even if deliver raises
                        limit -= 1
                        deliver(kind, rid, body)
        finally:
            try:
                del buf[:pos]
            except BufferError:  # a callback kept a view after all: leave it its bytes
                self._buf = buf[pos:]


def request(kind: Fxp, rid: int, *fields: bytes | str | int) -> bytes:
    """Build a request: ints are uint32, bytes/str are SSH strings."""
    w = SSHWriter()
    w.push_uint32(0)
    w.push_uint8(kind)
    w.push_uint32(rid)
    for f in fields:
        if isinstance(f, int):
            w.push_uint32(f)
        else:
            w.push_string(f)
    data = bytearray(w.data())
    data[0:4] = _U32.pack(len(data) - 4)
    return bytes(data)
