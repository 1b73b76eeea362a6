"""Neighbor Discovery options (RFC 4861 4.6, RFC 8106): the TLVs after an NDP message.

Every option is a type octet, a length octet in units of 8 bytes (so at least 8 bytes
and always 8-aligned), and data.  A length of 0 makes the whole message invalid (RFC 4861
4.6: a receiver cannot step past it), and so does an option running past the message;
both raise :class:`WireError`.  So does a known option whose length cannot hold its
fixed fields (a Prefix Information other than 32 bytes, an MTU other than 8, an RDNSS of
even length or under 24): decoding its fields from the wrong bytes would be worse.

Unknown options - DNSSL (31, RFC 8106) among them, whose domain-name lists the stack
does not use - are kept as :class:`RawNdpOption`, never dropped, as RFC 4861 asks
("MUST silently ignore any options they do not recognize and continue").
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import TypeVar

from vipernet.wire.errors import WireError, WireUsageError

Bytes = bytes | bytearray | memoryview

_PREFIX = struct.Struct("!BBBBIII16s")  # type, len, prefix len, L/A flags, valid, preferred
_L_FLAG, _A_FLAG = 0x80, 0x40
MAX_OPTION_LENGTH = 255 * 8

T = TypeVar("T")


class NdpOptionType(enum.IntEnum):
    SOURCE_LINK_LAYER_ADDRESS = 1
    TARGET_LINK_LAYER_ADDRESS = 2
    PREFIX_INFORMATION = 3
    REDIRECTED_HEADER = 4
    MTU = 5
    NONCE = 14  # RFC 3971/7527: Linux sends one in DAD probes; kept as RawNdpOption
    RDNSS = 25
    DNSSL = 31


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLinkLayerAddress:
    address: bytes  # the option's data: 6 bytes (a MAC) on Ethernet


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetLinkLayerAddress:
    address: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixInformation:
    prefix_length: int
    on_link: bool  # L
    autonomous: bool  # A: usable for SLAAC (RFC 4862)
    valid_lifetime: int  # seconds; 0xFFFFFFFF is infinity
    preferred_lifetime: int
    prefix: IPv6Address
    other_flags: int = 0  # the six low flag bits (e.g. RFC 6275's R), kept as sent

    @property
    def network(self) -> IPv6Network:
        return IPv6Network((self.prefix, self.prefix_length), strict=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectedHeader:
    quoted: bytes  # the start of the redirected packet, from its IPv6 header (+ zero padding)


@dataclass(frozen=True, slots=True, kw_only=True)
class MtuOption:
    mtu: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecursiveDnsServer:
    lifetime: int  # seconds; 0xFFFFFFFF is infinity, 0 withdraws the servers
    servers: tuple[IPv6Address, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RawNdpOption:
    type: int
    data: bytes  # after the type and length octets


NdpOption = (
    SourceLinkLayerAddress
    | TargetLinkLayerAddress
    | PrefixInformation
    | RedirectedHeader
    | MtuOption
    | RecursiveDnsServer
    | RawNdpOption
)


def _bad(field: str, value: object, reason: str) -> WireError:
    return WireError("ndp", field, value, reason)


def parse_ndp_options(data: Bytes) -> tuple[NdpOption, ...]:
    """Every option in ``data`` (which must be exactly a sequence of options)."""
    view = memoryview(data)
    options: list[NdpOption] = []
    i, end = 0, len(view)
    while i < end:
        if end - i < 2:
            raise _bad("option_length", end - i, "option header fits (2 bytes)")
        kind, units = view[i], view[i + 1]
        if units == 0:
            raise _bad("option_length", 0, f"option {kind} length > 0 (RFC 4861 4.6)")
        size = units * 8
        if size > end - i:
            raise _bad("option_length", size, f"option {kind} length <= {end - i} left")
        options.append(_parse_one(kind, view[i : i + size]))
        i += size
    return tuple(options)


def _parse_one(kind: int, raw: memoryview) -> NdpOption:
    size = len(raw)
    if kind == NdpOptionType.SOURCE_LINK_LAYER_ADDRESS:
        return SourceLinkLayerAddress(address=bytes(raw[2:]))
    if kind == NdpOptionType.TARGET_LINK_LAYER_ADDRESS:
        return TargetLinkLayerAddress(address=bytes(raw[2:]))
    if kind == NdpOptionType.PREFIX_INFORMATION:
        if size != _PREFIX.size:
            raise _bad("prefix_information_length", size, f"length == {_PREFIX.size}")
        _, _, plen, flags, valid, preferred, _res, prefix = _PREFIX.unpack_from(raw)
        if plen > 128:
            raise _bad("prefix_length", plen, "prefix_length <= 128")
        return PrefixInformation(
            prefix_length=plen,
            on_link=bool(flags & _L_FLAG),
            autonomous=bool(flags & _A_FLAG),
            valid_lifetime=valid,
            preferred_lifetime=preferred,
            prefix=IPv6Address(prefix),
            other_flags=flags & 0x3F,
        )
    if kind == NdpOptionType.REDIRECTED_HEADER:
        return RedirectedHeader(quoted=bytes(raw[8:]))
    if kind == NdpOptionType.MTU:
        if size != 8:
            raise _bad("mtu_length", size, "length == 8")
        return MtuOption(mtu=int.from_bytes(raw[4:8], "big"))
    if kind == NdpOptionType.RDNSS:
        if size < 24 or size % 16 != 8:
            raise _bad("rdnss_length", size, "length == 8 + 16 * n, n >= 1 (RFC 8106 5.1)")
        servers = tuple(IPv6Address(bytes(raw[j : j + 16])) for j in range(8, size, 16))
        return RecursiveDnsServer(lifetime=int.from_bytes(raw[4:8], "big"), servers=servers)
    return RawNdpOption(type=kind, data=bytes(raw[2:]))


def build_ndp_options(options: Iterable[NdpOption]) -> bytes:
    return b"".join(build_ndp_option(option) for option in options)


def build_ndp_option(option: NdpOption) -> bytes:
    if isinstance(option, SourceLinkLayerAddress | TargetLinkLayerAddress):
        kind = 1 if isinstance(option, SourceLinkLayerAddress) else 2
        return _tlv(kind, option.address, pad=False)
    if isinstance(option, PrefixInformation):
        if not 0 <= option.prefix_length <= 128 or not 0 <= option.other_flags <= 0x3F:
            raise WireUsageError(f"ndp: bad prefix information {option}")
        flags = option.other_flags
        flags |= (_L_FLAG if option.on_link else 0) | (_A_FLAG if option.autonomous else 0)
        try:
            return _PREFIX.pack(
                3,
                4,
                option.prefix_length,
                flags,
                option.valid_lifetime,
                option.preferred_lifetime,
                0,
                option.prefix.packed,
            )
        except struct.error as exc:
            raise WireUsageError(f"ndp: prefix information field out of range: {exc}") from None
    if isinstance(option, RedirectedHeader):
        return _tlv(4, bytes(6) + option.quoted, pad=True)
    if isinstance(option, MtuOption):
        return _tlv(5, bytes(2) + _u32(option.mtu), pad=False)
    if isinstance(option, RecursiveDnsServer):
        if not option.servers:
            raise WireUsageError("ndp: an RDNSS option needs at least one server")
        data = bytes(2) + _u32(option.lifetime) + b"".join(s.packed for s in option.servers)
        return _tlv(25, data, pad=False)
    return _tlv(option.type, option.data, pad=False)


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise WireUsageError(f"ndp: {value} does not fit 32 bits")
    return value.to_bytes(4, "big")


def _tlv(kind: int, data: bytes, *, pad: bool) -> bytes:
    """Type, length in 8-byte units, data (zero-padded to 8 if ``pad``, else it must fit)."""
    size = 2 + len(data)
    if size % 8:
        if not pad:
            raise WireUsageError(f"ndp: option {kind} of {size} bytes is not a multiple of 8")
        data += bytes(-size % 8)
        size += -size % 8
    if size > MAX_OPTION_LENGTH or not 0 <= kind <= 0xFF:
        raise WireUsageError(f"ndp: option {kind} of {size} bytes does not fit")
    return bytes((kind, size // 8)) + data


def first_option(options: Iterable[NdpOption], kind: type[T]) -> T | None:
    """The first option of class ``kind`` (e.g. ``SourceLinkLayerAddress``), or None."""
    for option in options:
        if isinstance(option, kind):
            return option
    return None
