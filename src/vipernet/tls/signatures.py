"""CertificateVerify (RFC 8446 4.4.3): the signed content and its verification.

The server signs 64 spaces, a context string, a zero byte and the transcript hash.
TLS 1.3 allows RSA only with PSS, and ECDSA only with the curve the scheme names;
a scheme we did not offer, or one that does not fit the certificate's key, is an
``illegal_parameter``; a signature that does not verify is ``decrypt_error``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from vipernet.tls.constants import SignatureScheme
from vipernet.tls.errors import BadCertificateVerify, IllegalParameter

SERVER_CONTEXT = b"TLS 1.3, server CertificateVerify"
CLIENT_CONTEXT = b"TLS 1.3, client CertificateVerify"

# What we offer in signature_algorithms, best first.  The PKCS#1 v1.5 schemes are listed
# only so that servers know we accept certificates signed with them; they are refused in
# CertificateVerify itself.
OFFERED_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.ED25519,
    SignatureScheme.ECDSA_SECP256R1_SHA256,
    SignatureScheme.ECDSA_SECP384R1_SHA384,
    SignatureScheme.ECDSA_SECP521R1_SHA512,
    SignatureScheme.RSA_PSS_RSAE_SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512,
    SignatureScheme.RSA_PSS_PSS_SHA256,
    SignatureScheme.RSA_PSS_PSS_SHA384,
    SignatureScheme.RSA_PSS_PSS_SHA512,
    SignatureScheme.ED448,
    SignatureScheme.RSA_PKCS1_SHA256,
    SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512,
)

_ECDSA: dict[int, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: (ec.SECP256R1, hashes.SHA256()),
    SignatureScheme.ECDSA_SECP384R1_SHA384: (ec.SECP384R1, hashes.SHA384()),
    SignatureScheme.ECDSA_SECP521R1_SHA512: (ec.SECP521R1, hashes.SHA512()),
}
_PSS: dict[int, hashes.HashAlgorithm] = {
    SignatureScheme.RSA_PSS_RSAE_SHA256: hashes.SHA256(),
    SignatureScheme.RSA_PSS_RSAE_SHA384: hashes.SHA384(),
    SignatureScheme.RSA_PSS_RSAE_SHA512: hashes.SHA512(),
    SignatureScheme.RSA_PSS_PSS_SHA256: hashes.SHA256(),
    SignatureScheme.RSA_PSS_PSS_SHA384: hashes.SHA384(),
    SignatureScheme.RSA_PSS_PSS_SHA512: hashes.SHA512(),
}
CERTIFICATE_VERIFY_SCHEMES = frozenset({*_ECDSA, *_PSS, SignatureScheme.ED25519,
                                        SignatureScheme.ED448})


def signed_content(transcript_hash: bytes, *, server: bool = True) -> bytes:
    context = SERVER_CONTEXT if server else CLIENT_CONTEXT
    return b"\x20" * 64 + context + b"\x00" + transcript_hash


def verify_certificate_verify(public_key: CertificateIssuerPublicKeyTypes | object, scheme: int,
                              signature: bytes, transcript_hash: bytes) -> None:
    """Check the server's CertificateVerify; raises a TLSError naming what was wrong."""
    if scheme not in CERTIFICATE_VERIFY_SCHEMES:
        raise IllegalParameter(
            f"signature scheme {scheme:#06x} is not allowed in CertificateVerify")
    content = signed_content(transcript_hash)
    try:
        if scheme in _ECDSA:
            curve, algorithm = _ECDSA[scheme]
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
                    public_key.curve, curve):
                raise IllegalParameter(f"scheme {SignatureScheme(scheme).name} does not match "
                                       f"the certificate key ({_key_name(public_key)})")
            public_key.verify(signature, content, ec.ECDSA(algorithm))
        elif scheme in _PSS:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise IllegalParameter(f"scheme {SignatureScheme(scheme).name} needs an RSA key, "
                                       f"certificate has {_key_name(public_key)}")
            algorithm = _PSS[scheme]
            public_key.verify(signature, content,
                              padding.PSS(mgf=padding.MGF1(algorithm),
                                          salt_length=algorithm.digest_size), algorithm)
        elif scheme == SignatureScheme.ED25519:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise IllegalParameter(f"ed25519 signature but certificate has "
                                       f"{_key_name(public_key)}")
            public_key.verify(signature, content)
        else:
            if not isinstance(public_key, ed448.Ed448PublicKey):
                raise IllegalParameter(f"ed448 signature but certificate has "
                                       f"{_key_name(public_key)}")
            public_key.verify(signature, content)
    except InvalidSignature:
        raise BadCertificateVerify(
            f"CertificateVerify signature ({SignatureScheme(scheme).name}) does not verify "
            "with the server certificate's key") from None


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__
