"""Typed TLS errors: each one carries the alert it sends (or that the peer sent).

:class:`TLSError` is a :class:`vipernet.errors.ProtocolError`.  The connection raises
the subclass that names what failed; before raising it queues the matching alert, so a
caller that flushes ``data_to_send()`` tells the peer why.  Certificate failures are
:class:`CertificateError` subclasses whose message says which check failed.
"""

from __future__ import annotations

from vipernet.errors import ProtocolError, UsageError
from vipernet.tls.alerts import AlertDescription, describe


class TLSError(ProtocolError):
    """A TLS failure; ``alert`` is the alert description that goes with it."""

    alert: AlertDescription = AlertDescription.INTERNAL_ERROR


class UnexpectedMessage(TLSError):
    alert = AlertDescription.UNEXPECTED_MESSAGE


class BadRecordMac(TLSError):
    """A record failed AEAD authentication: tampered, truncated or wrong keys."""

    alert = AlertDescription.BAD_RECORD_MAC


class RecordOverflow(TLSError):
    alert = AlertDescription.RECORD_OVERFLOW


class HandshakeFailure(TLSError):
    alert = AlertDescription.HANDSHAKE_FAILURE


class IllegalParameter(TLSError):
    alert = AlertDescription.ILLEGAL_PARAMETER


class DecodeError(TLSError):
    """A message or record did not parse."""

    alert = AlertDescription.DECODE_ERROR


class DecryptError(TLSError):
    alert = AlertDescription.DECRYPT_ERROR


class BadFinished(DecryptError):
    """The server's Finished MAC does not match our transcript."""


class BadCertificateVerify(DecryptError):
    """The server's CertificateVerify signature does not verify with its certificate key."""


class ProtocolVersionError(TLSError):
    """The server does not speak TLS 1.3 (for example a TLS 1.2-only server)."""

    alert = AlertDescription.PROTOCOL_VERSION


class MissingExtension(TLSError):
    alert = AlertDescription.MISSING_EXTENSION


class UnsupportedExtension(TLSError):
    alert = AlertDescription.UNSUPPORTED_EXTENSION


class NoApplicationProtocol(TLSError):
    alert = AlertDescription.NO_APPLICATION_PROTOCOL


class InternalError(TLSError):
    alert = AlertDescription.INTERNAL_ERROR


class CertificateError(TLSError):
    """The server's certificate chain was refused; the message says which check failed."""

    alert = AlertDescription.BAD_CERTIFICATE


class CertificateParseError(CertificateError):
    pass


class CertificateExpired(CertificateError):
    alert = AlertDescription.CERTIFICATE_EXPIRED


class CertificateNotYetValid(CertificateError):
    alert = AlertDescription.CERTIFICATE_EXPIRED  # RFC 8446: "expired or not currently valid"


class HostnameMismatch(CertificateError):
    pass


class WrongKeyUsage(CertificateError):
    alert = AlertDescription.UNSUPPORTED_CERTIFICATE


class UntrustedIssuer(CertificateError):
    """The chain does not lead to a trusted root."""

    alert = AlertDescription.UNKNOWN_CA


class SelfSignedCertificate(UntrustedIssuer):
    """The server presented a lone self-signed certificate that is not in the trust store."""


class UnknownCA(UntrustedIssuer):
    """The chain ends at a CA that the trust store does not hold."""


class MissingIntermediate(UntrustedIssuer):
    """The server sent only its leaf and the leaf's issuer is not a trusted root."""


class CertificateChainError(CertificateError):
    """Chain validation failed for a reason the specific checks above do not name."""


class PeerAlert(TLSError):
    """The server sent a fatal alert; ``alert`` is the description it sent."""

    def __init__(self, alert: int) -> None:
        super().__init__(f"server sent fatal alert {describe(alert)} ({alert})")
        try:
            self.alert = AlertDescription(alert)
        except ValueError:
            self.alert = AlertDescription.INTERNAL_ERROR
        self.code = alert


class TLSUsageError(UsageError):
    """The caller used the connection in a way its state does not allow."""


class ConnectionClosedError(TLSError):
    """The transport ended before the TLS handshake or a close_notify."""

    alert = AlertDescription.CLOSE_NOTIFY


class ServerRefusedTLS13(PeerAlert, ProtocolVersionError):
    """The server answered our ClientHello with protocol_version: it has no TLS 1.3."""

    def __init__(self) -> None:
        super().__init__(AlertDescription.PROTOCOL_VERSION)
        self.args = ("server refused TLS 1.3 with a protocol_version alert (a TLS 1.2-only "
                     "or older server)",)
