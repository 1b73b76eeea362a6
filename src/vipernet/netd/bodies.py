"""netd IPC message bodies: one frozen dataclass per request/reply layout.

Each body has ``encode() -> bytes`` and ``decode(body) -> instance``.  Decoding is strict:
a body must be consumed exactly, every length is capped, and any violation raises
:class:`~vipernet.netd.framing.MalformedMessage` (answered with EINVAL).  The layouts are
the tables of ``docs/netd-protocol.md``.

Most bodies are a fixed sequence of fields, so they declare it once as ``layout`` (a tuple
of :class:`Field`: attribute, writer, reader with its checks) and share one encoder and one
decoder; only the bodies with counted lists or JSON write their own ``_push``/``_pull``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from vipernet.buffer import Buffer, Writer
from vipernet.errors import ProtocolError
from vipernet.netd.framing import (
    FOREVER,
    MAX_ADDRESSES,
    MAX_DATA,
    MAX_NAME,
    MAX_OPTION_STRUCT,
    MAX_PING6_PAYLOAD,
    MAX_PING_PAYLOAD,
    MAX_POLL_ENTRIES,
    STRUCT_OPTIONS,
    MalformedMessage,
    SendFlags,
)
from vipernet.stack.socket_api import AF_INET, AF_INET6, Address, SocketKind
from vipernet.stack.sockets_common import format_address6, ip6_text

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


def push_address6(w: Writer, address: Address) -> None:
    """``address6``: IPv6 (16) + port u16.  Takes ``(host, port)`` or ``(host, port,
    flowinfo, scope_id)``; a ``%zone`` and the scope are not carried (netd has one
    interface, so every link-local address is on it)."""
    if len(address) not in (2, 4):
        raise ValueError(f"not an IPv6 socket address: {address!r}")
    host, port = address[0], address[1]
    try:
        packed = ipaddress.IPv6Address(str(host).split("%", 1)[0]).packed
    except ValueError as exc:
        raise ValueError(f"not an IPv6 address: {host!r}") from exc
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    w.push_bytes(packed)
    w.push_uint16(port)


def pull_address6(b: Buffer) -> Address:
    """``address6`` -> the 4-tuple Python's AF_INET6 sockets report, as the stack's
    sockets report it (link-local with scope 1, mapped addresses dotted)."""
    ip = ipaddress.IPv6Address(b.pull_bytes(16, "address6"))
    return format_address6(ip, b.pull_uint16("port"))


def pull_ip(b: Buffer) -> str:
    return str(ipaddress.IPv4Address(b.pull_bytes(4, "ipv4 address")))


def push_ip(w: Writer, ip: str) -> None:
    w.push_bytes(ipaddress.IPv4Address(ip).packed)


def pull_ip6(b: Buffer) -> str:
    return str(ipaddress.IPv6Address(b.pull_bytes(16, "ipv6 address")))


def push_ip6(w: Writer, ip: str) -> None:
    w.push_bytes(ipaddress.IPv6Address(ip).packed)


# --------------------------------------------------------------------------------------------
# Fields: how one attribute goes on the wire and comes back, with its checks.  A reader
# raises ValueError for a bad value; Body.decode turns it into MalformedMessage naming the
# body ("SOCKET_RECV: max_bytes 99999999 exceeds 262144").


@dataclass(frozen=True, slots=True)
class Field:
    attr: str
    push: Callable[[Writer, Any], None]
    pull: Callable[[Buffer], Any]


def u8(attr: str, label: str | None = None) -> Field:
    what = label or attr
    return Field(attr, lambda w, v: w.push_uint8(v), lambda b: b.pull_uint8(what))


def u16(attr: str, label: str | None = None) -> Field:
    what = label or attr
    return Field(attr, lambda w, v: w.push_uint16(v), lambda b: b.pull_uint16(what))


def u32(attr: str, label: str | None = None) -> Field:
    what = label or attr
    return Field(attr, lambda w, v: w.push_uint32(v), lambda b: b.pull_uint32(what))


def u64(attr: str, label: str | None = None) -> Field:
    what = label or attr
    return Field(attr, lambda w, v: w.push_uint64(v), lambda b: b.pull_uint64(what))


def at_most(field: Field, limit: int, text: str) -> Field:
    """``field`` whose value must be <= ``limit`` (``text`` formats the complaint)."""
    def pull(b: Buffer) -> Any:
        value = field.pull(b)
        if value > limit:
            raise ValueError(text.format(value=value, limit=limit))
        return value

    return Field(field.attr, field.push, pull)


def i32(attr: str) -> Field:
    """A signed 32-bit value carried as its two's complement u32."""
    def pull(b: Buffer) -> int:
        raw = b.pull_uint32(attr)
        return raw - (1 << 32) if raw & 0x80000000 else raw

    return Field(attr, lambda w, v: w.push_uint32(v & 0xFFFFFFFF), pull)


def send_flags() -> Field:
    def pull(b: Buffer) -> SendFlags:
        flags = b.pull_uint8("flags")
        if flags & ~int(SendFlags.ALL):
            raise ValueError(f"unknown flags 0x{flags:02x}")
        return SendFlags(flags)

    return Field("flags", lambda w, v: w.push_uint8(v), pull)


# SOCKET_CREATE's kind byte: the low nibble is the SocketKind, this bit asks for the same
# kind over AF_INET6 (0x11 TCP6, 0x12 UDP6).  A bit rather than a new field keeps every
# IPv4 CREATE byte for byte what it was.
FAMILY6_BIT = 0x10


def kind_byte(kind: SocketKind, family: int) -> int:
    return int(kind) | (FAMILY6_BIT if family == AF_INET6 else 0)


def address(attr: str = "address") -> Field:
    return Field(attr, push_address, pull_address)


def address6(attr: str = "address") -> Field:
    return Field(attr, push_address6, pull_address6)


def ipv4(attr: str) -> Field:
    return Field(attr, push_ip, pull_ip)


def ipv6(attr: str) -> Field:
    return Field(attr, push_ip6, pull_ip6)


def rest(attr: str, limit: int) -> Field:
    """The rest of the body (must come last), at most ``limit`` bytes."""
    def pull(b: Buffer) -> bytes:
        data = b.pull_rest()
        if len(data) > limit:
            raise ValueError(f"{attr} of {len(data)} bytes exceeds {limit}")
        return data

    return Field(attr, lambda w, v: w.push_bytes(v), pull)


def hostname() -> Field:
    """u8 length + ASCII, 1..MAX_NAME."""
    def pull(b: Buffer) -> str:
        raw = b.pull_vector(1, "name")
        if not raw or len(raw) > MAX_NAME:
            raise ValueError(f"name length {len(raw)} not in 1..{MAX_NAME}")
        return raw.decode("ascii")

    return Field("hostname", lambda w, v: w.push_vector(1, v.encode("ascii")), pull)


SOCK = u32("sock")
TIMEOUT = u32("timeout_ms", "timeout")


# --------------------------------------------------------------------------------------------
# Bodies.  Each has encode() -> bytes and decode(body) -> instance (MalformedMessage on error).

B = TypeVar("B", bound="Body")


class Body:
    """Base of every body: its ``layout`` in order, and a strict decode that insists on
    consuming every byte."""

    __slots__ = ()
    name: ClassVar[str] = "body"
    layout: ClassVar[tuple[Field, ...]] = ()

    def _push(self, w: Writer) -> None:
        for field in self.layout:
            field.push(w, getattr(self, field.attr))

    @classmethod
    def _pull(cls: type[B], b: Buffer) -> B:
        return cls(**{field.attr: field.pull(b) for field in cls.layout})

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


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest(Body):
    """SOCKET_CREATE: kind u8 (1 TCP, 2 UDP, 3 ICMP ping; | 0x10: over AF_INET6).

    The decoder accepts 0x13 (ICMP over IPv6) as a well-formed request: netd refuses
    it with EAFNOSUPPORT, which says more than "malformed" (NET_PING6 is the way)."""

    name: ClassVar[str] = "SOCKET_CREATE"
    kind: SocketKind
    family: int = AF_INET

    def _push(self, w: Writer) -> None:
        if self.family not in (AF_INET, AF_INET6):
            raise ValueError(f"address family {self.family} has no kind bit")
        w.push_uint8(kind_byte(self.kind, self.family))

    @classmethod
    def _pull(cls, b: Buffer) -> CreateRequest:
        raw = b.pull_uint8("kind")
        family = AF_INET6 if raw & FAMILY6_BIT else AF_INET
        try:
            kind = SocketKind(raw & ~FAMILY6_BIT)
        except ValueError:
            raise ValueError(f"unknown socket kind 0x{raw:02x}") from None
        return cls(kind=kind, family=family)


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketRef(Body):
    """sock u32: CLOSE, GETSOCKNAME, GETPEERNAME, GET_ERROR requests; CREATE reply."""

    name: ClassVar[str] = "socket reference"
    layout: ClassVar[tuple[Field, ...]] = (SOCK,)
    sock: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressBody(Body):
    """ipv4 4 bytes + port u16: BIND/GETSOCKNAME/GETPEERNAME replies."""

    name: ClassVar[str] = "address"
    layout: ClassVar[tuple[Field, ...]] = (address(),)
    address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class BindRequest(Body):
    """SOCKET_BIND: sock u32, address (6)."""

    name: ClassVar[str] = "SOCKET_BIND"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, address())
    sock: int
    address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest(Body):
    """SOCKET_CONNECT: sock u32, timeout_ms u32, address (6)."""

    name: ClassVar[str] = "SOCKET_CONNECT"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT, address())
    sock: int
    timeout_ms: int
    address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenRequest(Body):
    """SOCKET_LISTEN: sock u32, backlog u16."""

    name: ClassVar[str] = "SOCKET_LISTEN"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, u16("backlog"))
    sock: int
    backlog: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitRequest(Body):
    """sock u32, timeout_ms u32: ACCEPT and CONNECT-less waits."""

    name: ClassVar[str] = "SOCKET_ACCEPT"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT)
    sock: int
    timeout_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptReply(Body):
    """SOCKET_ACCEPT reply: new sock u32, peer address (6)."""

    name: ClassVar[str] = "SOCKET_ACCEPT reply"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, address())
    sock: int
    address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest(Body):
    """SOCKET_SEND: sock u32, timeout_ms u32, flags u8, data (rest, <= MAX_DATA)."""

    name: ClassVar[str] = "SOCKET_SEND"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT, send_flags(), rest("data", MAX_DATA))
    sock: int
    timeout_ms: int
    flags: SendFlags
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToRequest(Body):
    """SOCKET_SENDTO: sock u32, timeout_ms u32, flags u8, address (6), data (rest)."""

    name: ClassVar[str] = "SOCKET_SENDTO"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT, send_flags(), address(),
                                           rest("data", MAX_DATA))
    sock: int
    timeout_ms: int
    flags: SendFlags
    address: Address
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CountBody(Body):
    """count u32: SEND/SENDTO replies (bytes queued)."""

    name: ClassVar[str] = "count"
    layout: ClassVar[tuple[Field, ...]] = (u32("count"),)
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecvRequest(Body):
    """SOCKET_RECV / SOCKET_RECVFROM: sock u32, timeout_ms u32, max_bytes u32."""

    name: ClassVar[str] = "SOCKET_RECV"
    layout: ClassVar[tuple[Field, ...]] = (
        SOCK, TIMEOUT, at_most(u32("max_bytes"), MAX_DATA, "max_bytes {value} exceeds {limit}"))
    sock: int
    timeout_ms: int
    max_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecvFromReply(Body):
    """SOCKET_RECVFROM reply: address (6), data (rest)."""

    name: ClassVar[str] = "SOCKET_RECVFROM reply"
    layout: ClassVar[tuple[Field, ...]] = (address(), rest("data", MAX_DATA))
    address: Address
    data: bytes


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
    layout: ClassVar[tuple[Field, ...]] = (SOCK, at_most(u8("how"), 2, "how {value} not in 0..2"))
    sock: int
    how: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSockOptRequest(Body):
    """SOCKET_SETSOCKOPT: sock u32, option u16 (SockOpt), value i32 — or, for the options
    in STRUCT_OPTIONS, the option's struct (1..64 bytes, the rest of the body) as ``data``."""

    name: ClassVar[str] = "SOCKET_SETSOCKOPT"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, u16("option"), i32("value"))
    sock: int
    option: int
    value: int = 0
    data: bytes | None = None

    def _push(self, w: Writer) -> None:
        w.push_uint32(self.sock)
        w.push_uint16(self.option)
        if self.option in STRUCT_OPTIONS:
            w.push_bytes(self.data or b"")
        else:
            w.push_uint32(self.value & 0xFFFFFFFF)

    @classmethod
    def _pull(cls, b: Buffer) -> SetSockOptRequest:
        sock = b.pull_uint32("sock")
        option = b.pull_uint16("option")
        if option not in STRUCT_OPTIONS:
            return cls(sock=sock, option=option, value=cls.layout[2].pull(b))
        data = b.pull_rest()
        if not 1 <= len(data) <= MAX_OPTION_STRUCT:
            raise MalformedMessage(f"SOCKET_SETSOCKOPT: a {len(data)}-byte option value "
                                   f"(1..{MAX_OPTION_STRUCT})")
        return cls(sock=sock, option=option, data=data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrnoBody(Body):
    """SOCKET_GET_ERROR reply: errno u16 (0 = none pending)."""

    name: ClassVar[str] = "SOCKET_GET_ERROR reply"
    layout: ClassVar[tuple[Field, ...]] = (u16("errno"),)
    errno: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveRequest(Body):
    """DNS_RESOLVE: timeout_ms u32, name (u8 length + ASCII, <= 253)."""

    name: ClassVar[str] = "DNS_RESOLVE"
    layout: ClassVar[tuple[Field, ...]] = (TIMEOUT, hostname())
    timeout_ms: int
    hostname: str


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


# DNS_RESOLVE_ALL's family bits, and the family byte in front of each address of its reply.
WANT_A = 0x01
WANT_AAAA = 0x02
FAMILY_TAG4 = 4
FAMILY_TAG6 = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveAllRequest(Body):
    """DNS_RESOLVE_ALL: timeout_ms u32, families u8 (0x01 A, 0x02 AAAA), name (u8 length +
    ASCII, <= 253)."""

    name: ClassVar[str] = "DNS_RESOLVE_ALL"
    layout: ClassVar[tuple[Field, ...]] = (TIMEOUT, u8("families"), hostname())
    timeout_ms: int
    families: int
    hostname: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveAllReply(Body):
    """DNS_RESOLVE_ALL reply: count u8, then count x (family u8: 4 or 6, then 4 or 16
    address bytes), in the order a connect should try them."""

    name: ClassVar[str] = "DNS_RESOLVE_ALL reply"
    addresses: tuple[str, ...]  # IPv4 dotted quads and IPv6 texts, mixed

    def _push(self, w: Writer) -> None:
        addresses = self.addresses[:MAX_ADDRESSES]
        w.push_uint8(len(addresses))
        for text in addresses:
            ip = ipaddress.ip_address(text)
            w.push_uint8(FAMILY_TAG6 if ip.version == 6 else FAMILY_TAG4)
            w.push_bytes(ip.packed)

    @classmethod
    def _pull(cls, b: Buffer) -> ResolveAllReply:
        count = b.pull_uint8("count")
        if count > MAX_ADDRESSES:
            raise MalformedMessage(f"DNS_RESOLVE_ALL reply: {count} addresses > "
                                   f"{MAX_ADDRESSES}")
        addresses = []
        for _ in range(count):
            tag = b.pull_uint8("family")
            if tag == FAMILY_TAG4:
                addresses.append(pull_ip(b))
            elif tag == FAMILY_TAG6:
                addresses.append(ip6_text(ipaddress.IPv6Address(b.pull_bytes(16, "ipv6"))))
            else:
                raise ValueError(f"unknown address family tag {tag}")
        return cls(addresses=tuple(addresses))


@dataclass(frozen=True, slots=True, kw_only=True)
class PingRequest(Body):
    """PING: destination ipv4 (4), seq u16, timeout_ms u32, payload (rest, <= 65499)."""

    name: ClassVar[str] = "PING"
    layout: ClassVar[tuple[Field, ...]] = (ipv4("destination"), u16("seq"), TIMEOUT,
                                           rest("payload", MAX_PING_PAYLOAD))
    destination: str
    seq: int
    timeout_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReply(Body):
    """PING reply: source ipv4 (4), seq u16, ttl u8, rtt_ns u64, size u32 (ICMP bytes)."""

    name: ClassVar[str] = "PING reply"
    layout: ClassVar[tuple[Field, ...]] = (ipv4("source"), u16("seq"), u8("ttl"),
                                           u64("rtt_ns", "rtt"), u32("size"))
    source: str
    seq: int
    ttl: int
    rtt_ns: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping6Request(Body):
    """PING6: destination ipv6 (16), seq u16, timeout_ms u32, payload (rest, <= 65527)."""

    name: ClassVar[str] = "PING6"
    layout: ClassVar[tuple[Field, ...]] = (ipv6("destination"), u16("seq"), TIMEOUT,
                                           rest("payload", MAX_PING6_PAYLOAD))
    destination: str
    seq: int
    timeout_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping6Reply(Body):
    """PING6 reply: source ipv6 (16), seq u16, hop_limit u8, rtt_ns u64, size u32."""

    name: ClassVar[str] = "PING6 reply"
    layout: ClassVar[tuple[Field, ...]] = (ipv6("source"), u16("seq"), u8("hop_limit"),
                                           u64("rtt_ns", "rtt"), u32("size"))
    source: str
    seq: int
    hop_limit: int
    rtt_ns: int
    size: int


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


# --------------------------------------------------------------------------------------------
# AF_INET6 twins.  A socket made with the 0x10 kind bit carries ``address6`` (16 + 2 bytes)
# wherever an IPv4 one carries ``address`` (6): the layouts are otherwise the same, so each
# twin subclasses its IPv4 body and only swaps the field.  Neither side needs a family
# byte per message: both know the socket's family from its CREATE (netd looks the id up
# first -- it leads every one of these requests -- and the client remembers it).


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressBody6(AddressBody):
    """address6 (18): BIND/GETSOCKNAME/GETPEERNAME replies of an AF_INET6 socket."""

    name: ClassVar[str] = "address6"
    layout: ClassVar[tuple[Field, ...]] = (address6(),)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindRequest6(BindRequest):
    """SOCKET_BIND of an AF_INET6 socket: sock u32, address6 (18)."""

    name: ClassVar[str] = "SOCKET_BIND (IPv6)"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, address6())


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest6(ConnectRequest):
    """SOCKET_CONNECT of an AF_INET6 socket: sock u32, timeout_ms u32, address6 (18)."""

    name: ClassVar[str] = "SOCKET_CONNECT (IPv6)"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT, address6())


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptReply6(AcceptReply):
    """SOCKET_ACCEPT reply of an AF_INET6 listener: new sock u32, peer address6 (18)."""

    name: ClassVar[str] = "SOCKET_ACCEPT reply (IPv6)"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, address6())


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToRequest6(SendToRequest):
    """SOCKET_SENDTO of an AF_INET6 socket: sock, timeout_ms, flags, address6 (18), data."""

    name: ClassVar[str] = "SOCKET_SENDTO (IPv6)"
    layout: ClassVar[tuple[Field, ...]] = (SOCK, TIMEOUT, send_flags(), address6(),
                                           rest("data", MAX_DATA))


@dataclass(frozen=True, slots=True, kw_only=True)
class RecvFromReply6(RecvFromReply):
    """SOCKET_RECVFROM reply of an AF_INET6 socket: address6 (18), data (rest)."""

    name: ClassVar[str] = "SOCKET_RECVFROM reply (IPv6)"
    layout: ClassVar[tuple[Field, ...]] = (address6(), rest("data", MAX_DATA))


_TWINS6: dict[type[Body], type[Body]] = {
    AddressBody: AddressBody6,
    BindRequest: BindRequest6,
    ConnectRequest: ConnectRequest6,
    AcceptReply: AcceptReply6,
    SendToRequest: SendToRequest6,
    RecvFromReply: RecvFromReply6,
}


def for_family(body: type[B], family: int) -> type[B]:
    """The layout of ``body`` for a socket of ``family``: itself for AF_INET, its
    ``address6`` twin for AF_INET6 (a body without an address is the same for both)."""
    if family != AF_INET6:
        return body
    twin = _TWINS6.get(body, body)
    assert issubclass(twin, body)  # a twin subclasses its IPv4 body: a programming fact
    return twin
