"""asyncio streams over netd: ``reader, writer = await open_connection(host, port)``.

The netd protocol is already asynchronous (replies carry request ids and may come in any
order), so this is a true asyncio client, not threads: :class:`AsyncChannel` keeps one
AF_UNIX connection, a reader task resolves each request's future, and blocking socket
operations simply park in netd while the event loop runs other tasks.  The stream
objects offer the commonly used parts of :class:`asyncio.StreamReader` /
:class:`asyncio.StreamWriter` (``read``, ``readexactly``, ``readline``, ``readuntil``;
``write``, ``drain``, ``close``, ``wait_closed``, ``get_extra_info``).  Kernel mode is not
offered here: it has no IPC to wait on asynchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import itertools
from typing import Any

from vipernet.netclient.channel import status_error
from vipernet.netclient.client import socket_path
from vipernet.netd import protocol as p
from vipernet.netd.protocol import Code
from vipernet.stack.socket_api import Address, SocketKind

READ_SIZE = 64 * 1024


class AsyncChannel:
    """One asyncio connection to netd; many concurrent requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[p.Message]] = {}
        self._broken: OSError | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str | None = None) -> AsyncChannel:
        path = path or socket_path()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT,
                                    f"netd is not running (no socket at {path})") from None
        except ConnectionRefusedError:
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"netd is not running (nobody listens on {path})"
                                         ) from None
        return cls(reader, writer)

    async def call(self, code: int, body: p.Body | None = None) -> bytes:
        if self._broken is not None:
            raise OSError(self._broken.errno, self._broken.strerror)
        request_id = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[p.Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        raw = body.encode() if body is not None else b""
        self._writer.write(p.Message(code=code, request_id=request_id, body=raw).encode())
        try:
            await self._writer.drain()
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.status:
            raise status_error(reply)
        return reply.body

    async def _read_loop(self) -> None:
        decoder = p.FrameDecoder()
        reason: OSError = ConnectionResetError(errno.ECONNRESET, "netd closed the channel")
        try:
            while data := await self._reader.read(READ_SIZE):
                for message in decoder.feed(data):
                    future = self._pending.get(message.request_id)
                    if future is not None and not future.done():
                        future.set_result(message)
        except p.FramingError as exc:
            reason = ConnectionResetError(errno.EPROTO, f"netd sent garbage: {exc}")
        except OSError as exc:
            reason = ConnectionResetError(exc.errno or errno.ECONNRESET, f"lost netd: {exc}")
        self._broken = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(OSError(reason.errno, reason.strerror))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class StreamReader:
    """Reads a netd stream socket; RECV requests park in netd, not in a thread."""

    def __init__(self, channel: AsyncChannel, sock: int) -> None:
        self._channel = channel
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await self._channel.call(Code.SOCKET_RECV, p.RecvRequest(
            sock=self._sock, timeout_ms=p.FOREVER, max_bytes=READ_SIZE))
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            while await self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if not self._buffer:
            await self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not await self._fill():
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        while (index := self._buffer.find(separator)) < 0:
            if not await self._fill():
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
        end = index + len(separator)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial


class StreamWriter:
    """Writes to a netd stream socket; ``drain`` waits until netd queued everything."""

    def __init__(self, channel: AsyncChannel, sock: int, peer: Address, local: Address) -> None:
        self._channel = channel
        self._sock = sock
        self._pending = bytearray()
        self._closed = False
        self._eof = "no"  # -> "wanted" (write_eof) -> "sent" (SHUTDOWN at drain)
        self._extra: dict[str, Any] = {"peername": peer, "sockname": local}

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "writer is closed")
        self._pending += data

    def writelines(self, data: list[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    async def drain(self) -> None:
        while self._pending:
            chunk = bytes(self._pending[:p.MAX_DATA])
            body = await self._channel.call(Code.SOCKET_SEND, p.SendRequest(
                sock=self._sock, timeout_ms=p.FOREVER, flags=p.SendFlags.ALL, data=chunk))
            del self._pending[:p.CountBody.decode(body).count]
        if self._eof == "wanted":
            self._eof = "sent"
            await self._channel.call(Code.SOCKET_SHUTDOWN,
                                     p.ShutdownRequest(sock=self._sock, how=1))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close after what is written so far; takes effect at the next drain()."""
        if self._eof == "no":
            self._eof = "wanted"

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):
            await self.drain()
        with contextlib.suppress(OSError):
            await self._channel.call(Code.SOCKET_CLOSE, p.SocketRef(sock=self._sock))
        await self._channel.close()


async def open_connection(host: str, port: int, *, path: str | None = None,
                          timeout: float | None = None) -> tuple[StreamReader, StreamWriter]:
    """Connect a netd TCP socket to ``host:port``; each connection has its own channel."""
    channel = await AsyncChannel.connect(path)
    try:
        try:
            ip = str(ipaddress.IPv4Address(host))
        except ValueError:
            body = await channel.call(Code.DNS_RESOLVE, p.ResolveRequest(
                timeout_ms=p.timeout_to_ms(10.0), hostname=host))
            addresses = p.ResolveReply.decode(body).addresses
            if not addresses:
                raise OSError(errno.EHOSTUNREACH, f"{host} has no address") from None
            ip = addresses[0]
        sock = p.SocketRef.decode(await channel.call(
            Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.TCP))).sock
        await channel.call(Code.SOCKET_CONNECT, p.ConnectRequest(
            sock=sock, timeout_ms=p.timeout_to_ms(timeout), address=(ip, port)))
        local = p.AddressBody.decode(await channel.call(
            Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock))).address
    except BaseException:
        await channel.close()
        raise
    return StreamReader(channel, sock), StreamWriter(channel, sock, (ip, port), local)
