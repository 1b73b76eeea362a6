"""curve25519-sha256 key exchange (RFC 8731) and key derivation (RFC 4253 section 7.2).

:class:`Curve25519Exchange` holds our ephemeral key; :func:`exchange_hash` computes H over
both version strings, both KEXINITs, the host key and both public values; and
:func:`derive_keys` expands the shared secret into the six keys (IVs, cipher keys, MAC keys).
The private key comes from the injected random source (the client passes SystemRandom).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from vipernet.ssh.codec import mpint, string
from vipernet.ssh.errors import KexError


class Curve25519Exchange:
    def __init__(self, rng: random.Random) -> None:
        self._private = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.public = self._private.public_key().public_bytes_raw()

    def shared_secret(self, server_public: bytes) -> int:
        if len(server_public) != 32:
            raise KexError(f"server's curve25519 public value has {len(server_public)} bytes")
        try:
            secret = self._private.exchange(X25519PublicKey.from_public_bytes(server_public))
        except ValueError:
            # cryptography refuses low-order points (an all-zero result), as RFC 8731 asks.
            raise KexError("server's curve25519 public value is a low-order point") from None
        return int.from_bytes(secret, "big")


def exchange_hash(*, client_version: bytes, server_version: bytes, client_kexinit: bytes,
                  server_kexinit: bytes, host_key: bytes, client_public: bytes,
                  server_public: bytes, secret: int) -> bytes:
    return hashlib.sha256(b"".join((
        string(client_version), string(server_version), string(client_kexinit),
        string(server_kexinit), string(host_key), string(client_public),
        string(server_public), mpint(secret),
    ))).digest()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionKeys:
    iv_c2s: bytes
    iv_s2c: bytes
    key_c2s: bytes
    key_s2c: bytes
    mac_c2s: bytes
    mac_s2c: bytes


def _derive(secret: bytes, h: bytes, letter: bytes, session_id: bytes, size: int) -> bytes:
    out = hashlib.sha256(secret + h + letter + session_id).digest()
    while len(out) < size:
        out += hashlib.sha256(secret + h + out).digest()
    return out[:size]


def derive_keys(secret: int, h: bytes, session_id: bytes, size: int = 64) -> SessionKeys:
    k = mpint(secret)
    return SessionKeys(
        iv_c2s=_derive(k, h, b"A", session_id, size),
        iv_s2c=_derive(k, h, b"B", session_id, size),
        key_c2s=_derive(k, h, b"C", session_id, size),
        key_s2c=_derive(k, h, b"D", session_id, size),
        mac_c2s=_derive(k, h, b"E", session_id, size),
        mac_s2c=_derive(k, h, b"F", session_id, size),
    )
