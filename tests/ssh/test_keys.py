"""User keys: which signature algorithm an RSA key uses, and that its signatures verify."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vipernet.ssh.codec import SSHBuffer
from vipernet.ssh.errors import SSHUsageError
from vipernet.ssh.keys import UserKey

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(("server_sig_algs", "expected"), [
    ((), ["rsa-sha2-512", "rsa-sha2-256"]),  # no EXT_INFO: SHA-2, best first
    (("ssh-ed25519", "ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"),
     ["rsa-sha2-512", "rsa-sha2-256"]),
    (("ssh-rsa", "rsa-sha2-256"), ["rsa-sha2-256"]),
    (("ssh-ed25519", "ssh-rsa"), ["ssh-rsa"]),  # SHA-1 only when nothing better is named
    (("ssh-ed25519",), ["rsa-sha2-512", "rsa-sha2-256"]),
])
def test_an_rsa_key_signs_with_sha1_only_when_the_server_names_nothing_better(
        server_sig_algs: tuple[str, ...], expected: list[str]) -> None:
    assert UserKey(KEY).algorithms(server_sig_algs) == expected


@pytest.mark.parametrize(("alg", "digest"), [("rsa-sha2-512", hashes.SHA512()),
                                             ("rsa-sha2-256", hashes.SHA256()),
                                             ("ssh-rsa", hashes.SHA1())])
def test_rsa_signatures_name_their_algorithm_and_use_its_hash(
        alg: str, digest: hashes.HashAlgorithm) -> None:
    blob = SSHBuffer(UserKey(KEY).sign(alg, b"data to sign"))
    assert blob.pull_string() == alg.encode()
    KEY.public_key().verify(blob.pull_string(), b"data to sign", padding.PKCS1v15(), digest)
    blob.expect_end("signature")


def test_an_unknown_rsa_signature_algorithm_is_a_usage_error() -> None:
    with pytest.raises(SSHUsageError):
        UserKey(KEY).sign("rsa-sha2-384", b"x")
