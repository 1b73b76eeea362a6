"""A scripted TLS 1.3 server built on vipernet's own record layer and key schedule.

It exists to misbehave on purpose where a real server cannot be made to: a bad
CertificateVerify signature, a bad Finished, a message injected in any state.  It runs
in memory against a TLSClientConnection (``pump()`` moves bytes both ways), so these
tests need no sockets and no peer binaries.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.tls.pki import Issued, PrivateKey
from vipernet.buffer import Buffer
from vipernet.tls.config import TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import (
    HELLO_RETRY_REQUEST_RANDOM,
    CipherSuite,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
)
from vipernet.tls.key_exchange import KeyShare
from vipernet.tls.key_schedule import (
    SUITES,
    KeySchedule,
    finished_verify_data,
    next_traffic_secret,
    resumption_psk,
)
from vipernet.tls.messages import (
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Extension,
    Finished,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    alpn_ext,
    cookie_ext,
    find_extension,
    parse_handshake,
    serialize_handshake,
    signature_algorithms_ext,
)
from vipernet.tls.record import RecordCipher, RecordLayer
from vipernet.tls.signatures import signed_content


def sign(key: PrivateKey, content: bytes) -> tuple[int, bytes]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return SignatureScheme.ED25519, key.sign(content)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp384r1":
            return SignatureScheme.ECDSA_SECP384R1_SHA384, key.sign(content, ec.ECDSA(
                hashes.SHA384()))
        return SignatureScheme.ECDSA_SECP256R1_SHA256, key.sign(content, ec.ECDSA(
            hashes.SHA256()))
    assert isinstance(key, rsa.RSAPrivateKey)
    return SignatureScheme.RSA_PSS_RSAE_SHA256, key.sign(
        content, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


@dataclass
class Script:
    """How the fake server should (mis)behave."""

    suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256
    hello_retry: bool = False  # ask for secp256r1 with a cookie
    alpn: str | None = None
    corrupt_signature: bool = False
    corrupt_finished: bool = False
    # raw handshake messages to send just before the named step of the server flight:
    # "server_hello", "encrypted_extensions", "certificate", "certificate_verify", "finished"
    inject_before: dict[str, bytes] = field(default_factory=dict)
    # whole records (content type, content) to send just before the named step
    inject_record_before: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    replace_server_hello_version: bool = False  # answer like a TLS 1.2 server
    tickets: int = 0
    request_certificate: bool = False
    certificate_extension_bytes: int = 0  # an unknown extension on the leaf entry
    accept_psk: bool = True
    server_random: bytes | None = None


class FakeServer:
    def __init__(self, leaf: Issued, chain: tuple[Issued, ...] = (), *,
                 script: Script | None = None, seed: int = 7) -> None:
        self.leaf, self.chain = leaf, chain
        self.script = script or Script()
        self.rng = random.Random(seed)
        self.records = RecordLayer()
        self.hs_buffer = bytearray()
        self.schedule: KeySchedule | None = None
        self.params = SUITES[self.script.suite]
        self.state = "wait_client_hello"
        self.client_hs = self.server_hs = b""
        self.client_app = self.server_app = b""
        self.app_received = bytearray()
        self.alerts_received: list[int] = []
        self.retried = False
        self.cookie = b"cookie-" + self.rng.randbytes(16)
        self.tickets: dict[bytes, bytes] = {}  # ticket -> psk
        self.resumed = False
        self.key_updates_received = 0
        self.client_certificate: bytes | None = None
        self.binder_ok = False

    # -- plumbing -----------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self.records.feed(data)
        while (rec := self.records.next_record()) is not None:
            ctype, content, _ = rec
            if ctype == ContentType.CHANGE_CIPHER_SPEC:
                continue
            if ctype == ContentType.ALERT:
                self.alerts_received.append(content[1])
                continue
            if ctype == ContentType.APPLICATION_DATA:
                self.app_received += content
                continue
            self.hs_buffer += content
            while len(self.hs_buffer) >= 4:
                length = int.from_bytes(self.hs_buffer[1:4], "big")
                if len(self.hs_buffer) < 4 + length:
                    break
                raw = bytes(self.hs_buffer[:4 + length])
                del self.hs_buffer[:4 + length]
                self._on_message(raw)

    def output(self) -> bytes:
        return self.records.take_output()

    def send_handshake(self, raw: bytes) -> None:
        self.records.write(ContentType.HANDSHAKE, raw)

    def send_app(self, data: bytes) -> None:
        self.records.write(ContentType.APPLICATION_DATA, data)

    def send_alert(self, description: int) -> None:
        self.records.write(ContentType.ALERT, bytes((2 if description else 1, description)))

    def send_key_update(self, request: bool) -> None:
        self.send_handshake(serialize_handshake(KeyUpdate(request_update=int(request))))
        cipher = self.records.write_cipher
        assert cipher is not None
        self.records.write_cipher = RecordCipher(
            self.params, next_traffic_secret(self.params.hash_name, cipher.secret))

    def send_ticket(self, nonce: bytes) -> None:
        assert self.schedule is not None
        ticket = b"ticket-" + self.rng.randbytes(24)
        psk = resumption_psk(self.params.hash_name, self.resumption_master, nonce)
        self.tickets[ticket] = psk
        self.send_handshake(serialize_handshake(NewSessionTicket(
            lifetime=3600, age_add=self.rng.getrandbits(32), nonce=nonce, ticket=ticket)))

    # -- handshake ----------------------------------------------------------------------

    def _on_message(self, raw: bytes) -> None:
        msg_type = raw[0]
        if self.state == "wait_client_hello":
            assert msg_type == HandshakeType.CLIENT_HELLO
            self._on_client_hello(raw)
        elif self.state == "wait_finished":
            assert msg_type in (HandshakeType.FINISHED, HandshakeType.CERTIFICATE)
            assert self.schedule is not None
            if msg_type == HandshakeType.CERTIFICATE:
                self.client_certificate = raw
                self.schedule.update(raw)
                return
            expected = finished_verify_data(self.params.hash_name, self.client_hs,
                                            self.schedule.transcript_hash())
            assert raw[4:] == expected, "client Finished does not verify"
            self.schedule.update(raw)
            self.resumption_master = self.schedule.resumption_master_secret()
            self.records.read_cipher = RecordCipher(self.params, self.client_app)
            self.state = "connected"
            for i in range(self.script.tickets):
                self.send_ticket(bytes((i,)))
        elif self.state == "connected":
            assert msg_type == HandshakeType.KEY_UPDATE
            cipher = self.records.read_cipher
            assert cipher is not None
            self.records.read_cipher = RecordCipher(
                self.params, next_traffic_secret(self.params.hash_name, cipher.secret))
            self.key_updates_received += 1
            if raw[4] == 1:
                self.send_key_update(False)

    def _on_client_hello(self, raw: bytes) -> None:
        hello = parse_handshake(raw[0], raw[4:])
        assert isinstance(hello, ClientHello)
        script = self.script
        shares = self._client_shares(hello)
        if script.hello_retry and not self.retried:
            self.retried = True
            schedule = KeySchedule(self.params.hash_name)
            schedule.update(raw)
            schedule.replace_with_message_hash()
            hrr = serialize_handshake(ServerHello(
                random=HELLO_RETRY_REQUEST_RANDOM, legacy_session_id_echo=hello.legacy_session_id,
                cipher_suite=script.suite, extensions=(
                    Extension(type=ExtensionType.SUPPORTED_VERSIONS, data=_u16(0x0304)),
                    Extension(type=ExtensionType.KEY_SHARE, data=_u16(NamedGroup.SECP256R1)),
                    cookie_ext(self.cookie))))
            schedule.update(hrr)
            self.schedule = schedule
            self.records.write(ContentType.HANDSHAKE, hrr)
            return
        if self.retried:
            cookie = find_extension(hello.extensions, ExtensionType.COOKIE)
            assert cookie is not None and cookie[2:] == self.cookie, "cookie not echoed"
        schedule = self.schedule or KeySchedule(self.params.hash_name)
        psk_extension: list[Extension] = []
        psk_data = find_extension(hello.extensions, ExtensionType.PRE_SHARED_KEY)
        if psk_data is not None and script.accept_psk:
            identity = Buffer(psk_data)
            with identity.pull_block(2):
                ticket = identity.pull_vector(2)
                identity.pull_uint32()
                while not identity.eof():
                    identity.pull_vector(2)
                    identity.pull_uint32()
            binders = []
            with identity.pull_block(2):
                while not identity.eof():
                    binders.append(identity.pull_vector(1))
            psk = self.tickets.get(ticket)
            if psk is not None:
                # Check the client's binder over the ClientHello up to the binders list.
                truncated = raw[: len(raw) - (2 + sum(1 + len(b) for b in binders))]
                prefix = self.schedule or KeySchedule(self.params.hash_name)
                check = KeySchedule(self.params.hash_name)
                check.set_psk(psk)
                self.binder_ok = binders[0] == check.binder(prefix.transcript_hash_with(truncated))
                assert self.binder_ok, "PSK binder does not verify"
                schedule.set_psk(psk)
                self.resumed = True
                psk_extension = [Extension(type=ExtensionType.PRE_SHARED_KEY, data=_u16(0))]
        schedule.update(raw)
        group = NamedGroup.SECP256R1 if self.retried else NamedGroup.X25519
        mine = KeyShare(group, self.rng)
        shared = mine.exchange(shares[group])
        server_hello = serialize_handshake(ServerHello(
            random=script.server_random or self.rng.randbytes(32),
            legacy_session_id_echo=hello.legacy_session_id, cipher_suite=script.suite,
            extensions=(
                Extension(type=ExtensionType.KEY_SHARE,
                          data=_u16(group) + _u16(len(mine.public)) + mine.public),
                *([] if script.replace_server_hello_version else [
                    Extension(type=ExtensionType.SUPPORTED_VERSIONS, data=_u16(0x0304))]),
                *psk_extension)))
        self._inject("server_hello")
        self.records.write(ContentType.HANDSHAKE, server_hello)
        schedule.update(server_hello)
        self.schedule = schedule
        if script.replace_server_hello_version:
            return
        self.client_hs, self.server_hs = schedule.handshake_secrets(shared)
        self.records.write_cipher = RecordCipher(self.params, self.server_hs)
        self.records.read_cipher = RecordCipher(self.params, self.client_hs)
        self._send_flight()

    def _client_shares(self, hello: ClientHello) -> dict[int, bytes]:
        data = find_extension(hello.extensions, ExtensionType.KEY_SHARE)
        assert data is not None
        buf = Buffer(data)
        shares = {}
        with buf.pull_block(2):
            while not buf.eof():
                group = buf.pull_uint16()
                shares[group] = buf.pull_vector(2)
        return shares

    def _inject(self, step: str) -> None:
        record = self.script.inject_record_before.get(step)
        if record is not None:
            if record[0] == ContentType.CHANGE_CIPHER_SPEC:
                self.records.write_raw(bytes((20, 3, 3, 0, len(record[1]))) + record[1])
            else:
                self.records.write(*record)
        raw = self.script.inject_before.get(step)
        if raw is not None:
            self.records.write(ContentType.HANDSHAKE, raw)

    def _send(self, step: str, raw: bytes) -> None:
        assert self.schedule is not None
        self._inject(step)
        self.records.write(ContentType.HANDSHAKE, raw)
        self.schedule.update(raw)

    def _send_flight(self) -> None:
        schedule, script = self.schedule, self.script
        assert schedule is not None
        extensions = (alpn_ext([script.alpn.encode()]),) if script.alpn else ()
        self._send("encrypted_extensions",
                   serialize_handshake(EncryptedExtensions(extensions=extensions)))
        if script.request_certificate:
            self._send("certificate_request", serialize_handshake(CertificateRequest(
                request_context=b"", extensions=(signature_algorithms_ext([0x0403]),))))
        if not self.resumed:
            entries = tuple(CertificateEntry(cert_data=c.der()) for c in (self.leaf, *self.chain))
            if script.certificate_extension_bytes:
                bulky = Extension(type=0xFAFA, data=bytes(script.certificate_extension_bytes))
                entries = (CertificateEntry(cert_data=self.leaf.der(), extensions=(bulky,)),
                           *entries[1:])
            self._send("certificate", serialize_handshake(
                Certificate(request_context=b"", entries=entries)))
            scheme, signature = sign(self.leaf.key,
                                     signed_content(schedule.transcript_hash()))
            if script.corrupt_signature:
                signature = signature[:-1] + bytes((signature[-1] ^ 1,))
            self._send("certificate_verify", serialize_handshake(
                CertificateVerify(algorithm=scheme, signature=signature)))
        verify = finished_verify_data(self.params.hash_name, self.server_hs,
                                      schedule.transcript_hash())
        if script.corrupt_finished:
            verify = bytes(len(verify))
        self._send("finished", serialize_handshake(Finished(verify_data=verify)))
        self.client_app, self.server_app, _ = schedule.application_secrets()
        self.records.write_cipher = RecordCipher(self.params, self.server_app)
        self.state = "wait_finished"


def client_for(server_name: str = "localhost", *, trust_pem: bytes | None = None,
               now: float | None = None, seed: int = 1, **config: object) -> TLSClientConnection:
    from tests.tls.pki import NOW
    from vipernet.tls.certificates import TrustStore

    trust = TrustStore.from_pem(trust_pem) if trust_pem is not None else None
    cfg = TLSConfig(server_name=server_name, trust=trust, **config)  # type: ignore[arg-type]
    return TLSClientConnection(cfg, now=now if now is not None else NOW.timestamp(),
                               rng=random.Random(seed))


def pump(client: TLSClientConnection, server: FakeServer, *, rounds: int = 6) -> None:
    """Move bytes both ways until neither side has anything to say."""
    for _ in range(rounds):
        out = client.data_to_send()
        if out:
            server.receive(out)
        back = server.output()
        if back:
            client.receive_data(back)
        if not out and not back:
            return


def transcript_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
