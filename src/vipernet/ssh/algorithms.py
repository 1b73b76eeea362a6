"""Every algorithm the client speaks, registered in one place in preference order.

Negotiation (RFC 4253 section 7.1) picks, per category, the first client algorithm the
server also lists.  ``kex-strict-c-v00@openssh.com`` and ``ext-info-c`` are not real
algorithms but markers in the KEX list: the first turns on strict KEX (the Terrapin
mitigation), the second asks the server for SSH_MSG_EXT_INFO (server-sig-algs).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from vipernet.ssh.errors import KexError
from vipernet.ssh.messages import KexInit

STRICT_KEX_CLIENT = "kex-strict-c-v00@openssh.com"
STRICT_KEX_SERVER = "kex-strict-s-v00@openssh.com"
EXT_INFO_CLIENT = "ext-info-c"

# Key exchange: both names are the same algorithm (RFC 8731).
KEX_ALGORITHMS: tuple[str, ...] = ("curve25519-sha256", "curve25519-sha256@libssh.org")

HOST_KEY_ALGORITHMS: tuple[str, ...] = (
    "ssh-ed25519",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    # SHA-1 RSA signatures: never offered by default (OpenSSH 9 disables them too); a
    # caller may list it for an old server that has nothing better.
    "ssh-rsa",
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CipherSpec:
    name: str
    key_size: int
    block_size: int
    iv_size: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MacSpec:
    name: str
    digest: Callable[..., Any]
    key_size: int
    mac_size: int
    etm: bool


CIPHERS: dict[str, CipherSpec] = {
    spec.name: spec
    for spec in (
        CipherSpec(name="aes128-ctr", key_size=16, block_size=16, iv_size=16),
        CipherSpec(name="aes256-ctr", key_size=32, block_size=16, iv_size=16),
        CipherSpec(name="aes192-ctr", key_size=24, block_size=16, iv_size=16),
    )
}

MACS: dict[str, MacSpec] = {
    spec.name: spec
    for spec in (
        MacSpec(name="hmac-sha2-256-etm@openssh.com", digest=hashlib.sha256, key_size=32,
                mac_size=32, etm=True),
        MacSpec(name="hmac-sha2-512-etm@openssh.com", digest=hashlib.sha512, key_size=64,
                mac_size=64, etm=True),
        MacSpec(name="hmac-sha2-256", digest=hashlib.sha256, key_size=32, mac_size=32,
                etm=False),
        MacSpec(name="hmac-sha2-512", digest=hashlib.sha512, key_size=64, mac_size=64,
                etm=False),
        MacSpec(name="hmac-sha1-etm@openssh.com", digest=hashlib.sha1, key_size=20,
                mac_size=20, etm=True),
        MacSpec(name="hmac-sha1", digest=hashlib.sha1, key_size=20, mac_size=20, etm=False),
    )
}

COMPRESSION: tuple[str, ...] = ("none",)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Preferences:
    """What the client offers, most preferred first (a subset of the registry)."""

    kex: tuple[str, ...] = KEX_ALGORITHMS
    # ECDSA host keys are verifiable but not offered by default: ssh-audit fails the NIST
    # curves, and every OpenSSH server has an ed25519 or RSA key as well.
    host_key: tuple[str, ...] = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
    ciphers: tuple[str, ...] = ("aes128-ctr", "aes256-ctr", "aes192-ctr")
    macs: tuple[str, ...] = tuple(MACS)

    def __post_init__(self) -> None:
        for names, known, what in ((self.kex, KEX_ALGORITHMS, "kex"),
                                   (self.host_key, HOST_KEY_ALGORITHMS, "host key"),
                                   (self.ciphers, tuple(CIPHERS), "cipher"),
                                   (self.macs, tuple(MACS), "MAC")):
            unknown = [n for n in names if n not in known]
            if unknown or not names:
                raise ValueError(f"unsupported {what} algorithms: {unknown or 'none given'}")

    @classmethod
    def pinned(cls, *, cipher: str | None = None, mac: str | None = None,
               host_key: Sequence[str] | None = None) -> Preferences:
        """Preferences restricted to one cipher / MAC (benchmarks, tests)."""
        base = cls()
        return cls(ciphers=(cipher,) if cipher else base.ciphers,
                   macs=(mac,) if mac else base.macs,
                   host_key=tuple(host_key) if host_key else base.host_key)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    kex: str
    host_key: str
    cipher_c2s: CipherSpec
    cipher_s2c: CipherSpec
    mac_c2s: MacSpec
    mac_s2c: MacSpec
    strict_kex: bool
    server_ext_info: bool


def _choose(client: Sequence[str], server: Sequence[str], what: str) -> str:
    for name in client:
        if name in server:
            return name
    raise KexError(f"no common {what} algorithm: we offer {','.join(client)}, "
                   f"server offers {','.join(server) or '(none)'}")


def client_kexinit(prefs: Preferences, cookie: bytes, *, first_kex: bool) -> KexInit:
    """Our KEXINIT; the strict-KEX and ext-info markers only go in the first one."""
    kex = prefs.kex + ((EXT_INFO_CLIENT, STRICT_KEX_CLIENT) if first_kex else ())
    return KexInit(cookie=cookie, kex=kex, host_key=prefs.host_key, cipher_c2s=prefs.ciphers,
                   cipher_s2c=prefs.ciphers, mac_c2s=prefs.macs, mac_s2c=prefs.macs)


def negotiate(client: KexInit, server: KexInit, *, first_kex: bool) -> Negotiated:
    real_kex = tuple(n for n in client.kex if n not in (STRICT_KEX_CLIENT, EXT_INFO_CLIENT))
    kex = _choose(real_kex, server.kex, "key exchange")
    host_key = _choose(client.host_key, server.host_key, "host key")
    cipher_c2s = _choose(client.cipher_c2s, server.cipher_c2s, "client-to-server cipher")
    cipher_s2c = _choose(client.cipher_s2c, server.cipher_s2c, "server-to-client cipher")
    mac_c2s = _choose(client.mac_c2s, server.mac_c2s, "client-to-server MAC")
    mac_s2c = _choose(client.mac_s2c, server.mac_s2c, "server-to-client MAC")
    _choose(COMPRESSION, server.compression_c2s, "client-to-server compression")
    _choose(COMPRESSION, server.compression_s2c, "server-to-client compression")
    return Negotiated(
        kex=kex, host_key=host_key, cipher_c2s=CIPHERS[cipher_c2s],
        cipher_s2c=CIPHERS[cipher_s2c], mac_c2s=MACS[mac_c2s], mac_s2c=MACS[mac_s2c],
        strict_kex=first_kex and STRICT_KEX_SERVER in server.kex,
        server_ext_info="ext-info-s" in server.kex,
    )
