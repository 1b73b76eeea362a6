"""vipernet.tls: a TLS 1.3 client (RFC 8446) — sans-IO engine plus a blocking ``wrap()``.

- :class:`TLSClientConnection` (``connection.py``): the engine; bytes in, bytes/events out.
- :func:`wrap` (``wrap.py``): ``wrap(sock, server_hostname=..., alpn=[...], cafile=...)``
  returns a socket-like :class:`TLSSocket` over any stream socket.
- ``record.py`` (records, AEAD), ``messages.py`` (handshake codecs), ``key_schedule.py``,
  ``client_hello.py`` (ClientHello + PSK binders), ``key_exchange.py`` ((EC)DHE shares),
  ``certificates.py`` (chain validation), ``signatures.py`` (CertificateVerify),
  ``states.py`` (the state table), ``errors.py``/``alerts.py`` (typed errors + alerts).

Suites TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256;
groups X25519 (secp256r1 via HelloRetryRequest); PSK-DHE resumption from tickets.
"""

from vipernet.tls.certificates import TrustStore, load_trust_store
from vipernet.tls.config import TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import CipherSuite, NamedGroup, SignatureScheme
from vipernet.tls.errors import (
    CertificateError,
    PeerAlert,
    TLSError,
)
from vipernet.tls.events import (
    ApplicationDataReceived,
    CloseNotifyReceived,
    HandshakeCompleted,
    KeyUpdateReceived,
    SessionTicketReceived,
)
from vipernet.tls.session import SessionTicket
from vipernet.tls.wrap import TLSSocket, wrap

__all__ = [
    "ApplicationDataReceived",
    "CertificateError",
    "CipherSuite",
    "CloseNotifyReceived",
    "HandshakeCompleted",
    "KeyUpdateReceived",
    "NamedGroup",
    "PeerAlert",
    "SessionTicket",
    "SessionTicketReceived",
    "SignatureScheme",
    "TLSClientConnection",
    "TLSConfig",
    "TLSError",
    "TLSSocket",
    "TrustStore",
    "load_trust_store",
    "wrap",
]
