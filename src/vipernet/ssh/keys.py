"""Client private keys for publickey authentication (RFC 4252 section 7).

Keys are OpenSSH private key files (ed25519, RSA, ECDSA; optionally encrypted with a
passphrase) loaded by ``cryptography``.  :class:`UserKey` knows its public blob, which
signature algorithm to use (rsa-sha2-512/256 for RSA keys, RFC 8332) and how to sign.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from vipernet.ssh.codec import mpint, string
from vipernet.ssh.errors import SSHError, SSHUsageError

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyLoadError(SSHError):
    """A private key file could not be read or decrypted."""


class PassphraseRequired(KeyLoadError):
    """The key file is encrypted and no passphrase was given."""


_EC_HASH: dict[str, hashes.HashAlgorithm] = {
    "secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512(),
}
# RSA signature algorithm -> its hash (RFC 8332; ssh-rsa is RFC 4253's SHA-1).
_RSA_HASH: dict[str, hashes.HashAlgorithm] = {
    "rsa-sha2-512": hashes.SHA512(), "rsa-sha2-256": hashes.SHA256(), "ssh-rsa": hashes.SHA1(),
}
_EC_NAME = {"secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}


class UserKey:
    def __init__(self, key: PrivateKey, comment: str = "") -> None:
        self.key = key
        self.comment = comment
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
        key_type, b64 = line.split()[:2]
        self.key_type = key_type.decode("ascii")
        self.public_blob = base64.b64decode(b64)

    def algorithms(self, server_sig_algs: Sequence[str] = ()) -> list[str]:
        """Signature algorithms to try for this key, best first."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            algs = ["rsa-sha2-512", "rsa-sha2-256"]
            if server_sig_algs:
                sha2 = [a for a in algs if a in server_sig_algs]
                # SHA-1 signatures (plain ssh-rsa) only when the server says that is all it
                # takes: OpenSSH 9 refuses them unless configured to accept them.
                if not sha2 and "ssh-rsa" in server_sig_algs:
                    return ["ssh-rsa"]
                algs = sha2 or algs
            return algs
        return [self.key_type]

    def sign(self, algorithm: str, data: bytes) -> bytes:
        """An SSH signature blob: string(algorithm) || string(signature)."""
        key = self.key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.sign(data)
        elif isinstance(key, rsa.RSAPrivateKey):
            digest = _RSA_HASH.get(algorithm)
            if digest is None:
                raise SSHUsageError(f"{algorithm} is not an RSA signature algorithm")
            raw = key.sign(data, padding.PKCS1v15(), digest)
        else:
            der = key.sign(data, ec.ECDSA(_EC_HASH[key.curve.name]))
            r, s = decode_dss_signature(der)
            raw = mpint(r) + mpint(s)
        return string(algorithm) + string(raw)


def load_private_key(path: str | os.PathLike[str], passphrase: str | bytes | None = None
                     ) -> UserKey:
    """Load an OpenSSH (or PEM) private key file; raises :class:`KeyLoadError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read key {path}: {exc.strerror}") from None
    pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key: object
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, pw)
        else:
            key = serialization.load_pem_private_key(data, pw)
    except TypeError as exc:
        if pw is None:
            raise PassphraseRequired(f"key {path} is encrypted: a passphrase is needed") from None
        raise KeyLoadError(f"cannot load key {path}: {exc}") from None
    except ValueError as exc:
        raise KeyLoadError(f"cannot load key {path} (wrong passphrase?): {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
                      | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"key {path}: unsupported key type {type(key).__name__}")
    return UserKey(key, comment=str(path))


def ecdsa_type_name(key: ec.EllipticCurvePrivateKey) -> str:
    return "ecdsa-sha2-" + _EC_NAME[key.curve.name]
