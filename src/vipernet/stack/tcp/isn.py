"""Initial sequence numbers per RFC 6528: ``ISN = M + F(4-tuple, secret)``.

``M`` is a clock that ticks every 4 microseconds, ``F`` a keyed hash (BLAKE2s, from hashlib)
of the connection's 4-tuple.  The secret comes from the injected random source, so a seeded
simulation is reproducible while two real stacks never share a key.  Per-tuple offsets keep
an off-path attacker from predicting our ISNs; the clock keeps successive incarnations of
one 4-tuple increasing, which lets TIME_WAIT reuse accept a new SYN safely.
"""

from __future__ import annotations

import hashlib
import random

from vipernet.stack.tcp.addresses import key_bytes
from vipernet.stack.tcp.seq import MASK


class IsnGenerator:
    __slots__ = ("_key",)

    def __init__(self, rng: random.Random) -> None:
        self._key = rng.getrandbits(256).to_bytes(32, "big")

    def isn(self, local_ip: int, local_port: int, remote_ip: int, remote_port: int,
            now: float) -> int:
        material = (key_bytes(local_ip) + local_port.to_bytes(2, "big")
                    + key_bytes(remote_ip) + remote_port.to_bytes(2, "big"))
        f = int.from_bytes(hashlib.blake2s(material, key=self._key, digest_size=4).digest(), "big")
        return (f + int(now * 250_000)) & MASK

    def token(self, data: bytes) -> int:
        """A keyed 32-bit hash of ``data`` (used to pick timestamp offsets per connection)."""
        return int.from_bytes(hashlib.blake2s(data, key=self._key, digest_size=4).digest(), "big")
