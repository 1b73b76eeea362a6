"""Fixtures for the SSH tests: a pinned OpenSSH sshd per test module."""

from __future__ import annotations

import subprocess
import uuid
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


@pytest.fixture
def throwaway_user() -> Iterator[tuple[str, str]]:
    """A local user with a known password (for password / keyboard-interactive auth),
    deleted afterwards."""
    name = f"vn{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    subprocess.run(["useradd", "-M", "-d", "/tmp", "-s", "/bin/sh", name], check=True,
                   capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True,
                       capture_output=True)
        yield name, password
    finally:
        subprocess.run(["userdel", "-f", name], check=False, capture_output=True)
