"""The TLS 1.3 key schedule (RFC 8446 section 7) and the cipher suites it serves.

HKDF-Extract and HKDF-Expand come from ``cryptography``; this module only arranges
them into HKDF-Expand-Label, Derive-Secret and the secret ladder
early -> handshake -> master.  :class:`KeySchedule` also owns the transcript hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from vipernet.tls.constants import CipherSuite, HandshakeType

Aead = AESGCM | ChaCha20Poly1305


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteParams:
    """What a cipher suite fixes: the hash, the AEAD and its key length."""

    suite: CipherSuite
    hash_name: str
    key_length: int
    aead: Callable[[bytes], Aead]
    name: str

    @property
    def hash_length(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return hashes.SHA384() if self.hash_name == "sha384" else hashes.SHA256()


SUITES: dict[CipherSuite, SuiteParams] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: SuiteParams(
        suite=CipherSuite.TLS_AES_128_GCM_SHA256, hash_name="sha256", key_length=16,
        aead=AESGCM, name="TLS_AES_128_GCM_SHA256"),
    CipherSuite.TLS_AES_256_GCM_SHA384: SuiteParams(
        suite=CipherSuite.TLS_AES_256_GCM_SHA384, hash_name="sha384", key_length=32,
        aead=AESGCM, name="TLS_AES_256_GCM_SHA384"),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: SuiteParams(
        suite=CipherSuite.TLS_CHACHA20_POLY1305_SHA256, hash_name="sha256", key_length=32,
        aead=ChaCha20Poly1305, name="TLS_CHACHA20_POLY1305_SHA256"),
}
IV_LENGTH = 12


def _algorithm(hash_name: str) -> hashes.HashAlgorithm:
    return hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return HKDF.extract(_algorithm(hash_name), salt, ikm)


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes,
                      length: int) -> bytes:
    """HKDF-Expand-Label: the info is ``uint16 length, "tls13 "+label, context``."""
    full_label = b"tls13 " + label
    info = (length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label
            + bytes((len(context),)) + context)
    return HKDFExpand(_algorithm(hash_name), length, info).derive(secret)


def derive_secret(hash_name: str, secret: bytes, label: bytes, transcript_hash: bytes) -> bytes:
    return hkdf_expand_label(hash_name, secret, label, transcript_hash, len(transcript_hash))


def traffic_keys(params: SuiteParams, secret: bytes) -> tuple[bytes, bytes]:
    """The (key, iv) pair a traffic secret yields (RFC 8446 7.3)."""
    key = hkdf_expand_label(params.hash_name, secret, b"key", b"", params.key_length)
    iv = hkdf_expand_label(params.hash_name, secret, b"iv", b"", IV_LENGTH)
    return key, iv


def next_traffic_secret(hash_name: str, secret: bytes) -> bytes:
    """application_traffic_secret_N+1, for KeyUpdate (RFC 8446 7.2)."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", len(secret))


def finished_verify_data(hash_name: str, base_key: bytes, transcript_hash: bytes) -> bytes:
    finished_key = hkdf_expand_label(hash_name, base_key, b"finished", b"", len(transcript_hash))
    return hmac.digest(finished_key, transcript_hash, hash_name)


def resumption_psk(hash_name: str, resumption_master_secret: bytes, ticket_nonce: bytes) -> bytes:
    return hkdf_expand_label(hash_name, resumption_master_secret, b"resumption", ticket_nonce,
                             len(resumption_master_secret))


def message_hash_header(hash_length: int) -> bytes:
    return bytes((HandshakeType.MESSAGE_HASH, 0, 0, hash_length))


class KeySchedule:
    """Transcript hash plus the secret ladder for one negotiated hash.

    Call :meth:`set_psk` (or nothing, for a full handshake), feed every handshake
    message to :meth:`update`, then step :meth:`handshake_secrets` after ServerHello
    and :meth:`application_secrets` after the server's Finished.
    """

    def __init__(self, hash_name: str) -> None:
        self.hash_name = hash_name
        self.hash_length = hashlib.new(hash_name).digest_size
        self._transcript = hashlib.new(hash_name)
        self._zeros = bytes(self.hash_length)
        self.early_secret = hkdf_extract(hash_name, b"\x00", self._zeros)
        self.handshake_secret = b""
        self.master_secret = b""

    def set_psk(self, psk: bytes) -> None:
        self.early_secret = hkdf_extract(self.hash_name, b"\x00", psk)

    def update(self, message: bytes) -> None:
        self._transcript.update(message)

    def transcript_hash(self) -> bytes:
        return self._transcript.copy().digest()

    def transcript_hash_with(self, extra: bytes) -> bytes:
        """The transcript hash as if ``extra`` were appended (for PSK binders)."""
        h = self._transcript.copy()
        h.update(extra)
        return h.digest()

    def replace_with_message_hash(self) -> None:
        """After a HelloRetryRequest, ClientHello1 is replaced by its hash (RFC 8446 4.4.1)."""
        digest = self._transcript.digest()
        self._transcript = hashlib.new(self.hash_name)
        self._transcript.update(message_hash_header(self.hash_length) + digest)

    def _derived(self, secret: bytes) -> bytes:
        empty = hashlib.new(self.hash_name).digest()
        return derive_secret(self.hash_name, secret, b"derived", empty)

    def binder(self, truncated_hello_transcript_hash: bytes, *, external: bool = False) -> bytes:
        """The PSK binder for the ClientHello transcript hashed up to the binders."""
        empty = hashlib.new(self.hash_name).digest()
        label = b"ext binder" if external else b"res binder"
        binder_key = derive_secret(self.hash_name, self.early_secret, label, empty)
        return finished_verify_data(self.hash_name, binder_key, truncated_hello_transcript_hash)

    def handshake_secrets(self, shared_secret: bytes) -> tuple[bytes, bytes]:
        """(client, server) handshake traffic secrets; the transcript ends at ServerHello."""
        self.handshake_secret = hkdf_extract(self.hash_name, self._derived(self.early_secret),
                                             shared_secret)
        th = self.transcript_hash()
        return (derive_secret(self.hash_name, self.handshake_secret, b"c hs traffic", th),
                derive_secret(self.hash_name, self.handshake_secret, b"s hs traffic", th))

    def application_secrets(self) -> tuple[bytes, bytes, bytes]:
        """(client, server, exporter) secrets; the transcript ends at the server Finished."""
        self.master_secret = hkdf_extract(self.hash_name, self._derived(self.handshake_secret),
                                          self._zeros)
        th = self.transcript_hash()
        return (derive_secret(self.hash_name, self.master_secret, b"c ap traffic", th),
                derive_secret(self.hash_name, self.master_secret, b"s ap traffic", th),
                derive_secret(self.hash_name, self.master_secret, b"exp master", th))

    def resumption_master_secret(self) -> bytes:
        """The transcript must end at the client Finished."""
        return derive_secret(self.hash_name, self.master_secret, b"res master",
                             self.transcript_hash())
