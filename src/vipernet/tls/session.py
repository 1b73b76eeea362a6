"""Session tickets (RFC 8446 4.6.1) kept for PSK-DHE resumption (RFC 8446 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

from vipernet.tls.constants import CipherSuite

MAX_TICKET_LIFETIME = 7 * 24 * 3600  # RFC 8446: servers MUST NOT use more than 7 days


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTicket:
    """What a NewSessionTicket leaves us: the ticket, its PSK and the terms of use."""

    ticket: bytes
    psk: bytes
    cipher_suite: CipherSuite
    hash_name: str
    lifetime: int
    age_add: int
    received_at: float  # the injected clock's time when the ticket arrived (seconds)
    server_name: str | None
    alpn_protocol: str | None = None
    max_early_data: int = 0

    def is_valid(self, now: float) -> bool:
        age = now - self.received_at
        return 0 <= age < min(self.lifetime, MAX_TICKET_LIFETIME)

    def obfuscated_age(self, now: float) -> int:
        """Ticket age in milliseconds plus age_add, modulo 2^32 (RFC 8446 4.2.11.1)."""
        age_ms = max(0, int((now - self.received_at) * 1000))
        return (age_ms + self.age_add) & 0xFFFFFFFF
