"""vipernet.tls against real servers on loopback: openssl s_server and gnutls-serv."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

import vipernet.tls as tls
from tests.tls.peers import GnuTLSServer, OpenSSLServer
from tests.tls.pki import DAY, NOW, Issued, make_ca, make_leaf
from vipernet.tls.constants import CipherSuite, NamedGroup
from vipernet.tls.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    HostnameMismatch,
    MissingIntermediate,
    ProtocolVersionError,
    SelfSignedCertificate,
    TLSError,
    UnknownCA,
    WrongKeyUsage,
)
from vipernet.tls.wrap import TLSSocket

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca("vipernet interop root")


@pytest.fixture(scope="module")
def cafile(root: Issued, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "root.pem"
    path.write_bytes(root.pem())
    return str(path)


@pytest.fixture(scope="module")
def www(root: Issued) -> Iterator[OpenSSLServer]:
    with OpenSSLServer(make_leaf(root), args=("-www", "-num_tickets", "3",
                                              "-alpn", "h2,http/1.1")) as server:
        yield server


def fetch(sock: TLSSocket, path: str = "/") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    sock.close()
    return b"".join(chunks)


def test_https_page_from_openssl_www(www: OpenSSLServer, cafile: str) -> None:
    sock = tls.wrap(www.connect(), server_hostname="localhost", cafile=cafile)
    assert sock.version() == "TLSv1.3"
    body = fetch(sock)
    assert body.startswith(b"HTTP/1.0 200 ok")
    assert b"TLSv1.3" in body


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_each_suite_pinned_on_the_server_works(root: Issued, cafile: str,
                                               suite: CipherSuite) -> None:
    with OpenSSLServer(make_leaf(root), args=("-www", "-ciphersuites", suite.name)) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert sock.cipher() is not None and sock.cipher()[0] == suite.name  # type: ignore[index]
        body = fetch(sock)
        assert suite.name.encode() in body


@pytest.mark.parametrize("kind", ["rsa2048", "p256", "p384", "ed25519"])
def test_each_server_key_type_works(root: Issued, cafile: str, kind: str) -> None:
    with OpenSSLServer(make_leaf(root, key_kind=kind)) as server:
        sock = tls.wrap(server.connect(), server_hostname="127.0.0.1", cafile=cafile)
        assert fetch(sock).startswith(b"HTTP/1.0 200 ok")


def test_stateless_server_forces_hello_retry_with_cookie(root: Issued, cafile: str) -> None:
    # s_server applies -stateless in its interactive mode (not with -www).
    with OpenSSLServer(make_leaf(root), args=("-stateless",)) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert sock.connection._hello_retried
        sock.sendall(b"after a stateless retry\n")
        assert b"after a stateless retry" in server.read_output_until(b"after a stateless retry")
        sock.close()


def test_server_preferring_p256_gets_an_answer_to_its_hello_retry(root: Issued,
                                                                  cafile: str) -> None:
    with OpenSSLServer(make_leaf(root), args=("-www", "-groups", "P-256")) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert sock.connection.group == NamedGroup.SECP256R1
        assert fetch(sock).startswith(b"HTTP/1.0 200 ok")


def test_alpn_is_negotiated(www: OpenSSLServer, cafile: str) -> None:
    sock = tls.wrap(www.connect(), server_hostname="localhost", cafile=cafile,
                    alpn=["h2", "http/1.1"])
    assert sock.selected_alpn_protocol() == "h2"
    sock.close()


def test_several_tickets_are_accepted_and_resume(www: OpenSSLServer, cafile: str) -> None:
    sock = tls.wrap(www.connect(), server_hostname="localhost", cafile=cafile)
    fetch(sock)
    assert len(sock.connection.session_tickets) == 3
    again = tls.wrap(www.connect(), server_hostname="localhost", cafile=cafile,
                     session=sock.session)
    assert again.session_reused
    assert b"Reused, TLSv1.3" in fetch(again)


def test_resumption_with_a_hello_retry_request_for_p256(root: Issued, cafile: str) -> None:
    with OpenSSLServer(make_leaf(root), args=("-www", "-groups", "P-256")) as server:
        first = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        fetch(first)
        again = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile,
                         session=first.session)
        assert again.connection._hello_retried and again.session_reused
        assert b"Reused, TLSv1.3" in fetch(again)


def test_server_key_update_is_answered(root: Issued, cafile: str) -> None:
    # -msg makes s_server print every handshake message it receives, in hex.
    with OpenSSLServer(make_leaf(root), args=("-msg",)) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        sock.sendall(b"before\n")
        assert b"before" in server.read_output_until(b"before")
        server.stdin.write(b"K\n")
        server.stdin.flush()
        # s_server drops whatever follows "K" in the same read: the next line goes only once
        # it has acted on this one (a fixed 0.2 s pause can be too short on a loaded machine).
        sent = b">>> TLS 1.3, Handshake [length 0005], KeyUpdate\n    18 00 00 01 01\n"
        assert sent in server.read_output_until(sent)
        server.stdin.write(b"after the update\n")
        server.stdin.flush()
        got = b""
        while b"after the update" not in got:
            got += sock.recv(4096)
        assert sock.connection.counters["key_updates_received"] == 1
        assert sock.connection.counters["key_updates_sent"] == 1
        # Our data after the answer is read under our new key, and s_server saw the answer:
        # a KeyUpdate with update_not_requested (0), so the two do not ping-pong.
        sock.sendall(b"client after update\n")
        output = server.read_output_until(b"client after update")
        assert b"client after update" in output
        assert b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate\n    18 00 00 01 00\n" in output
        sock.close()


def test_100_megabytes_download_is_sha256_equal(root: Issued, cafile: str) -> None:
    with OpenSSLServer(make_leaf(root), args=("-WWW",)) as server:
        payload = os.urandom(100 * 1024 * 1024)
        (server.workdir / "big.bin").write_bytes(payload)
        expected = hashlib.sha256(payload).hexdigest()
        del payload
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        sock.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
        digest = hashlib.sha256()
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1 << 20)
        header, _, rest = head.partition(b"\r\n\r\n")
        assert header.startswith(b"HTTP/1.0 200 ok")
        digest.update(rest)
        total = len(rest)
        while data := sock.recv(1 << 20):
            digest.update(data)
            total += len(data)
        sock.close()
        assert total == 100 * 1024 * 1024
        assert digest.hexdigest() == expected


def test_gnutls_server_works(root: Issued, cafile: str) -> None:
    with GnuTLSServer(make_leaf(root)) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert sock.version() == "TLSv1.3"
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        got = b""
        while b"</HTML>" not in got.upper() and (data := sock.recv(65536)):
            got += data
        assert b"HTTP/1.0 200 OK" in got
        sock.close()


def test_gnutls_server_with_ed25519_and_chacha(root: Issued, cafile: str) -> None:
    with GnuTLSServer(make_leaf(root, key_kind="ed25519"),
                      priority="NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"
                      ) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"  # type: ignore[index]
        sock.close()


# -- negative matrix against openssl: each refused, no application data exchanged ----------


def refused_by_client(leaf: Issued, chain: tuple[Issued, ...], cafile: str,
                      error: type[TLSError], hostname: str = "localhost",
                      args: tuple[str, ...] = (), tls13: bool = True,
                      server_says: bytes | None = None) -> None:
    """The client refuses with ``error``, tells s_server why, and no data ever flows.

    s_server runs interactive (no -www): it prints the alert it receives, and it prints
    "CIPHER is" only once a handshake has completed, which must never happen here, so
    neither side can have sent application data.  When the server is the one refusing,
    ``server_says`` is the reason it prints instead of our alert.
    """
    with OpenSSLServer(leaf, chain, args=args, tls13=tls13) as server:
        raw = server.connect()
        with pytest.raises(error):
            tls.wrap(raw, server_hostname=hostname, cafile=cafile)
        raw.close()
        expected = server_says or f"SSL alert number {int(error.alert)}\n".encode()
        output = server.read_output_until(expected, timeout=10)
    assert expected in output, output
    assert b"CIPHER is" not in output


def test_expired_certificate_is_refused(root: Issued, cafile: str) -> None:
    refused_by_client(make_leaf(root, not_before=NOW - 20 * DAY, not_after=NOW - DAY), (),
                      cafile, CertificateExpired)


def test_not_yet_valid_certificate_is_refused(root: Issued, cafile: str) -> None:
    refused_by_client(make_leaf(root, not_before=NOW + DAY, not_after=NOW + 20 * DAY), (),
                      cafile, CertificateNotYetValid)


def test_wrong_hostname_is_refused(root: Issued, cafile: str) -> None:
    refused_by_client(make_leaf(root), (), cafile, HostnameMismatch, hostname="wrong.test")


def test_self_signed_certificate_is_refused(cafile: str) -> None:
    refused_by_client(make_leaf(None), (), cafile, SelfSignedCertificate)


def test_unknown_ca_is_refused(cafile: str) -> None:
    stranger = make_ca("stranger root")
    refused_by_client(make_leaf(stranger), (stranger,), cafile, UnknownCA)


def test_missing_intermediate_is_refused(root: Issued, cafile: str) -> None:
    middle = make_ca("interop intermediate", parent=root)
    refused_by_client(make_leaf(middle), (), cafile, MissingIntermediate)


def test_chain_with_intermediate_is_accepted(root: Issued, cafile: str) -> None:
    middle = make_ca("interop intermediate", parent=root)
    with OpenSSLServer(make_leaf(middle), (middle,)) as server:
        sock = tls.wrap(server.connect(), server_hostname="localhost", cafile=cafile)
        assert len(sock.connection.peer_certificates) == 3
        assert fetch(sock).startswith(b"HTTP/1.0 200 ok")


def test_wrong_key_usage_is_refused(root: Issued, cafile: str) -> None:
    refused_by_client(make_leaf(root, key_kind="rsa2048", digital_signature=False), (), cafile,
                      WrongKeyUsage)


def test_tls12_only_server_is_refused(root: Issued, cafile: str) -> None:
    # It answers our TLS 1.3-only ClientHello with a protocol_version alert of its own.
    refused_by_client(make_leaf(root), (), cafile, ProtocolVersionError,
                      args=("-tls1_2",), tls13=False, server_says=b"unsupported protocol")


def test_socket_like_api_makefile_peercert_fileno_timeout(www: OpenSSLServer,
                                                          cafile: str) -> None:
    raw = www.connect()
    sock = tls.wrap(raw, server_hostname="localhost", cafile=cafile, timeout=10)
    assert sock.fileno() == raw.fileno()
    assert sock.gettimeout() == 10
    cert = sock.getpeercert()
    assert ("DNS", "localhost") in cert["subjectAltName"] and cert["verified"]
    assert sock.getpeercert(binary_form=True)[:1] == b"\x30"
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    buf = bytearray(10)
    assert sock.recv_into(buf) == 10 and buf == b"HTTP/1.0 2"
    reader = sock.makefile("rb")
    assert reader.readline() == b"00 ok\r\n"
    assert b"</HTML>" in reader.read().upper()  # the rest of the page, up to close_notify
    sock.close()


def test_insecure_mode_connects_to_self_signed_but_says_so() -> None:
    with OpenSSLServer(make_leaf(None)) as server, pytest.warns(UserWarning, match="DISABLED"):
        sock = tls.wrap(server.connect(), server_hostname="localhost", insecure=True)
    assert sock.insecure and not sock.getpeercert()["verified"]
    sock.close()
