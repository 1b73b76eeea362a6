"""DHCP messages (RFC 2131 section 2, options from RFC 2132): bytes <-> :class:`DhcpMessage`.

The fixed BOOTP part is 236 bytes, then the magic cookie 99.130.83.99 and the options.
Options are kept in order as ``(code, data)`` pairs so that unknown ones survive a
round trip; the accessors on :class:`DhcpMessage` decode the few a client needs.
Option overload (52: options continued in ``sname``/``file``) is not followed: a server
sends it only when the options field is full, which never happens for the handful of
options a client asks for.

Untrusted input goes through :func:`parse_dhcp`, which raises :class:`DhcpFormatError`
(a :class:`~vipernet.errors.ProtocolError`) naming the field and the violated condition.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from vipernet.errors import ProtocolError, UsageError

MAGIC_COOKIE = b"\x63\x82\x53\x63"
FIXED_LENGTH = 236  # op .. file, before the magic cookie
MIN_MESSAGE = FIXED_LENGTH + len(MAGIC_COOKIE)
MAX_UDP_PAYLOAD = 65507  # the cap on input: no datagram is larger
BOOTP_MIN_PAYLOAD = 300  # some relays drop shorter BOOTP packets: pad what we send
FLAG_BROADCAST = 0x8000

_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_ZERO_IP = IPv4Address(0)


class DhcpError(ProtocolError):
    """Root of the DHCP errors."""


class DhcpFormatError(DhcpError):
    """Bytes that are not a well-formed DHCP message: ``"dhcp: FIELD=VALUE violates COND"``."""

    def __init__(self, field_name: str, value: object, reason: str) -> None:
        self.field = field_name
        self.value = value
        self.reason = reason
        super().__init__(f"dhcp: {field_name}={value} violates {reason}")


class DhcpUsageError(UsageError, ValueError):
    """A message that cannot be encoded (a local bug)."""


class Op(enum.IntEnum):
    BOOTREQUEST = 1
    BOOTREPLY = 2


class MessageType(enum.IntEnum):
    """Option 53 (RFC 2132 section 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class OptionCode(enum.IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    INTERFACE_MTU = 26
    BROADCAST_ADDRESS = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58  # T1
    REBINDING_TIME = 59  # T2
    CLIENT_ID = 61
    END = 255


Option = tuple[int, bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpMessage:
    """One DHCP message; ``options`` in wire order, unknown codes kept."""

    op: Op | int
    xid: int
    chaddr: bytes  # the client's hardware address (6 bytes for Ethernet)
    htype: int = 1  # Ethernet
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO_IP
    yiaddr: IPv4Address = _ZERO_IP
    siaddr: IPv4Address = _ZERO_IP
    giaddr: IPv4Address = _ZERO_IP
    sname: bytes = b""
    file: bytes = b""
    options: tuple[Option, ...] = field(default=())

    # -- option accessors ---------------------------------------------------------------------

    def option(self, code: int) -> bytes | None:
        """The data of the first option ``code`` (RFC 3396 concatenation is not needed here)."""
        for c, data in self.options:
            if c == code:
                return data
        return None

    @property
    def message_type(self) -> MessageType | int | None:
        data = self.option(OptionCode.MESSAGE_TYPE)
        if data is None or len(data) != 1:
            return None
        try:
            return MessageType(data[0])
        except ValueError:
            return data[0]

    def address_option(self, code: int) -> IPv4Address | None:
        data = self.option(code)
        if data is None or len(data) != 4:
            return None
        return IPv4Address(data)

    def address_list_option(self, code: int) -> tuple[IPv4Address, ...]:
        data = self.option(code)
        if not data or len(data) % 4:
            return ()
        return tuple(IPv4Address(data[i:i + 4]) for i in range(0, len(data), 4))

    def seconds_option(self, code: int) -> int | None:
        data = self.option(code)
        if data is None or len(data) != 4:
            return None
        return int.from_bytes(data, "big")


def parse_dhcp(data: bytes | bytearray | memoryview) -> DhcpMessage:
    """Decode one DHCP message (the UDP payload); :class:`DhcpFormatError` if malformed."""
    have = len(data)
    if have < MIN_MESSAGE:
        raise DhcpFormatError("length", have, f"length >= {MIN_MESSAGE}")
    if have > MAX_UDP_PAYLOAD:
        raise DhcpFormatError("length", have, f"length <= {MAX_UDP_PAYLOAD}")
    raw = bytes(data)
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = _FIXED.unpack_from(raw)
    if op not in (Op.BOOTREQUEST, Op.BOOTREPLY):
        raise DhcpFormatError("op", op, "op in (1, 2)")
    if hlen > 16:
        raise DhcpFormatError("hlen", hlen, "hlen <= 16")
    if raw[FIXED_LENGTH:MIN_MESSAGE] != MAGIC_COOKIE:
        raise DhcpFormatError("cookie", raw[FIXED_LENGTH:MIN_MESSAGE].hex(), "cookie == 63825363")
    options = _parse_options(raw, MIN_MESSAGE)
    return DhcpMessage(
        op=Op(op), xid=xid, chaddr=chaddr[:hlen], htype=htype, hops=hops, secs=secs,
        flags=flags, ciaddr=IPv4Address(ciaddr), yiaddr=IPv4Address(yiaddr),
        siaddr=IPv4Address(siaddr), giaddr=IPv4Address(giaddr),
        sname=sname.rstrip(b"\0"), file=file.rstrip(b"\0"), options=options)


def _parse_options(raw: bytes, start: int) -> tuple[Option, ...]:
    options: list[Option] = []
    i = start
    end = len(raw)
    while i < end:
        code = raw[i]
        if code == OptionCode.PAD:
            i += 1
            continue
        if code == OptionCode.END:
            return tuple(options)
        if i + 1 >= end:
            raise DhcpFormatError("option", code, "a length byte follows the option code")
        length = raw[i + 1]
        if i + 2 + length > end:
            raise DhcpFormatError(f"option[{code}].length", length,
                                  f"length <= remaining bytes ({end - i - 2})")
        options.append((code, raw[i + 2:i + 2 + length]))
        i += 2 + length
    raise DhcpFormatError("options", "no END", "options end with option 255")


def build_dhcp(message: DhcpMessage, *, pad_to: int = BOOTP_MIN_PAYLOAD) -> bytes:
    """Encode ``message``; padded with zeros to ``pad_to`` bytes (BOOTP's 300 by default)."""
    if len(message.chaddr) > 16:
        raise DhcpUsageError("dhcp: chaddr longer than 16 bytes")
    if len(message.sname) > 64 or len(message.file) > 128:
        raise DhcpUsageError("dhcp: sname > 64 or file > 128 bytes")
    try:
        fixed = _FIXED.pack(
            int(message.op), message.htype, len(message.chaddr), message.hops, message.xid,
            message.secs, message.flags, message.ciaddr.packed, message.yiaddr.packed,
            message.siaddr.packed, message.giaddr.packed, message.chaddr, message.sname,
            message.file)
    except struct.error as exc:
        raise DhcpUsageError(f"dhcp: field out of range: {exc}") from None
    parts = [fixed, MAGIC_COOKIE]
    for code, data in message.options:
        if not 0 < code < 255:
            raise DhcpUsageError(f"dhcp: option code {code} is not 1..254")
        if len(data) > 255:
            raise DhcpUsageError(f"dhcp: option {code} data of {len(data)} bytes > 255")
        parts.append(bytes((code, len(data))) + data)
    parts.append(bytes((OptionCode.END,)))
    out = b"".join(parts)
    if len(out) < pad_to:
        out += bytes(pad_to - len(out))
    return out


def u32(value: int) -> bytes:
    """A 32-bit option value (lease time, T1, T2)."""
    return value.to_bytes(4, "big")
