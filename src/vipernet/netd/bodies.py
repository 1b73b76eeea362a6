"""netd IPC message bodies: one frozen dataclass per request/reply layout.

Each body has ``encode() -> bytes`` and ``decode(body) -> instance``.  Decoding is strict:
a body must be consumed exactly, every length is capped, and any violation raises
:class:`~vipernet.netd.framing.MalformedMessage` (answered with EINVAL).  The layouts are
the tables of ``docs/netd-protocol.md``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from vipernet.buffer import Buffer, Writer
from vipernet.errors import ProtocolError
from vipernet.netd.framing import (
    FOREVER,
    MAX_ADDRESSES,
    MAX_DATA,
    MAX_NAME,
    MAX_PING_PAYLOAD,
    MAX_POLL_ENTRIES,
    MalformedMessage,
    SendFlags,
)
from vipernet.stack.socket_api import Address, SocketKind

# --------------------------------------------------------------------------------------------
# Field helpers


def timeout_to_ms(timeout: float | None) -> int:
    """None -> FOREVER, 0 -> 0 (non-blocking), else milliseconds rounded up (min 1)."""
    if timeout is None:
        return FOREVER
    if timeout <= 0:
        return 0
    return min(FOREVER - 1, max(1, int(timeout * 1000 + 0.999)))


def timeout_from_ms(value: int) -> float | None:
    return None if value == FOREVER else value / 1000.0


def push_address(w: Writer, address: Address) -> None:
    host, port = address
    try:
        packed = ipaddress.IPv4Address(host).packed
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address: {host!r}") from exc
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    w.push_bytes(packed)
    w.push_uint16(port)


def pull_address(b: Buffer) -> Address:
    ip = ipaddress.IPv4Address(b.pull_bytes(4, "address"))
    return (str(ip), b.pull_uint16("port"))


def pull_ip(b: Buffer) -> str:
    return str(ipaddress.IPv4Address(b.pull_bytes(4, "ipv4 address")))


def push_ip(w: Writer, ip: str) -> None:
    w.push_bytes(ipaddress.IPv4Address(ip).packed)


def _pull_data(b: Buffer, what: str) -> bytes:
    data = b.pull_rest()
    if len(data) > MAX_DATA:
        raise MalformedMessage(f"{what}: {len(data)} bytes exceeds {MAX_DATA}")
    return data


# --------------------------------------------------------------------------------------------
# Bodies.  Each has encode() -> bytes and decode(body) -> instance (MalformedMessage on error).

B = TypeVar("B", bound="Body")


class Body:
    """Base of every body: strict decode that insists on consuming every byte."""

    __slots__ = ()
    name: ClassVar[str] = "body"

    def _push(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def _pull(cls: type[B], b: Buffer) -> B:
        raise NotImplementedError

    def encode(self) -> bytes:
        w = Writer()
        self._push(w)
        return w.data()

    @classmethod
    def decode(cls: type[B], body: bytes) -> B:
        b = Buffer(body)
        try:
            value = cls._pull(b)
        except MalformedMessage:
            raise
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"{cls.name}: {exc}") from exc
        if not b.eof():
            raise MalformedMessage(f"{cls.name}: {b.remaining} trailing bytes")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Empty(Body):
    name: ClassVar[str] = "empty body"

    def _push(self, w: Writer) -> None:
        pass

    @classmethod
    def _pull(cls, b: Buffer) -> Empty:
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest(Body):
    """SOCKET_CREATE: kind u8 (1 TCP, 2 UDP, 3 ICMP ping)."""

    name: ClassVar[str] = "SOCKET_CREATE"
    kind: SocketKind

    def _push(self, w: Writer) -> None:
        w.push_uint8(self.kind)

    @classmethod
    def _pull(cls, b: Buffer) -> CreateRequest:
        raw = b.pull_uint8("kind")
        try:
            kind = SocketKind(raw)
        except ValueError:
            raise MalformedMessage(f"SOCKET_CREATE: unknown socket kind {raw}") from None
        return cls(kind=kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketRef(Body):
    """sock u32: CLOSE, GETSOCKNAME, GETPEERNAME, GET_ERROR requests; CREATE reply."""

    name: ClassVar[str] = "socket reference"
    sock: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)

    @classmethod
    def _pull(cls, b: Buffer) -> SocketRef:
        return cls(sock=b.pull_uint32("sock"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressBody(Body):
    """ipv4 4 bytes + port u16: BIND/GETSOCKNAME/GETPEERNAME replies."""

    name: ClassVar[str] = "address"
    address: Address

    def _push(self, w: Writer) -> None:
        push_address(w, self.address)

    @classmethod
    def _pull(cls, b: Buffer) -> AddressBody:
        return cls(address=pull_address(b))


@dataclass(frozen=True, slots=True, kw_only=True)
class BindRequest(Body):
    """SOCKET_BIND: sock u32, address (6)."""

    name: ClassVar[str] = "SOCKET_BIND"
    sock: int
    address: Address

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        push_address(w, self.address)

    @classmethod
    def _pull(cls, b: Buffer) -> BindRequest:
        return cls(sock=b.pull_uint32("sock"), address=pull_address(b))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest(Body):
    """SOCKET_CONNECT: sock u32, timeout_ms u32, address (6)."""

    name: ClassVar[str] = "SOCKET_CONNECT"
    sock: int
    timeout_ms: int
    address: Address

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint32(self.timeout_ms)
        push_address(w, self.address)

    @classmethod
    def _pull(cls, b: Buffer) -> ConnectRequest:
        return cls(sock=b.pull_uint32("sock"), timeout_ms=b.pull_uint32("timeout"),
                   address=pull_address(b))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenRequest(Body):
    """SOCKET_LISTEN: sock u32, backlog u16."""

    name: ClassVar[str] = "SOCKET_LISTEN"
    sock: int
    backlog: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint16(self.backlog)

    @classmethod
    def _pull(cls, b: Buffer) -> ListenRequest:
        return cls(sock=b.pull_uint32("sock"), backlog=b.pull_uint16("backlog"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitRequest(Body):
    """sock u32, timeout_ms u32: ACCEPT and CONNECT-less waits."""

    name: ClassVar[str] = "SOCKET_ACCEPT"
    sock: int
    timeout_ms: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint32(self.timeout_ms)

    @classmethod
    def _pull(cls, b: Buffer) -> WaitRequest:
        return cls(sock=b.pull_uint32("sock"), timeout_ms=b.pull_uint32("timeout"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptReply(Body):
    """SOCKET_ACCEPT reply: new sock u32, peer address (6)."""

    name: ClassVar[str] = "SOCKET_ACCEPT reply"
    sock: int
    address: Address

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        push_address(w, self.address)

    @classmethod
    def _pull(cls, b: Buffer) -> AcceptReply:
        return cls(sock=b.pull_uint32("sock"), address=pull_address(b))


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest(Body):
    """SOCKET_SEND: sock u32, timeout_ms u32, flags u8, data (rest, <= MAX_DATA)."""

    name: ClassVar[str] = "SOCKET_SEND"
    sock: int
    timeout_ms: int
    flags: SendFlags
    data: bytes

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint32(self.timeout_ms)
        w.push_uint8(self.flags)
        w.push_bytes(self.data)

    @classmethod
    def _pull(cls, b: Buffer) -> SendRequest:
        sock = b.pull_uint32("sock")
        timeout = b.pull_uint32("timeout")
        flags = b.pull_uint8("flags")
        if flags & ~int(SendFlags.ALL):
            raise MalformedMessage(f"SOCKET_SEND: unknown flags 0x{flags:02x}")
        return cls(sock=sock, timeout_ms=timeout, flags=SendFlags(flags),
                   data=_pull_data(b, "SOCKET_SEND data"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToRequest(Body):
    """SOCKET_SENDTO: sock u32, timeout_ms u32, flags u8, address (6), data (rest)."""

    name: ClassVar[str] = "SOCKET_SENDTO"
    sock: int
    timeout_ms: int
    flags: SendFlags
    address: Address
    data: bytes

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint32(self.timeout_ms)
        w.push_uint8(self.flags)
        push_address(w, self.address)
        w.push_bytes(self.data)

    @classmethod
    def _pull(cls, b: Buffer) -> SendToRequest:
        sock = b.pull_uint32("sock")
        timeout = b.pull_uint32("timeout")
        flags = b.pull_uint8("flags")
        if flags & ~int(SendFlags.ALL):
            raise MalformedMessage(f"SOCKET_SENDTO: unknown flags 0x{flags:02x}")
        address = pull_address(b)
        return cls(sock=sock, timeout_ms=timeout, flags=SendFlags(flags), address=address,
                   data=_pull_data(b, "SOCKET_SENDTO data"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CountBody(Body):
    """count u32: SEND/SENDTO replies (bytes queued)."""

    name: ClassVar[str] = "count"
    count: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.count)

    @classmethod
    def _pull(cls, b: Buffer) -> CountBody:
        return cls(count=b.pull_uint32("count"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RecvRequest(Body):
    """SOCKET_RECV / SOCKET_RECVFROM: sock u32, timeout_ms u32, max_bytes u32."""

    name: ClassVar[str] = "SOCKET_RECV"
    sock: int
    timeout_ms: int
    max_bytes: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint32(self.timeout_ms)
        w.push_uint32(self.max_bytes)

    @classmethod
    def _pull(cls, b: Buffer) -> RecvRequest:
        sock = b.pull_uint32("sock")
        timeout = b.pull_uint32("timeout")
        max_bytes = b.pull_uint32("max_bytes")
        if max_bytes > MAX_DATA:
            raise MalformedMessage(f"SOCKET_RECV: max_bytes {max_bytes} exceeds {MAX_DATA}")
        return cls(sock=sock, timeout_ms=timeout, max_bytes=max_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecvFromReply(Body):
    """SOCKET_RECVFROM reply: address (6), data (rest)."""

    name: ClassVar[str] = "SOCKET_RECVFROM reply"
    address: Address
    data: bytes

    def _push(self, w: Writer) -> None:
        push_address(w, self.address)
        w.push_bytes(self.data)

    @classmethod
    def _pull(cls, b: Buffer) -> RecvFromReply:
        address = pull_address(b)
        return cls(address=address, data=_pull_data(b, "SOCKET_RECVFROM data"))


@dataclass(frozen=True, slots=True, kw_only=True)
class PollBody(Body):
    """SOCKET_POLL request: timeout_ms u32, count u16, count x (sock u32, events u16).

    The reply has the same layout (timeout_ms 0) with the returned events per socket.
    """

    name: ClassVar[str] = "SOCKET_POLL"
    timeout_ms: int
    entries: tuple[tuple[int, int], ...]

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.timeout_ms)
        w.push_uint16(len(self.entries))
        for sock, events in self.entries:
            w.push_uint32(sock)
            w.push_uint16(events)

    @classmethod
    def _pull(cls, b: Buffer) -> PollBody:
        timeout = b.pull_uint32("timeout")
        count = b.pull_uint16("count")
        if count > MAX_POLL_ENTRIES:
            raise MalformedMessage(f"SOCKET_POLL: {count} entries exceeds {MAX_POLL_ENTRIES}")
        entries = tuple((b.pull_uint32("sock"), b.pull_uint16("events")) for _ in range(count))
        return cls(timeout_ms=timeout, entries=entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequest(Body):
    """SOCKET_SHUTDOWN: sock u32, how u8 (0 SHUT_RD, 1 SHUT_WR, 2 SHUT_RDWR)."""

    name: ClassVar[str] = "SOCKET_SHUTDOWN"
    sock: int
    how: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint8(self.how)

    @classmethod
    def _pull(cls, b: Buffer) -> ShutdownRequest:
        sock = b.pull_uint32("sock")
        how = b.pull_uint8("how")
        if how > 2:
            raise MalformedMessage(f"SOCKET_SHUTDOWN: how {how} not in 0..2")
        return cls(sock=sock, how=how)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSockOptRequest(Body):
    """SOCKET_SETSOCKOPT: sock u32, option u16 (SockOpt), value i32."""

    name: ClassVar[str] = "SOCKET_SETSOCKOPT"
    sock: int
    option: int
    value: int

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint16(self.option)
        w.push_uint32(self.value & 0xFFFFFFFF)

    @classmethod
    def _pull(cls, b: Buffer) -> SetSockOptRequest:
        sock = b.pull_uint32("sock")
        option = b.pull_uint16("option")
        raw = b.pull_uint32("value")
        value = raw - (1 << 32) if raw & 0x80000000 else raw
        return cls(sock=sock, option=option, value=value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrnoBody(Body):
    """SOCKET_GET_ERROR reply: errno u16 (0 = none pending)."""

    name: ClassVar[str] = "SOCKET_GET_ERROR reply"
    errno: int

    def _push(self, w: Writer) -> None:
        w.push_uint16(self.errno)

    @classmethod
    def _pull(cls, b: Buffer) -> ErrnoBody:
        return cls(errno=b.pull_uint16("errno"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveRequest(Body):
    """DNS_RESOLVE: timeout_ms u32, name (u8 length + ASCII, <= 253)."""

    name: ClassVar[str] = "DNS_RESOLVE"
    timeout_ms: int
    hostname: str

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.timeout_ms)
        w.push_vector(1, self.hostname.encode("ascii"))

    @classmethod
    def _pull(cls, b: Buffer) -> ResolveRequest:
        timeout = b.pull_uint32("timeout")
        raw = b.pull_vector(1, "name")
        if not raw or len(raw) > MAX_NAME:
            raise MalformedMessage(f"DNS_RESOLVE: name length {len(raw)} not in 1..{MAX_NAME}")
        return cls(timeout_ms=timeout, hostname=raw.decode("ascii"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveReply(Body):
    """DNS_RESOLVE reply: count u8, count x ipv4 (4 bytes)."""

    name: ClassVar[str] = "DNS_RESOLVE reply"
    addresses: tuple[str, ...]

    def _push(self, w: Writer) -> None:
        addresses = self.addresses[:MAX_ADDRESSES]
        w.push_uint8(len(addresses))
        for ip in addresses:
            push_ip(w, ip)

    @classmethod
    def _pull(cls, b: Buffer) -> ResolveReply:
        count = b.pull_uint8("count")
        if count > MAX_ADDRESSES:
            raise MalformedMessage(f"DNS_RESOLVE reply: {count} addresses > {MAX_ADDRESSES}")
        return cls(addresses=tuple(pull_ip(b) for _ in range(count)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PingRequest(Body):
    """PING: destination ipv4 (4), seq u16, timeout_ms u32, payload (rest, <= 65499)."""

    name: ClassVar[str] = "PING"
    destination: str
    seq: int
    timeout_ms: int
    payload: bytes

    def _push(self, w: Writer) -> None:
        push_ip(w, self.destination)
        w.push_uint16(self.seq)
        w.push_uint32(self.timeout_ms)
        w.push_bytes(self.payload)

    @classmethod
    def _pull(cls, b: Buffer) -> PingRequest:
        destination = pull_ip(b)
        seq = b.pull_uint16("seq")
        timeout = b.pull_uint32("timeout")
        payload = b.pull_rest()
        if len(payload) > MAX_PING_PAYLOAD:
            raise MalformedMessage(f"PING: payload {len(payload)} exceeds {MAX_PING_PAYLOAD}")
        return cls(destination=destination, seq=seq, timeout_ms=timeout, payload=payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReply(Body):
    """PING reply: source ipv4 (4), seq u16, ttl u8, rtt_ns u64, size u32 (ICMP bytes)."""

    name: ClassVar[str] = "PING reply"
    source: str
    seq: int
    ttl: int
    rtt_ns: int
    size: int

    def _push(self, w: Writer) -> None:
        push_ip(w, self.source)
        w.push_uint16(self.seq)
        w.push_uint8(self.ttl)
        w.push_uint64(self.rtt_ns)
        w.push_uint32(self.size)

    @classmethod
    def _pull(cls, b: Buffer) -> PingReply:
        return cls(source=pull_ip(b), seq=b.pull_uint16("seq"), ttl=b.pull_uint8("ttl"),
                   rtt_ns=b.pull_uint64("rtt"), size=b.pull_uint32("size"))


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonBody(Body):
    """GET_INFO / STAT replies: one UTF-8 JSON object (fields in docs/netd-protocol.md).

    These are reports for people and tools, not a fast path, and gain fields over time;
    JSON keeps them extensible without a new code per field.
    """

    name: ClassVar[str] = "JSON report"
    value: dict[str, object]

    def _push(self, w: Writer) -> None:
        w.push_bytes(json.dumps(self.value, sort_keys=True).encode("utf-8"))

    @classmethod
    def _pull(cls, b: Buffer) -> JsonBody:
        try:
            value = json.loads(b.pull_rest().decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise MalformedMessage(f"JSON report: {exc}") from exc
        if not isinstance(value, dict):
            raise MalformedMessage("JSON report: not an object")
        return cls(value=value)
