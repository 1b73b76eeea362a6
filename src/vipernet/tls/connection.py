"""TLSClientConnection: the sans-IO TLS 1.3 client (RFC 8446).

Bytes from the server go in through :meth:`receive_data`; bytes for the server come out
of :meth:`data_to_send`; what happened comes out of :meth:`next_event`.  The caller
passes the current wall-clock time (for certificate validity and ticket ages) and a
``random.Random`` (use ``random.SystemRandom()`` outside tests) — the engine reads no
clock, draws no OS randomness and touches no file descriptor.

Flow: ``start_handshake()`` queues the ClientHello; each server message is checked
against the state table in :mod:`vipernet.tls.states`; a failure queues the matching
alert, moves to FAILED and raises the :class:`~vipernet.tls.errors.TLSError` that names
it.  After the handshake: application data both ways, NewSessionTicket (kept for
resumption), KeyUpdate (answered when asked), close_notify.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import random
import warnings
from collections import deque
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from vipernet.tls.alerts import AlertDescription, AlertLevel, encode_alert
from vipernet.tls.certificates import load_trust_store, parse_chain, verify_server_chain
from vipernet.tls.client_hello import build_client_hello, normalize_server_name, usable_ticket
from vipernet.tls.config import TLSConfig
from vipernet.tls.constants import (
    DOWNGRADE_TLS11,
    DOWNGRADE_TLS12,
    HELLO_RETRY_REQUEST_RANDOM,
    LEGACY_RECORD_VERSION_FIRST,
    LEGACY_VERSION,
    TLS13,
    CipherSuite,
    ContentType,
    ExtensionType,
    HandshakeType,
    KeyUpdateRequest,
)
from vipernet.tls.errors import (
    BadFinished,
    CertificateParseError,
    DecodeError,
    IllegalParameter,
    InternalError,
    MissingExtension,
    NoApplicationProtocol,
    PeerAlert,
    ProtocolVersionError,
    ServerRefusedTLS13,
    TLSError,
    TLSUsageError,
    UnexpectedMessage,
    UnsupportedExtension,
)
from vipernet.tls.events import (
    ApplicationDataReceived,
    CloseNotifyReceived,
    Event,
    HandshakeCompleted,
    KeyUpdateReceived,
    SessionTicketReceived,
)
from vipernet.tls.key_exchange import KeyShare
from vipernet.tls.key_schedule import (
    SUITES,
    KeySchedule,
    SuiteParams,
    finished_verify_data,
    next_traffic_secret,
    resumption_psk,
)
from vipernet.tls.messages import (
    MAX_HANDSHAKE_MESSAGE,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    EncryptedExtensions,
    Finished,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    find_extension,
    parse_cookie,
    parse_handshake,
    parse_hrr_key_share,
    parse_max_early_data,
    parse_server_alpn,
    parse_server_key_share,
    parse_server_pre_shared_key,
    parse_server_supported_version,
    serialize_handshake,
)
from vipernet.tls.record import RecordCipher, RecordLayer
from vipernet.tls.session import SessionTicket
from vipernet.tls.signatures import verify_certificate_verify
from vipernet.tls.states import HANDSHAKING, TRANSITIONS, State

log = logging.getLogger(__name__)

_CCS_RECORD = bytes((ContentType.CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1))
# Extensions a server may answer in each message, given what this client sends.
_SERVER_HELLO_EXTENSIONS = frozenset({ExtensionType.SUPPORTED_VERSIONS, ExtensionType.KEY_SHARE,
                                      ExtensionType.PRE_SHARED_KEY})
_HRR_EXTENSIONS = frozenset({ExtensionType.SUPPORTED_VERSIONS, ExtensionType.KEY_SHARE,
                             ExtensionType.COOKIE})
_ENCRYPTED_EXTENSIONS = frozenset({ExtensionType.SERVER_NAME, ExtensionType.SUPPORTED_GROUPS,
                                   ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION,
                                   # Tolerated and ignored: we never send a record above
                                   # 2^14 anyway (RFC 8448's server sends it).
                                   ExtensionType.RECORD_SIZE_LIMIT})


class TLSClientConnection:
    """One TLS 1.3 client connection, sans-IO."""

    def __init__(self, config: TLSConfig, *, now: float, rng: random.Random) -> None:
        self.config = config
        self._now = now
        self._rng = rng
        self.state = State.START
        self._records = RecordLayer()
        self._handshake_buffer = bytearray()
        self._events: deque[Event | list[bytes]] = deque()
        self.insecure = config.insecure
        if config.insecure:
            warnings.warn("vipernet.tls: certificate verification is DISABLED (insecure mode); "
                          "the server is not authenticated", stacklevel=2)
            log.warning("TLS insecure mode: server certificate is not verified")
        elif config.server_name is None:
            raise TLSUsageError("server_name is required to verify the server (or insecure=True)")
        self.server_name = normalize_server_name(config.server_name)
        self._trust = config.trust
        # Handshake working state.
        self._random = b""
        self._session_id = b""
        self._key_shares: dict[int, KeyShare] = {}
        self._client_hello_raw = b""
        self._hello_retried = False
        self._hrr_suite: int | None = None
        self._ccs_sent = False
        self._psk_offered: SessionTicket | None = None
        self._psk_accepted = False
        self._schedule: KeySchedule | None = None
        self._params: SuiteParams | None = None
        self._client_hs_secret = b""
        self._server_hs_secret = b""
        self._certificate_requested: bytes | None = None
        self._peer_public_key: Any = None
        self._resumption_master_secret = b""
        # Outcomes, readable by the caller.
        self.cipher_suite: CipherSuite | None = None
        self.group: int | None = None
        self.alpn_protocol: str | None = None
        self.peer_certificates: list[x509.Certificate] = []
        self.session_tickets: list[SessionTicket] = []
        self.session_resumed = False
        self.exporter_master_secret = b""
        self.close_notify_received = False
        self.close_notify_sent = False
        self.counters: dict[str, int] = {"key_updates_received": 0, "key_updates_sent": 0,
                                         "tickets_received": 0, "ccs_ignored": 0}

    # -- public API ---------------------------------------------------------------------

    def start_handshake(self) -> None:
        if self.state is not State.START:
            raise TLSUsageError(f"start_handshake() in state {self.state.value}")
        self._random = self._rng.randbytes(32)
        self._session_id = self._rng.randbytes(32)  # middlebox compatibility mode (D.4)
        for group in self.config.key_share_groups:
            self._key_shares[group] = KeyShare(group, self._rng)
        self._client_hello_raw = self._build_client_hello(cookie=None, prior_transcript=None)
        self._records.write(ContentType.HANDSHAKE, self._client_hello_raw,
                            record_version=LEGACY_RECORD_VERSION_FIRST)
        self._set_state(State.WAIT_SERVER_HELLO)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float | None = None) -> None:
        """Feed bytes from the server; raises the TLSError of a failed check (alert queued)."""
        if now is not None:
            self._now = now
        if self.state is State.FAILED:
            raise TLSUsageError("receive_data() on a failed connection")
        try:
            self._records.feed(data)
            self._process_records()
        except PeerAlert:
            self._set_state(State.FAILED)
            raise
        except TLSError as exc:
            self._fail(exc)
            raise
        except Exception as exc:
            # A safety net: whatever the peer sent, the caller sees a TLSError (and the peer
            # an internal_error alert), never a stray exception from deep inside.
            error = InternalError(f"unexpected failure while processing server data: {exc!r}")
            self._fail(error)
            raise error from exc

    def data_to_send(self) -> bytes:
        return self._records.take_output()

    def next_event(self) -> Event | None:
        if not self._events:
            return None
        item = self._events.popleft()
        if isinstance(item, list):
            return ApplicationDataReceived(data=b"".join(item))
        return item

    def send_application_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.state is not State.CONNECTED or self.close_notify_sent:
            raise TLSUsageError(f"cannot send application data in state {self.state.value}"
                                + (" after close()" if self.close_notify_sent else ""))
        self._records.write(ContentType.APPLICATION_DATA, data)

    def request_key_update(self, *, ask_peer: bool = True) -> None:
        """Send a KeyUpdate and switch to the next write key (RFC 8446 4.6.3)."""
        if self.state is not State.CONNECTED or self.close_notify_sent:
            raise TLSUsageError(f"cannot update keys in state {self.state.value}")
        self._send_key_update(KeyUpdateRequest.UPDATE_REQUESTED if ask_peer
                              else KeyUpdateRequest.UPDATE_NOT_REQUESTED)

    def close(self) -> None:
        """Queue close_notify; no more application data may be sent."""
        if self.close_notify_sent or self.state in (State.FAILED, State.START):
            return
        self._send_alert(AlertDescription.CLOSE_NOTIFY)
        self.close_notify_sent = True
        if self.state is State.CONNECTED and self.close_notify_received:
            self._set_state(State.CLOSED)

    @property
    def handshake_complete(self) -> bool:
        return self.state in (State.CONNECTED, State.CLOSED) and self._params is not None

    @property
    def latest_ticket(self) -> SessionTicket | None:
        return self.session_tickets[-1] if self.session_tickets else None

    # -- state and failure -------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        log.debug("tls client: %s -> %s", self.state.value, state.value)
        self.state = state

    def _fail(self, exc: TLSError) -> None:
        log.debug("tls client failed in %s: %s", self.state.value, exc)
        if self.state not in (State.FAILED, State.START):
            try:
                self._send_alert(exc.alert)
            except Exception:  # pragma: no cover - an alert we cannot encode is not worth more
                log.debug("could not queue alert %s", exc.alert)
        self._set_state(State.FAILED)

    def _send_alert(self, description: AlertDescription) -> None:
        self._records.write(ContentType.ALERT, encode_alert(description))

    # -- records -----------------------------------------------------------------------

    def _process_records(self) -> None:
        records = self._records
        hs_buf = self._handshake_buffer
        while True:
            record = records.next_record()
            if record is None:
                return
            content_type, content, protected = record
            if content_type == ContentType.APPLICATION_DATA:
                self._on_application_data(content, hs_buf)
            elif content_type == ContentType.HANDSHAKE:
                if not content:
                    raise UnexpectedMessage("empty handshake record")
                if not protected and records.read_cipher is not None:
                    raise UnexpectedMessage("plaintext handshake record after keys were agreed")
                hs_buf += content
                self._process_handshake_messages()
            elif content_type == ContentType.ALERT:
                if hs_buf:
                    raise UnexpectedMessage("alert interleaved with a fragmented handshake message")
                if not protected and self.state is State.CONNECTED:
                    # Anyone on the path can forge a plaintext alert; after the handshake
                    # a plaintext close_notify would be a truncation attack.
                    raise UnexpectedMessage("plaintext alert after the handshake")
                self._on_alert(content)
            elif content_type == ContentType.CHANGE_CIPHER_SPEC and not protected:
                # The compatibility CCS is ignored, once the first ClientHello is out and
                # until the handshake ends (RFC 8446 5).
                if bytes(content) != b"\x01" or self.state not in HANDSHAKING:
                    raise UnexpectedMessage(f"change_cipher_spec {bytes(content).hex()} in state "
                                            f"{self.state.value}")
                self.counters["ccs_ignored"] += 1
            else:
                raise UnexpectedMessage(f"record of content type {content_type} "
                                        f"({'protected' if protected else 'plaintext'}) in state "
                                        f"{self.state.value}")

    def _on_application_data(self, content: bytes | bytearray, hs_buf: bytearray) -> None:
        if self.state is not State.CONNECTED or self.close_notify_received:
            raise UnexpectedMessage(f"application data in state {self.state.value}")
        if hs_buf:
            raise UnexpectedMessage("application data interleaved with a fragmented handshake "
                                    "message")
        if not content:
            return
        events = self._events
        if events and isinstance(events[-1], list):
            events[-1].append(bytes(content))
        else:
            events.append([bytes(content)])

    def _on_alert(self, content: bytes | bytearray) -> None:
        if len(content) != 2:
            raise DecodeError(f"alert record of {len(content)} bytes (must be 2)")
        level, description = content[0], content[1]
        if description == AlertDescription.CLOSE_NOTIFY:
            self.close_notify_received = True
            self._events.append(CloseNotifyReceived())
            if self.state is State.CONNECTED and self.close_notify_sent:
                self._set_state(State.CLOSED)
            elif self.state in HANDSHAKING:
                raise PeerAlert(description)
            return
        if description == AlertDescription.USER_CANCELED and level == AlertLevel.WARNING:
            return
        if description == AlertDescription.PROTOCOL_VERSION and \
                self.state is State.WAIT_SERVER_HELLO:
            raise ServerRefusedTLS13()
        raise PeerAlert(description)

    def _process_handshake_messages(self) -> None:
        buf = self._handshake_buffer
        while len(buf) >= 4:
            msg_type = buf[0]
            length = int.from_bytes(buf[1:4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                raise DecodeError(f"handshake message of {length} bytes exceeds the "
                                  f"{MAX_HANDSHAKE_MESSAGE}-byte cap")
            if len(buf) < 4 + length:
                return
            raw = bytes(buf[: 4 + length])
            del buf[: 4 + length]
            handler_name = TRANSITIONS[self.state].get(msg_type)  # type: ignore[call-overload]
            if handler_name is None:
                raise UnexpectedMessage(f"{_type_name(msg_type)} is not allowed in state "
                                        f"{self.state.value}")
            message = parse_handshake(msg_type, raw[4:])
            key_change = getattr(self, handler_name)(message, raw)
            if key_change and buf:
                raise UnexpectedMessage(f"handshake data after {_type_name(msg_type)} spans a "
                                        "key change")

    # -- ClientHello -------------------------------------------------------------------

    def _build_client_hello(self, *, cookie: bytes | None,
                            prior_transcript: KeySchedule | None) -> bytes:
        ticket = usable_ticket(self.config, self.server_name, self._now, prior_transcript)
        self._psk_offered = ticket
        return build_client_hello(
            self.config, server_name=self.server_name, random=self._random,
            session_id=self._session_id,
            key_shares={group: share.public for group, share in self._key_shares.items()},
            cookie=cookie, ticket=ticket, now=self._now, prior_transcript=prior_transcript)

    # -- ServerHello / HelloRetryRequest -------------------------------------------------

    def _check_server_hello_common(self, msg: ServerHello) -> None:
        version_data = find_extension(msg.extensions, ExtensionType.SUPPORTED_VERSIONS)
        if version_data is None:
            raise ProtocolVersionError(
                f"server answered with version {msg.legacy_version:#06x} and no "
                "supported_versions: it does not speak TLS 1.3")
        version = parse_server_supported_version(version_data)
        if version != TLS13:
            raise ProtocolVersionError(f"server selected version {version:#06x}, not TLS 1.3")
        if msg.legacy_version != LEGACY_VERSION:
            raise ProtocolVersionError(f"ServerHello legacy_version {msg.legacy_version:#06x}")
        if msg.legacy_session_id_echo != self._session_id:
            raise IllegalParameter("ServerHello does not echo our legacy_session_id")
        if msg.cipher_suite not in self.config.cipher_suites:
            raise IllegalParameter(f"server chose cipher suite {msg.cipher_suite:#06x}, "
                                   "which we did not offer")
        if msg.legacy_compression_method != 0:
            raise IllegalParameter(f"compression method {msg.legacy_compression_method}")

    def _on_server_hello(self, msg: ServerHello, raw: bytes) -> bool:
        if msg.random[-8:] in (DOWNGRADE_TLS12, DOWNGRADE_TLS11) and \
                find_extension(msg.extensions, ExtensionType.SUPPORTED_VERSIONS) is not None:
            raise IllegalParameter("ServerHello random carries a downgrade sentinel")
        self._check_server_hello_common(msg)
        if msg.random == HELLO_RETRY_REQUEST_RANDOM:
            self._on_hello_retry_request(msg, raw)
            return True
        return self._on_real_server_hello(msg, raw)

    def _on_hello_retry_request(self, msg: ServerHello, raw: bytes) -> None:
        if self._hello_retried:
            raise UnexpectedMessage("second HelloRetryRequest")
        self._hello_retried = True
        for ext in msg.extensions:
            if ext.type not in _HRR_EXTENSIONS:
                raise UnsupportedExtension(f"HelloRetryRequest carries extension {ext.type}")
        group_data = find_extension(msg.extensions, ExtensionType.KEY_SHARE)
        cookie_data = find_extension(msg.extensions, ExtensionType.COOKIE)
        if group_data is None and cookie_data is None:
            raise IllegalParameter("HelloRetryRequest would not change the ClientHello")
        if group_data is not None:
            group = parse_hrr_key_share(group_data)
            if group not in self.config.groups or group in self._key_shares:
                raise IllegalParameter(f"HelloRetryRequest asks for group {group:#06x}, which we "
                                       "did not offer or already sent a share for")
            self._key_shares = {group: KeyShare(group, self._rng)}
        cookie = parse_cookie(cookie_data) if cookie_data is not None else None
        self._hrr_suite = msg.cipher_suite
        params = SUITES[CipherSuite(msg.cipher_suite)]
        schedule = KeySchedule(params.hash_name)
        schedule.update(self._client_hello_raw)
        schedule.replace_with_message_hash()
        schedule.update(raw)
        self._schedule = schedule
        self._params = params
        hello = self._build_client_hello(cookie=cookie, prior_transcript=schedule)
        schedule.update(hello)
        self._client_hello_raw = b""
        # The compatibility CCS waits for the encrypted flight: a stateless server (one that
        # forgets everything after its HelloRetryRequest) would choke on a CCS before CH2.
        self._records.write(ContentType.HANDSHAKE, hello)

    def _on_real_server_hello(self, msg: ServerHello, raw: bytes) -> bool:
        if self._hrr_suite is not None and msg.cipher_suite != self._hrr_suite:
            raise IllegalParameter("ServerHello cipher suite differs from the HelloRetryRequest's")
        for ext in msg.extensions:
            if ext.type not in _SERVER_HELLO_EXTENSIONS:
                raise UnsupportedExtension(f"ServerHello carries extension {ext.type}")
        params = SUITES[CipherSuite(msg.cipher_suite)]
        schedule = self._schedule
        if schedule is None:
            schedule = KeySchedule(params.hash_name)
            schedule.update(self._client_hello_raw)
            self._client_hello_raw = b""
        self._schedule, self._params = schedule, params
        psk_data = find_extension(msg.extensions, ExtensionType.PRE_SHARED_KEY)
        if psk_data is not None:
            ticket = self._psk_offered
            if ticket is None:
                raise IllegalParameter("server selected a PSK we did not offer")
            if parse_server_pre_shared_key(psk_data) != 0:
                raise IllegalParameter("server selected a PSK identity we did not offer")
            if ticket.hash_name != params.hash_name:
                raise IllegalParameter("server resumed with a suite whose hash differs from the "
                                       "ticket's")
            schedule.set_psk(ticket.psk)
            self._psk_accepted = True
        share_data = find_extension(msg.extensions, ExtensionType.KEY_SHARE)
        if share_data is None:
            raise MissingExtension("ServerHello has no key_share (we only do (EC)DHE)")
        group, peer_key = parse_server_key_share(share_data)
        share = self._key_shares.get(group)
        if share is None:
            raise IllegalParameter(f"server key share for group {group:#06x}, which we did not "
                                   "send")
        shared_secret = share.exchange(peer_key)
        self._key_shares = {}
        schedule.update(raw)
        self._client_hs_secret, self._server_hs_secret = schedule.handshake_secrets(shared_secret)
        self._records.read_cipher = RecordCipher(params, self._server_hs_secret)
        self._records.write_cipher = RecordCipher(params, self._client_hs_secret)
        self.cipher_suite = params.suite
        self.group = group
        self._set_state(State.WAIT_ENCRYPTED_EXTENSIONS)
        return True

    # -- the server's encrypted flight ------------------------------------------------

    def _on_encrypted_extensions(self, msg: EncryptedExtensions, raw: bytes) -> bool:
        for ext in msg.extensions:
            if ext.type not in _ENCRYPTED_EXTENSIONS:
                raise UnsupportedExtension(f"EncryptedExtensions carries extension {ext.type}, "
                                           "which we did not ask for")
        alpn = find_extension(msg.extensions, ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION)
        if alpn is not None:
            if not self.config.alpn_protocols:
                raise UnsupportedExtension("server answered ALPN that we did not offer")
            chosen = parse_server_alpn(alpn).decode("latin-1")
            if chosen not in self.config.alpn_protocols:
                raise NoApplicationProtocol(f"server chose ALPN {chosen!r}, not one of "
                                            f"{list(self.config.alpn_protocols)}")
            self.alpn_protocol = chosen
        assert self._schedule is not None
        self._schedule.update(raw)
        self._set_state(State.WAIT_FINISHED if self._psk_accepted
                        else State.WAIT_CERTIFICATE_OR_REQUEST)
        return False

    def _on_certificate_request(self, msg: CertificateRequest, raw: bytes) -> bool:
        if find_extension(msg.extensions, ExtensionType.SIGNATURE_ALGORITHMS) is None:
            raise MissingExtension("CertificateRequest without signature_algorithms")
        self._certificate_requested = msg.request_context
        assert self._schedule is not None
        self._schedule.update(raw)
        self._set_state(State.WAIT_CERTIFICATE)
        return False

    def _on_certificate(self, msg: Certificate, raw: bytes) -> bool:
        if msg.request_context:
            raise IllegalParameter("server Certificate has a non-empty request context")
        if not msg.entries:
            raise DecodeError("server sent an empty certificate list")
        ders = [entry.cert_data for entry in msg.entries]
        if self.config.insecure:
            self.peer_certificates = parse_chain(ders)
        else:
            trust = self._trust or load_trust_store(self.config.cafile)
            self._trust = trust
            now = datetime.datetime.fromtimestamp(self._now, datetime.UTC)
            assert self.server_name is not None
            self.peer_certificates = verify_server_chain(
                ders, hostname=self.server_name, trust=trust, now=now)
        try:
            self._peer_public_key = self.peer_certificates[0].public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateParseError(f"server certificate key is unusable: {exc}") from None
        assert self._schedule is not None
        self._schedule.update(raw)
        self._set_state(State.WAIT_CERTIFICATE_VERIFY)
        return False

    def _on_certificate_verify(self, msg: CertificateVerify, raw: bytes) -> bool:
        if msg.algorithm not in self.config.signature_schemes:
            raise IllegalParameter(f"CertificateVerify uses scheme {msg.algorithm:#06x}, which "
                                   "we did not offer")
        assert self._schedule is not None
        verify_certificate_verify(self._peer_public_key, msg.algorithm, msg.signature,
                                  self._schedule.transcript_hash())
        self._schedule.update(raw)
        self._set_state(State.WAIT_FINISHED)
        return False

    def _on_finished(self, msg: Finished, raw: bytes) -> bool:
        schedule, params = self._schedule, self._params
        assert schedule is not None and params is not None
        expected = finished_verify_data(params.hash_name, self._server_hs_secret,
                                        schedule.transcript_hash())
        if not hmac.compare_digest(expected, msg.verify_data):
            raise BadFinished("server Finished does not match the handshake transcript")
        schedule.update(raw)
        client_app, server_app, exporter = schedule.application_secrets()
        self.exporter_master_secret = exporter
        self._records.read_cipher = RecordCipher(params, server_app)
        if not self._ccs_sent:
            self._records.write_raw(_CCS_RECORD)
            self._ccs_sent = True
        if self._certificate_requested is not None:
            # We have no client certificate: an empty Certificate, and no CertificateVerify.
            empty = serialize_handshake(Certificate(
                request_context=self._certificate_requested, entries=()))
            schedule.update(empty)
            self._records.write(ContentType.HANDSHAKE, empty)
        verify_data = finished_verify_data(params.hash_name, self._client_hs_secret,
                                           schedule.transcript_hash())
        finished = serialize_handshake(Finished(verify_data=verify_data))
        schedule.update(finished)
        self._records.write(ContentType.HANDSHAKE, finished)
        self._records.write_cipher = RecordCipher(params, client_app)
        self._resumption_master_secret = schedule.resumption_master_secret()
        self._client_hs_secret = self._server_hs_secret = b""
        self.session_resumed = self._psk_accepted
        self._set_state(State.CONNECTED)
        self._events.append(HandshakeCompleted(
            cipher_suite=params.suite, alpn_protocol=self.alpn_protocol,
            session_resumed=self._psk_accepted, group=self.group))
        return True

    # -- post-handshake ----------------------------------------------------------------

    def _on_new_session_ticket(self, msg: NewSessionTicket, raw: bytes) -> bool:
        params = self._params
        assert params is not None
        max_early = 0
        early = find_extension(msg.extensions, ExtensionType.EARLY_DATA)
        if early is not None:
            max_early = parse_max_early_data(early)
        ticket = SessionTicket(
            ticket=msg.ticket, psk=resumption_psk(params.hash_name,
                                                  self._resumption_master_secret, msg.nonce),
            cipher_suite=params.suite, hash_name=params.hash_name, lifetime=msg.lifetime,
            age_add=msg.age_add, received_at=self._now, server_name=self.server_name,
            alpn_protocol=self.alpn_protocol, max_early_data=max_early)
        self.session_tickets.append(ticket)
        del self.session_tickets[:-8]  # keep the freshest few
        self.counters["tickets_received"] += 1
        self._events.append(SessionTicketReceived(ticket=ticket))
        return False

    def _on_key_update(self, msg: KeyUpdate, raw: bytes) -> bool:
        params, cipher = self._params, self._records.read_cipher
        assert params is not None and cipher is not None
        self._records.read_cipher = RecordCipher(params, next_traffic_secret(params.hash_name,
                                                                             cipher.secret))
        self.counters["key_updates_received"] += 1
        requested = msg.request_update == KeyUpdateRequest.UPDATE_REQUESTED
        # Every request is answered, even one that crossed a request of ours in flight
        # (RFC 8446 4.6.3: both sides then answer, and each moves two generations on).  The
        # answer never asks back, so two peers cannot keep each other updating.
        if requested and not self.close_notify_sent:
            self._send_key_update(KeyUpdateRequest.UPDATE_NOT_REQUESTED)
        self._events.append(KeyUpdateReceived(update_requested=requested))
        return True

    def _send_key_update(self, request: KeyUpdateRequest) -> None:
        params, cipher = self._params, self._records.write_cipher
        assert params is not None and cipher is not None
        self._records.write(ContentType.HANDSHAKE,
                            serialize_handshake(KeyUpdate(request_update=request)))
        self._records.write_cipher = RecordCipher(params, next_traffic_secret(params.hash_name,
                                                                              cipher.secret))
        self.counters["key_updates_sent"] += 1


def _type_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name
    except ValueError:
        return f"handshake type {msg_type}"
