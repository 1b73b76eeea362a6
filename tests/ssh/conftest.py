"""Fixtures for the SSH tests: a pinned OpenSSH sshd per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ssh.sshd import Sshd

# The spec's algorithms, exactly; the server's defaults otherwise.
PINNED = """KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
Ciphers aes128-ctr,aes256-ctr
MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-256,hmac-sha1-etm@openssh.com,hmac-sha1
HostKeyAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256
PubkeyAcceptedAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256
AcceptEnv VN_*
PasswordAuthentication yes
ClientAliveInterval 0
"""


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = Sshd(extra=PINNED)
    try:
        yield server
    finally:
        server.stop()
