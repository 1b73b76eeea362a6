"""(EC)DHE key shares for X25519 and secp256r1/secp384r1, keys drawn from the injected RNG."""

from __future__ import annotations

import random

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vipernet.tls.constants import NamedGroup
from vipernet.tls.errors import IllegalParameter

_CURVES: dict[int, ec.EllipticCurve] = {
    NamedGroup.SECP256R1: ec.SECP256R1(),
    NamedGroup.SECP384R1: ec.SECP384R1(),
}
_ORDERS: dict[int, int] = {
    NamedGroup.SECP256R1:
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    NamedGroup.SECP384R1: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16),
}
SUPPORTED_GROUPS = frozenset({NamedGroup.X25519, *_CURVES})


class KeyShare:
    """One ephemeral private key and the public key_exchange bytes we send for it."""

    __slots__ = ("_private", "group", "public")

    def __init__(self, group: int, rng: random.Random) -> None:
        self.group = group
        if group == NamedGroup.X25519:
            key = x25519.X25519PrivateKey.from_private_bytes(rng.randbytes(32))
            self._private: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey = key
            self.public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        elif group in _CURVES:
            scalar = 1 + rng.randrange(_ORDERS[group] - 1)
            eckey = ec.derive_private_key(scalar, _CURVES[group])
            self._private = eckey
            self.public = eckey.public_key().public_bytes(Encoding.X962,
                                                          PublicFormat.UncompressedPoint)
        else:
            raise ValueError(f"unsupported group {group:#06x}")

    def exchange(self, peer: bytes) -> bytes:
        """The shared secret with the server's key_exchange; a bad point is illegal_parameter."""
        try:
            if isinstance(self._private, x25519.X25519PrivateKey):
                if len(peer) != 32:
                    raise ValueError(f"X25519 key of {len(peer)} bytes")
                shared = self._private.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
                if not any(shared):
                    raise ValueError("all-zero X25519 shared secret")
                return shared
            curve = _CURVES[self.group]
            if not peer or peer[0] != 4:
                raise ValueError("EC point is not in uncompressed form")
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, peer)
            return self._private.exchange(ec.ECDH(), public)
        except ValueError as exc:
            raise IllegalParameter(f"server key share for group {self.group:#06x}: {exc}") from None
