"""IPv4 options (RFC 791 3.1): validation on receive, and the echo of Record Route and
Timestamp in an echo reply (RFC 1122 3.2.2.6).

The stack acts on no option, but it must not accept a malformed one: Linux drops such a
packet and answers ICMP Parameter Problem pointing at the bad octet
(``ip_options_compile``), and so do we.  :func:`check_options` applies the same rules:

* EOL (0) ends the list, NOP (1) is one octet;
* any other option needs a length octet, at least 2, that does not run past the header;
* Record Route (7), Loose/Strict Source Route (131/137): length >= 3, pointer >= 4;
  Record Route and Timestamp appear at most once, and so does a source route of
  either kind (RFC 791; RFC 1812 5.2.4.1);
* Record Route: a pointer inside the option must leave room for a whole address
  ("some room but not enough ... is considered to be in error", RFC 791);
* Timestamp (68): length >= 4, pointer >= 5, a pointer inside the option leaves room
  for a whole entry (4 octets, 8 with flag 1 or 3), and a full one (pointer past the
  end, flag not 3) may not already count 15 overflowed hops;
* Router Alert (148, RFC 2113): length >= 4.

Like Linux on receive, a Timestamp flag RFC 791 does not define (2, 4-15) and an unknown
option kind are accepted and left alone.  The pointer of the Parameter Problem is the
offending octet's offset from the start of the IP header (so 20 + its offset in the
options).
"""

from __future__ import annotations

EOL = 0
NOP = 1
RECORD_ROUTE = 7
TIMESTAMP = 68
LOOSE_SOURCE_ROUTE = 131
STRICT_SOURCE_ROUTE = 137
ROUTER_ALERT = 148
SOURCE_ROUTES = frozenset((LOOSE_SOURCE_ROUTE, STRICT_SOURCE_ROUTE))
_TS_ONLY, _TS_ADDRESS, _TS_PRESPECIFIED = 0, 1, 3  # the Timestamp flags RFC 791 defines
BASE = 20  # option octets start here in the IP header


class BadOption(Exception):
    """A malformed option; ``pointer`` is the offending octet's offset in the IP header."""

    def __init__(self, pointer: int, reason: str) -> None:
        super().__init__(f"ipv4 option: {reason} (octet {pointer})")
        self.pointer = pointer
        self.reason = reason


def check_options(options: bytes) -> frozenset[int]:
    """The kinds of the options present (EOL and NOP aside); raises :class:`BadOption`
    for the first malformed one, judged as Linux judges them."""
    seen: set[int] = set()
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == EOL:
            break
        if kind == NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise BadOption(BASE + i, f"option {kind} has no length octet")
        length = options[i + 1]
        if length < 2 or i + length > n:
            raise BadOption(BASE + i, f"option {kind} length {length} does not fit")
        _check_one(options[i:i + length], BASE + i, seen)
        seen.add(kind)
        i += length
    return frozenset(seen)


def _check_one(option: bytes, at: int, seen: set[int]) -> None:
    """One option whose length fits; ``at`` is its offset in the IP header.  The order
    of the tests is Linux's, so that a packet with several faults gets the same pointer."""
    kind, length = option[0], len(option)
    if kind in SOURCE_ROUTES:
        _need(length >= 3, at + 1, f"source route length {length} < 3")
        _need(option[2] >= 4, at + 2, f"source route pointer {option[2]} < 4")
        _need(seen.isdisjoint(SOURCE_ROUTES), at, "a second source route")
    elif kind == RECORD_ROUTE:
        _need(kind not in seen, at, "a second record route")
        _need(length >= 3, at + 1, f"record route length {length} < 3")
        pointer = option[2]
        _need(pointer >= 4, at + 2, f"record route pointer {pointer} < 4")
        _need(pointer > length or pointer + 3 <= length, at + 2,
              f"record route pointer {pointer} leaves part of an address in {length}")
    elif kind == TIMESTAMP:
        _need(kind not in seen, at, "a second timestamp")
        _need(length >= 4, at + 1, f"timestamp length {length} < 4")
        pointer, flag = option[2], option[3] & 0x0F
        _need(pointer >= 5, at + 2, f"timestamp pointer {pointer} < 5")
        if pointer <= length:
            entry = 8 if flag in (_TS_ADDRESS, _TS_PRESPECIFIED) else 4
            _need(pointer + entry - 1 <= length, at + 2,
                  f"timestamp pointer {pointer} leaves part of an entry in {length}")
        elif flag != _TS_PRESPECIFIED:
            _need(option[3] >> 4 != 15, at + 3, "timestamp overflow count already 15")
    elif kind == ROUTER_ALERT:
        _need(length >= 4, at + 1, f"router alert length {length} < 4")


def _need(condition: bool, pointer: int, reason: str) -> None:
    if not condition:
        raise BadOption(pointer, reason)


def echo_options(options: bytes, our_ip: bytes, timestamp: int) -> bytes:
    """The options of our echo reply to a request carrying ``options`` (already checked
    by :func:`check_options`): its Record Route and Timestamp options, updated with our
    address / ``timestamp`` where they have room (RFC 1122 3.2.2.6 SHOULD; Linux does the
    same), never truncated; every other option is left out.  Padded with EOL to a
    multiple of 4."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == EOL:
            break
        if kind == NOP:
            i += 1
            continue
        length = options[i + 1]
        option = bytearray(options[i:i + length])
        if kind == RECORD_ROUTE:
            _record_route(option, our_ip)
            out += option
        elif kind == TIMESTAMP:
            _timestamp(option, our_ip, timestamp)
            out += option
        i += length
    out += bytes(-len(out) % 4)
    return bytes(out)


def _record_route(option: bytearray, our_ip: bytes) -> None:
    pointer = option[2]
    if pointer + 3 <= len(option):  # room for one more address; a full route stays as is
        option[pointer - 1:pointer + 3] = our_ip
        option[2] = pointer + 4


def _timestamp(option: bytearray, our_ip: bytes, timestamp: int) -> None:
    pointer, flag = option[2], option[3] & 0x0F
    if pointer > len(option):
        # Full: RFC 791 has each module that cannot record count itself in the overflow
        # nibble (not for prespecified addresses: the list was for others).
        if flag != _TS_PRESPECIFIED and option[3] < 0xF0:
            option[3] += 0x10
        return
    stamp = (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
    if flag == _TS_ONLY:
        entry = stamp
    elif flag == _TS_ADDRESS or (flag == _TS_PRESPECIFIED
                                 and option[pointer - 1:pointer + 3] == our_ip):
        entry = our_ip + stamp
    else:
        return  # prespecified for another host, or a flag RFC 791 does not define
    if pointer + len(entry) - 1 <= len(option):
        option[pointer - 1:pointer - 1 + len(entry)] = entry
        option[2] = pointer + len(entry)
