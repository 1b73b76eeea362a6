"""Test PKI built with ``cryptography``: CAs, intermediates and server leaves of every kind.

SAN is non-critical (unlike trustme), so ``cryptography.x509.verification`` accepts it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
_KEYS: dict[str, PrivateKey] = {}


def make_key(kind: str, *, fresh: bool = False) -> PrivateKey:
    """rsa2048, p256, p384 or ed25519 (cached: RSA generation is slow)."""
    if not fresh and kind in _KEYS:
        return _KEYS[kind]
    key: PrivateKey
    if kind == "rsa2048":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(kind)
    if not fresh:
        _KEYS[kind] = key
    return key


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, *, parent: Issued | None = None, key_kind: str = "p256",
            not_before: datetime.datetime | None = None,
            not_after: datetime.datetime | None = None) -> Issued:
    key = make_key(key_kind, fresh=True) if key_kind != "p256" else ec.generate_private_key(
        ec.SECP256R1())
    signer = parent.key if parent else key
    issuer = parent.cert.subject if parent else _name(cn)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY)
               .not_valid_after(not_after or NOW + 365 * DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False)
    return Issued(cert=builder.sign(signer, _hash_for(signer)), key=key)  # type: ignore[arg-type]


def make_leaf(issuer: Issued | None, *, names: tuple[str, ...] = ("localhost", "127.0.0.1"),
              key_kind: str = "p256", not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None, digital_signature: bool = True,
              eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,),
              cn: str = "test server") -> Issued:
    """A server certificate; ``issuer=None`` makes it self-signed."""
    key = make_key(key_kind)
    signer = issuer.key if issuer else key
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY)
               .not_valid_after(not_after or NOW + 90 * DAY)
               .add_extension(x509.SubjectAlternativeName(alt), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=digital_signature,
                                            content_commitment=False,
                                            key_encipherment=not digital_signature,
                                            data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    return Issued(cert=builder.sign(signer, _hash_for(signer)), key=key)  # type: ignore[arg-type]


def write_server_files(directory: Path, name: str, leaf: Issued,
                       chain: tuple[Issued, ...] = ()) -> tuple[Path, Path]:
    """cert file (leaf + chain, PEM) and key file for openssl/gnutls servers."""
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(leaf.pem() + b"".join(c.pem() for c in chain))
    key_path.write_bytes(leaf.key_pem())
    return cert_path, key_path
