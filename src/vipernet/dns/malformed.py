"""Why a DNS reply does not parse, in words a user understands.

dnspython rejects a broken message with a generic error; :func:`diagnose` walks the raw
bytes itself (header counts, names with their compression pointers, RDLENGTHs) to say
where it breaks (a pointer loop, an RDLENGTH past the end...), and
:func:`bad_address_length` finds an A/AAAA record of the wrong size.  Both read no further
than the data and never raise.  Used by :mod:`vipernet.dns.query`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.rdataclass
import dns.rdatatype

A = int(dns.rdatatype.A)
AAAA = int(dns.rdatatype.AAAA)
HEADER_SIZE = 12
# RDLENGTH an address record must have (RFC 1035 3.4.1: A is 4 bytes; RFC 3596 2.2: AAAA 16).
ADDRESS_RDLENGTH = {A: 4, AAAA: 16}
_COUNTS = struct.Struct(">4H")  # QDCOUNT ANCOUNT NSCOUNT ARCOUNT, after id and flags
_RR_FIXED = struct.Struct(">HHIH")  # TYPE CLASS TTL RDLENGTH, after the owner name
MAX_NAME = 255  # RFC 1035 3.1: a name's wire length
# Why a reply does not parse: counter suffix (``malformed.KIND``) -> what the user is told.
MALFORMED_KINDS = {
    "short_header": "shorter than a DNS header",
    "truncated": "cut short",
    "counts": "record counts larger than the message",
    "rdlength": "RDLENGTH past the end",
    "address_length": "A/AAAA record with a wrong RDLENGTH",
    "pointer_loop": "compression pointer loop",
    "pointer_past_end": "compression pointer past the end",
    "pointer_forward": "compression pointer points forward",
    "label": "bad label",
    "other": "corrupt",
}


@dataclass(frozen=True, slots=True)
class Malformation:
    """Why a reply does not parse: ``kind`` (a key of :data:`MALFORMED_KINDS`, counted as
    ``malformed.KIND``) and ``reason``, in words for the user."""

    kind: str
    reason: str


class BadLength(tuple[int, int]):
    """(rdtype, rdlength) of an address record whose RDLENGTH is wrong for its type."""

    __slots__ = ()


def bad_address_length(data: bytes) -> BadLength | None:
    """The first IN A/AAAA record whose RDLENGTH is not 4/16, found by walking the records.

    dnspython rejects such a message with a generic FormError; this walk only names the
    record.  It reads no further than the data and gives up (None) on anything odd, so a
    reply cut short is never reported as a bad length.
    """
    if len(data) < HEADER_SIZE:
        return None
    qdcount, ancount, nscount, arcount = _COUNTS.unpack_from(data, 4)
    pos = HEADER_SIZE
    try:
        for _ in range(qdcount):
            pos = _skip_name(data, pos) + 4  # QTYPE, QCLASS
        for _ in range(ancount + nscount + arcount):
            pos = _skip_name(data, pos)
            rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
            pos += _RR_FIXED.size
            expected = ADDRESS_RDLENGTH.get(rtype)
            if expected is not None and rclass == dns.rdataclass.IN and rdlength != expected:
                return BadLength((rtype, rdlength))
            pos += rdlength
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _skip_name(data: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) name at ``pos`` (RFC 1035 4.1.4)."""
    while True:
        length = data[pos]
        if length & 0xC0 == 0xC0:  # a pointer ends the name in this place
            if pos + 2 > len(data):
                raise IndexError("name pointer cut short")
            return pos + 2
        if length & 0xC0:
            raise ValueError("reserved label type")
        if length == 0:
            return pos + 1
        pos += 1 + length


class _Broken(Exception):
    """Raised inside :func:`diagnose`'s walk: where the message breaks, and why."""

    def __init__(self, kind: str, reason: str | None = None) -> None:
        super().__init__(kind)
        self.malformation = Malformation(kind, reason or MALFORMED_KINDS[kind])


def diagnose(data: bytes, failure: Exception | None = None) -> Malformation:
    """Why ``data`` (a reply dnspython would not parse, ``failure`` its exception) is not
    a DNS message, found by walking it as RFC 1035 4.1 lays it out.

    The first fault met names the reply: a length field (RDLENGTH, a label's) that
    reaches past the end of the data, a compression pointer that loops, points past the
    end or forward, a reserved label type or a name over 255 bytes, a message that ends
    where a field should be (cut short) or after a whole record while the header announces
    more (record counts larger than the message).  If the structure holds, dnspython's
    complaint was about a record's data: ``other``.
    """
    if len(data) < HEADER_SIZE:
        return Malformation("short_header", MALFORMED_KINDS["short_header"])
    counts = _COUNTS.unpack_from(data, 4)
    pos = HEADER_SIZE
    try:
        for _ in range(counts[0]):
            pos = _walk_name(data, pos)
            pos = _take(data, pos, 4)  # QTYPE, QCLASS
        for _ in range(sum(counts[1:])):
            pos = _walk_name(data, pos)
            pos = _take(data, pos, _RR_FIXED.size)
            rtype, _class, _ttl, rdlength = _RR_FIXED.unpack_from(data, pos - _RR_FIXED.size)
            if pos + rdlength > len(data):
                if ADDRESS_RDLENGTH.get(rtype) == rdlength:  # the right size: the data is cut
                    raise _Broken("truncated")
                raise _Broken("rdlength", f"RDLENGTH {rdlength} past the end")
            pos += rdlength
    except _Broken as broken:
        return broken.malformation
    detail = str(failure).rstrip(".") if failure is not None else ""
    if not detail or type(failure) is dns.exception.FormError:
        detail = "corrupt record data"  # dnspython's catch-all "DNS message is malformed"
    return Malformation("other", detail)


def _take(data: bytes, pos: int, size: int) -> int:
    """The offset after the ``size`` bytes of fixed fields at ``pos``."""
    if pos + size <= len(data):
        return pos + size
    raise _Broken("truncated")


def _walk_name(data: bytes, pos: int) -> int:
    """The offset just past the name at ``pos``, following its compression pointers
    (RFC 1035 4.1.4) to check all of it; raises :class:`_Broken` where it breaks."""
    end: int | None = None  # where the name ends in place (after its first pointer)
    visited: set[int] = set()  # every offset this name was read from
    limit = pos  # a pointer must point before this (before the name, or the last target)
    forward = False
    wire_length = 0
    at = pos
    while True:
        if at >= len(data):
            # Ending just before a name that starts a question or record: a whole entry
            # the header counts is missing.
            raise _Broken("counts" if at == pos == len(data) else "truncated")
        visited.add(at)
        length = data[at]
        if length & 0xC0 == 0xC0:
            if at + 2 > len(data):
                raise _Broken("truncated")
            target = int.from_bytes(data[at:at + 2], "big") & 0x3FFF
            if end is None:
                end = at + 2
            if target >= len(data):
                raise _Broken("pointer_past_end",
                              f"compression pointer to offset {target}, past the end")
            if target in visited:
                raise _Broken("pointer_loop")
            forward = forward or target >= limit
            limit = at = target
            continue
        if length & 0xC0:
            raise _Broken("label", f"bad label (type 0x{length & 0xC0:02x})")
        wire_length += 1 + length
        if wire_length > MAX_NAME:
            raise _Broken("label", f"bad label (name longer than {MAX_NAME} bytes)")
        if length == 0:
            if forward:  # a name that ends, but read from later in the message
                raise _Broken("pointer_forward")
            return end if end is not None else at + 1
        if at + 1 + length > len(data):
            raise _Broken("label", f"bad label (length {length} past the end)")
        at += 1 + length
