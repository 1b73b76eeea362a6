"""IPv4 options (RFC 791 3.1): validation on receive, and the echo of Record Route and
Timestamp in an echo reply (RFC 1122 3.2.2.6).

The stack acts on no option, but it must not accept a malformed one: Linux drops such a
packet and answers ICMP Parameter Problem pointing at the bad octet
(``ip_options_compile``), and so do we.  :func:`check_options` applies the same rules:

* EOL (0) ends the list, NOP (1) is one octet;
* any other option needs a length octet, at least 2, that does not run past the header;
* Record Route (7), Loose/Strict Source Route (131/137): length >= 3, pointer >= 4;
* Timestamp (68): length >= 4, pointer >= 5, flag 0, 1 or 3.

The pointer of the Parameter Problem is the offending octet's offset from the start of
the IP header (so 20 + its offset in the options).
"""

from __future__ import annotations

EOL = 0
NOP = 1
RECORD_ROUTE = 7
TIMESTAMP = 68
LOOSE_SOURCE_ROUTE = 131
STRICT_SOURCE_ROUTE = 137
_ROUTES = (RECORD_ROUTE, LOOSE_SOURCE_ROUTE, STRICT_SOURCE_ROUTE)
_TS_FLAGS = (0, 1, 3)  # timestamps only; address + timestamp; prespecified addresses
BASE = 20  # option octets start here in the IP header


class BadOption(Exception):
    """A malformed option; ``pointer`` is the offending octet's offset in the IP header."""

    def __init__(self, pointer: int, reason: str) -> None:
        super().__init__(f"ipv4 option: {reason} (octet {pointer})")
        self.pointer = pointer
        self.reason = reason


def check_options(options: bytes) -> None:
    """Raise :class:`BadOption` for the first malformed option, as Linux judges them."""
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == EOL:
            return
        if kind == NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise BadOption(BASE + i, f"option {kind} has no length octet")
        length = options[i + 1]
        if length < 2 or i + length > n:
            raise BadOption(BASE + i, f"option {kind} length {length} does not fit")
        if kind in _ROUTES:
            if length < 3:
                raise BadOption(BASE + i + 1, f"option {kind} length {length} < 3")
            if options[i + 2] < 4:
                raise BadOption(BASE + i + 2, f"option {kind} pointer {options[i + 2]} < 4")
        elif kind == TIMESTAMP:
            if length < 4:
                raise BadOption(BASE + i + 1, f"timestamp length {length} < 4")
            if options[i + 2] < 5:
                raise BadOption(BASE + i + 2, f"timestamp pointer {options[i + 2]} < 5")
            if options[i + 3] & 0x0F not in _TS_FLAGS:
                raise BadOption(BASE + i + 3, f"timestamp flag {options[i + 3] & 0x0F}")
        i += length


def echo_options(options: bytes, our_ip: bytes, ms_since_midnight: int) -> bytes:
    """The options of our echo reply to a request carrying ``options`` (already checked):
    its Record Route and Timestamp options, updated with our address / time where they
    have room (RFC 1122 3.2.2.6 SHOULD; Linux does the same), without truncation; every
    other option is left out.  Padded with EOL to a multiple of 4."""
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
            _timestamp(option, our_ip, ms_since_midnight)
            out += option
        i += length
    out += bytes(-len(out) % 4)
    return bytes(out)


def _record_route(option: bytearray, our_ip: bytes) -> None:
    pointer = option[2]
    if pointer + 3 <= len(option):  # room for one more address
        option[pointer - 1:pointer + 3] = our_ip
        option[2] = pointer + 4


def _timestamp(option: bytearray, our_ip: bytes, ms: int) -> None:
    pointer = option[2]
    flag = option[3] & 0x0F
    stamp = (ms & 0xFFFFFFFF).to_bytes(4, "big")
    if flag == 0:
        entry = stamp
    elif flag == 1:
        entry = our_ip + stamp
    else:  # 3: only where our address is the next prespecified one
        if pointer + 7 <= len(option) and bytes(option[pointer - 1:pointer + 3]) == our_ip:
            option[pointer + 3:pointer + 7] = stamp
            option[2] = pointer + 8
        return
    if pointer + len(entry) - 1 <= len(option):
        option[pointer - 1:pointer - 1 + len(entry)] = entry
        option[2] = pointer + len(entry)
    else:
        overflow = min((option[3] >> 4) + 1, 15)  # no room: count the hop
        option[3] = (overflow << 4) | flag
