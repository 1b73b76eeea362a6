"""The whole client over a socketpair against paramiko in server mode: no root, no sshd.

A second, independent implementation of the server side checks the handshake, strict KEX,
both RSA signature hashes, publickey and password auth, exec, stdin/stdout/stderr, exit
status, server-initiated rekeys, and keepalive replies -- everywhere the unit tests run.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest

from vipernet.ssh.algorithms import Preferences
from vipernet.ssh.client import SSHClient
from vipernet.ssh.errors import AuthenticationFailed, SSHTimeout
from vipernet.ssh.keys import UserKey


class Server(paramiko.ServerInterface):
    def __init__(self, allowed_blob: bytes, password: str) -> None:
        self.allowed_blob = allowed_blob
        self.password = password
        self.exec_done = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = key.asbytes() == self.allowed_blob
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        ok = password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def run() -> None:
            data = b""
            while chunk := channel.recv(65536):
                data += chunk
            channel.sendall(b"cmd=" + command + b" got=" + str(len(data)).encode())
            channel.sendall_stderr(b"warn")
            channel.send_exit_status(len(data) % 256)
            channel.close()
            self.exec_done.set()

        threading.Thread(target=run, daemon=True).start()
        return True


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, Any, Server, UserKey]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    host_kind = getattr(request, "param", "ed25519")
    ours, theirs = socket.socketpair()
    user = UserKey(ed25519.Ed25519PrivateKey.generate())
    server = Server(user.public_blob, "s3cret")
    t = paramiko.Transport(theirs)
    if host_kind == "rsa":
        t.add_server_key(paramiko.RSAKey.generate(2048))
    else:
        from cryptography.hazmat.primitives import serialization

        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption())
        import io

        t.add_server_key(paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode())))
    t.start_server(event=threading.Event(), server=server)  # returns at once
    try:
        yield ours, t, server, user
    finally:
        t.close()
        ours.close()
        theirs.close()


def _connect(sock: socket.socket, user: UserKey, **kw: Any) -> SSHClient:
    return SSHClient.connect(sock=sock, username="alice", keys=[user],
                             verify_host_key=lambda key: None, timeout=20, **kw)


def test_handshake_auth_and_exec_against_paramiko(peer: Any) -> None:
    sock, _transport, _server, user = peer
    client = _connect(sock, user)
    try:
        assert client.conn.transport.strict_kex  # paramiko 3.4+ speaks strict KEX too
        status, out, err = client.exec("count", stdin=b"x" * 300_000)
        assert (status, out, err) == (300_000 % 256, b"cmd=count got=300000", b"warn")
    finally:
        client.close()


@pytest.mark.parametrize("peer", ["rsa"], indirect=True)
@pytest.mark.parametrize("alg", ["rsa-sha2-512", "rsa-sha2-256"])
def test_rsa_host_key_signatures_with_sha2_verify(peer: Any, alg: str) -> None:
    sock, _transport, _server, user = peer
    with _connect(sock, user, prefs=Preferences(host_key=(alg,))) as client:
        n = client.conn.transport.negotiated
        assert n is not None and n.host_key == alg


def test_password_auth_after_an_unknown_key(peer: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    sock, _transport, _server, _user = peer
    stranger = UserKey(ed25519.Ed25519PrivateKey.generate())
    with SSHClient.connect(sock=sock, username="alice", keys=[stranger], password="s3cret",
                           verify_host_key=lambda key: None, timeout=20) as client:
        assert client.conn.auth.tried == ["publickey (ssh-ed25519)", "password"]


def test_wrong_password_is_authentication_failed(peer: Any) -> None:
    sock, _transport, _server, _user = peer
    with pytest.raises(AuthenticationFailed, match="password"):
        SSHClient.connect(sock=sock, username="alice", password="nope",
                          verify_host_key=lambda key: None, timeout=20)


def test_server_initiated_rekeys_keep_the_session_alive(peer: Any) -> None:
    sock, transport, _server, user = peer
    with _connect(sock, user) as client:
        for i in range(3):
            # renegotiate_keys() blocks until the rekey is done, and we must pump to do it.
            rekey = threading.Thread(target=transport.renegotiate_keys, daemon=True)
            rekey.start()
            client.pump(lambda n=i + 2: client.conn.transport.kex_count >= n, timeout=10)
            rekey.join(10)
            assert client.exec(f"after-{i}").stdout.startswith(f"cmd=after-{i}".encode())
        assert client.conn.transport.kex_count == 4


def test_keepalive_requests_are_answered_by_paramiko(peer: Any) -> None:
    import time

    sock, _transport, _server, user = peer
    with _connect(sock, user, keepalive_interval=0.05) as client:
        end = time.monotonic() + 0.5
        client.pump(lambda: time.monotonic() > end, timeout=5)
        assert client.conn._keepalive_unanswered <= 1


def test_a_server_that_goes_silent_is_detected_by_keepalives(peer: Any) -> None:
    import time

    sock, _transport, _server, user = peer
    # A relay between our client and the paramiko server that can stop passing replies.
    ours, relay_end = socket.socketpair()
    silent = threading.Event()
    stop = threading.Event()

    def relay(src: socket.socket, dst: socket.socket, gated: bool) -> None:
        src.settimeout(0.05)
        while not stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if not (gated and silent.is_set()):
                dst.sendall(data)

    threads = [threading.Thread(target=relay, args=(relay_end, sock, False), daemon=True),
               threading.Thread(target=relay, args=(sock, relay_end, True), daemon=True)]
    for t in threads:
        t.start()
    try:
        client = SSHClient.connect(sock=ours, username="alice", keys=[user],
                                   verify_host_key=lambda key: None, timeout=20,
                                   keepalive_interval=0.1)
        silent.set()
        start = time.monotonic()
        with pytest.raises(SSHTimeout, match="keepalive"):
            client.pump(lambda: False, timeout=10)
        assert time.monotonic() - start < 5.0  # 3 unanswered at 0.1 s, well before the 10 s
        client.close()
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        ours.close()
        relay_end.close()
