"""What a TLS client connection is asked to do: name, ALPN, trust, suites, resumption."""

from __future__ import annotations

from dataclasses import dataclass

from vipernet.tls.certificates import TrustStore
from vipernet.tls.constants import CipherSuite, NamedGroup, SignatureScheme
from vipernet.tls.session import SessionTicket
from vipernet.tls.signatures import OFFERED_SCHEMES

DEFAULT_SUITES = (CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384,
                  CipherSuite.TLS_CHACHA20_POLY1305_SHA256)
# secp256r1 is offered so a server that prefers it answers with a HelloRetryRequest;
# the first ClientHello carries an X25519 share only (one scalar multiplication).
DEFAULT_GROUPS = (NamedGroup.X25519, NamedGroup.SECP256R1)
DEFAULT_KEY_SHARES = (NamedGroup.X25519,)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """Client settings.  ``trust`` None means certifi's roots (or ``cafile`` if given)."""

    server_name: str | None = None
    alpn_protocols: tuple[str, ...] = ()
    cafile: str | None = None
    trust: TrustStore | None = None
    insecure: bool = False
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_SUITES
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    key_share_groups: tuple[NamedGroup, ...] = DEFAULT_KEY_SHARES
    signature_schemes: tuple[SignatureScheme, ...] = OFFERED_SCHEMES
    session: SessionTicket | None = None
    send_sni: bool = True
