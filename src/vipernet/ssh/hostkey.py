"""Server host keys: parse the public key blob, verify the exchange-hash signature.

Supported: ssh-ed25519, RSA with rsa-sha2-256/512 signatures (RFC 8332; the key blob is
always ``ssh-rsa``), ECDSA over the NIST curves (RFC 5656).  Signature checks go through
``cryptography``; a bad signature raises :class:`KexError`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vipernet.buffer import BufferUnderflow
from vipernet.ssh.codec import SSHBuffer
from vipernet.ssh.errors import KexError

_ECDSA_CURVES: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm]] = {
    "nistp256": (ec.SECP256R1(), hashes.SHA256()),
    "nistp384": (ec.SECP384R1(), hashes.SHA384()),
    "nistp521": (ec.SECP521R1(), hashes.SHA512()),
}

# Which key blob type each host key *algorithm* uses.
KEY_TYPE_OF_ALGORITHM = {
    "ssh-ed25519": "ssh-ed25519",
    "rsa-sha2-512": "ssh-rsa",
    "rsa-sha2-256": "ssh-rsa",
    "ssh-rsa": "ssh-rsa",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HostKey:
    """A public key as it travels (``blob``) with its type name."""

    key_type: str
    blob: bytes

    def fingerprint(self) -> str:
        """OpenSSH's ``SHA256:...`` fingerprint."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def openssh(self) -> str:
        """``type base64`` as in known_hosts and authorized_keys."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"


def parse_host_key(blob: bytes) -> HostKey:
    try:
        key_type = SSHBuffer(blob).pull_string("host key type").decode("ascii")
    except (BufferUnderflow, UnicodeDecodeError):
        raise KexError("host key blob is malformed") from None
    return HostKey(key_type=key_type, blob=blob)


def verify_signature(key: HostKey, algorithm: str, signature: bytes, data: bytes) -> None:
    """Check ``signature`` (an SSH signature blob) over ``data``; raise KexError if bad."""
    expected_type = KEY_TYPE_OF_ALGORITHM.get(algorithm)
    if expected_type != key.key_type:
        raise KexError(f"host key type {key.key_type} does not match algorithm {algorithm}")
    try:
        sig = SSHBuffer(signature)
        sig_alg = sig.pull_string("signature algorithm").decode("ascii")
        sig_bytes = sig.pull_string("signature")
        if sig_alg != algorithm:
            raise KexError(f"signature algorithm {sig_alg} differs from negotiated {algorithm}")
        kb = SSHBuffer(key.blob)
        kb.pull_string("key type")
        if key.key_type == "ssh-ed25519":
            ed = ed25519.Ed25519PublicKey.from_public_bytes(kb.pull_string("ed25519 key"))
            ed.verify(sig_bytes, data)
        elif key.key_type == "ssh-rsa":
            e = kb.pull_mpint("rsa e")
            n = kb.pull_mpint("rsa n")
            if n.bit_length() < 1024:
                raise KexError(f"RSA host key of {n.bit_length()} bits is too small")
            pub = rsa.RSAPublicNumbers(e, n).public_key()
            digest: hashes.HashAlgorithm = {
                "rsa-sha2-512": hashes.SHA512(), "rsa-sha2-256": hashes.SHA256(),
            }.get(algorithm, hashes.SHA1())
            pub.verify(sig_bytes, data, padding.PKCS1v15(), digest)
        elif key.key_type.startswith("ecdsa-sha2-"):
            curve_name = kb.pull_string("curve").decode("ascii")
            curve, digest = _ECDSA_CURVES[curve_name]
            point = kb.pull_string("Q")
            ecpub = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
            sb = SSHBuffer(sig_bytes)
            r = sb.pull_mpint("r")
            s = sb.pull_mpint("s")
            ecpub.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
        else:
            raise KexError(f"unsupported host key type {key.key_type}")
    except InvalidSignature:
        raise KexError(f"server's {algorithm} signature on the exchange hash is invalid") from None
    except (BufferUnderflow, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise KexError(f"malformed {algorithm} host key or signature: {exc}") from None
