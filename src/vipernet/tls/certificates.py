"""Server certificate validation: chain, validity, name, key usage, with typed errors.

Chain building and the web-PKI policy are ``cryptography.x509.verification``'s
(``PolicyBuilder().store(...).time(now).build_server_verifier(name)``).  Before asking
it, we run the checks whose failure users most need named — the leaf's validity
window, its names, its key usage — so the error says which check failed rather than
"no valid chain".  When the verifier still refuses, :func:`_classify_chain_failure`
looks at the chain to tell a self-signed leaf, an unknown CA and a missing
intermediate apart.

Trust stores (certifi's bundle, or a CA file) are parsed once and cached by path and
modification time: parsing the ~150 certifi roots costs milliseconds per handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import warnings
from dataclasses import dataclass

import certifi
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from vipernet.tls.errors import (
    CertificateChainError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateParseError,
    HostnameMismatch,
    MissingIntermediate,
    SelfSignedCertificate,
    UnknownCA,
    WrongKeyUsage,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustStore:
    """Parsed trust anchors and the ``cryptography`` Store built from them."""

    certificates: tuple[x509.Certificate, ...]
    store: Store
    source: str

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "PEM data") -> TrustStore:
        try:
            with warnings.catch_warnings():
                # certifi holds a few old roots with non-positive serials; they still work.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs = tuple(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise CertificateParseError(f"trust store {source}: {exc}") from None
        return cls(certificates=certs, store=Store(list(certs)), source=source)

    def subjects(self) -> set[x509.Name]:
        return {c.subject for c in self.certificates}


_CACHE: dict[tuple[str, float], TrustStore] = {}


def load_trust_store(cafile: str | os.PathLike[str] | None = None) -> TrustStore:
    """The CA file's roots, or certifi's bundle when no file is given; cached."""
    path = os.fspath(cafile) if cafile is not None else certifi.where()
    key = (path, os.stat(path).st_mtime)
    cached = _CACHE.get(key)
    if cached is None:
        with open(path, "rb") as f:
            cached = TrustStore.from_pem(f.read(), source=path)
        _CACHE[key] = cached
    return cached


def parse_chain(der_chain: list[bytes]) -> list[x509.Certificate]:
    certs = []
    for index, der in enumerate(der_chain):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CertificateParseError(f"certificate {index} does not parse: {exc}") from None
    if not certs:
        raise CertificateParseError("server sent an empty certificate list")
    return certs


def _subject_for(hostname: str) -> x509.verification.Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _label_match(pattern: str, hostname: str) -> bool:
    """RFC 6125 matching: exact, or a ``*`` as the whole left-most label."""
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern == hostname:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return False


def check_name(leaf: x509.Certificate, hostname: str) -> None:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise HostnameMismatch(f"certificate has no subjectAltName, so it cannot match "
                               f"{hostname!r} (subject {leaf.subject.rfc4514_string()})") from None
    try:
        ip = ipaddress.ip_address(hostname)
    except ValueError:
        names = san.get_values_for_type(x509.DNSName)
        if any(_label_match(name, hostname) for name in names):
            return
        raise HostnameMismatch(f"hostname {hostname!r} matches none of the certificate's "
                               f"DNS names {names}") from None
    ips = san.get_values_for_type(x509.IPAddress)
    if ip not in ips:
        raise HostnameMismatch(f"IP address {hostname} matches none of the certificate's "
                               f"IP addresses {[str(a) for a in ips]}")


def check_validity(cert: x509.Certificate, now: datetime.datetime, role: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateNotYetValid(
            f"{role} certificate {cert.subject.rfc4514_string()} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()} (now {now.isoformat()})")
    if now > cert.not_valid_after_utc:
        raise CertificateExpired(
            f"{role} certificate {cert.subject.rfc4514_string()} expired at "
            f"{cert.not_valid_after_utc.isoformat()} (now {now.isoformat()})")


def check_key_usage(leaf: x509.Certificate) -> None:
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.digital_signature:
        raise WrongKeyUsage("server certificate's keyUsage lacks digitalSignature, which TLS 1.3 "
                            "needs to sign CertificateVerify")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku and \
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise WrongKeyUsage("server certificate's extendedKeyUsage does not include serverAuth "
                            f"({[oid.dotted_string for oid in eku]})")


def verify_server_chain(der_chain: list[bytes], *, hostname: str, trust: TrustStore,
                        now: datetime.datetime) -> list[x509.Certificate]:
    """Validate the chain the server sent; returns the verified chain, leaf first."""
    certs = parse_chain(der_chain)
    leaf, intermediates = certs[0], certs[1:]
    check_validity(leaf, now, "server")
    check_name(leaf, hostname)
    check_key_usage(leaf)
    verifier = (PolicyBuilder().store(trust.store).time(now)
                .build_server_verifier(_subject_for(hostname)))
    try:
        return list(verifier.verify(leaf, intermediates))
    except VerificationError as exc:
        raise _classify_chain_failure(certs, trust, now, str(exc)) from None


def _classify_chain_failure(certs: list[x509.Certificate], trust: TrustStore,
                            now: datetime.datetime, detail: str) -> Exception:
    trusted = trust.subjects()
    leaf = certs[0]
    by_subject = {c.subject: c for c in certs[1:]}
    if leaf.issuer == leaf.subject and leaf not in trust.certificates:
        return SelfSignedCertificate(
            f"server certificate {leaf.subject.rfc4514_string()} is self-signed and not in "
            f"the trust store ({trust.source})")
    current, seen = leaf, 0
    while seen <= len(certs):
        seen += 1
        if current.issuer in trusted:
            break
        issuer = by_subject.get(current.issuer)
        if issuer is None:
            if current is leaf:
                return MissingIntermediate(
                    f"server sent only its certificate; its issuer "
                    f"{current.issuer.rfc4514_string()} is neither sent nor trusted "
                    "(a missing intermediate, or an unknown CA)")
            return UnknownCA(
                f"chain ends at {current.subject.rfc4514_string()}, issued by "
                f"{current.issuer.rfc4514_string()}, which is not in the trust store "
                f"({trust.source})")
        try:
            check_validity(issuer, now, "intermediate")
        except (CertificateExpired, CertificateNotYetValid) as exc:
            return exc
        if issuer.issuer == issuer.subject:
            if issuer not in trust.certificates:
                return UnknownCA(f"chain ends at the root {issuer.subject.rfc4514_string()}, "
                                 f"which is not in the trust store ({trust.source})")
            break
        current = issuer
    return CertificateChainError(f"certificate chain failed validation: {detail}")
