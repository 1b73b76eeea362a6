"""SSH message numbers (RFC 4250 section 4.1) and the KEXINIT message.

Most messages are small enough that the layer using them builds and parses them inline;
KEXINIT is the one negotiated structure, so it gets a frozen dataclass with parse/build.
"""

from __future__ import annotations

import dataclasses
import enum

from vipernet.ssh.codec import SSHBuffer, SSHWriter


class Msg(enum.IntEnum):
    DISCONNECT = 1
    IGNORE = 2
    UNIMPLEMENTED = 3
    DEBUG = 4
    SERVICE_REQUEST = 5
    SERVICE_ACCEPT = 6
    EXT_INFO = 7
    KEXINIT = 20
    NEWKEYS = 21
    KEX_ECDH_INIT = 30
    KEX_ECDH_REPLY = 31
    USERAUTH_REQUEST = 50
    USERAUTH_FAILURE = 51
    USERAUTH_SUCCESS = 52
    USERAUTH_BANNER = 53
    USERAUTH_PK_OK = 60  # also USERAUTH_INFO_REQUEST for keyboard-interactive
    USERAUTH_INFO_RESPONSE = 61
    GLOBAL_REQUEST = 80
    REQUEST_SUCCESS = 81
    REQUEST_FAILURE = 82
    CHANNEL_OPEN = 90
    CHANNEL_OPEN_CONFIRMATION = 91
    CHANNEL_OPEN_FAILURE = 92
    CHANNEL_WINDOW_ADJUST = 93
    CHANNEL_DATA = 94
    CHANNEL_EXTENDED_DATA = 95
    CHANNEL_EOF = 96
    CHANNEL_CLOSE = 97
    CHANNEL_REQUEST = 98
    CHANNEL_SUCCESS = 99
    CHANNEL_FAILURE = 100


USERAUTH_INFO_REQUEST = 60

# Messages that may arrive at any time, even in the middle of a key exchange (RFC 4253
# section 7.1) -- except under strict KEX, where only KEX messages are allowed until NEWKEYS.
TRANSPORT_GENERIC = frozenset({Msg.DISCONNECT, Msg.IGNORE, Msg.UNIMPLEMENTED, Msg.DEBUG})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KexInit:
    """SSH_MSG_KEXINIT (RFC 4253 section 7.1)."""

    cookie: bytes
    kex: tuple[str, ...]
    host_key: tuple[str, ...]
    cipher_c2s: tuple[str, ...]
    cipher_s2c: tuple[str, ...]
    mac_c2s: tuple[str, ...]
    mac_s2c: tuple[str, ...]
    compression_c2s: tuple[str, ...] = ("none",)
    compression_s2c: tuple[str, ...] = ("none",)
    languages_c2s: tuple[str, ...] = ()
    languages_s2c: tuple[str, ...] = ()
    first_kex_follows: bool = False
    reserved: int = 0


def parse_kexinit(payload: bytes) -> KexInit:
    """Parse a whole KEXINIT payload (message number included)."""
    buf = SSHBuffer(payload)
    msg = buf.pull_uint8("message number")
    if msg != Msg.KEXINIT:
        from vipernet.ssh.errors import SSHProtocolError

        raise SSHProtocolError(f"KEXINIT: message number {msg}, expected {int(Msg.KEXINIT)}")
    cookie = buf.pull_bytes(16, "cookie")
    lists = [buf.pull_name_list(f"KEXINIT list {i}") for i in range(10)]
    first = buf.pull_bool("first_kex_packet_follows")
    reserved = buf.pull_uint32("reserved")
    # Trailing bytes are tolerated: RFC 4253 lets later versions extend the message.
    return KexInit(cookie=cookie, kex=lists[0], host_key=lists[1], cipher_c2s=lists[2],
                   cipher_s2c=lists[3], mac_c2s=lists[4], mac_s2c=lists[5],
                   compression_c2s=lists[6], compression_s2c=lists[7],
                   languages_c2s=lists[8], languages_s2c=lists[9],
                   first_kex_follows=first, reserved=reserved)


def build_kexinit(k: KexInit) -> bytes:
    w = SSHWriter()
    w.push_uint8(Msg.KEXINIT)
    w.push_bytes(k.cookie)
    for names in (k.kex, k.host_key, k.cipher_c2s, k.cipher_s2c, k.mac_c2s, k.mac_s2c,
                  k.compression_c2s, k.compression_s2c, k.languages_c2s, k.languages_s2c):
        w.push_name_list(names)
    w.push_bool(k.first_kex_follows)
    w.push_uint32(k.reserved)
    return w.data()
