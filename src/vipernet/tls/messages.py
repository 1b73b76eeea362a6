"""TLS 1.3 handshake messages and extensions: frozen dataclasses with pull_/push_ codecs.

Every ``pull_*`` reads from a :class:`vipernet.buffer.Buffer` holding one message body;
:func:`parse_handshake` picks the reader by message type and turns any short or
over-long field into :class:`~vipernet.tls.errors.DecodeError`.  Extensions are kept as
``(type, data)`` pairs in wire order, unknown ones included; the ``*_ext`` helpers
build and read the payloads this client understands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from vipernet.buffer import Buffer, Writer
from vipernet.errors import ProtocolError
from vipernet.tls.constants import LEGACY_VERSION, ExtensionType, HandshakeType
from vipernet.tls.errors import DecodeError, IllegalParameter, TLSError

MAX_HANDSHAKE_MESSAGE = 1 << 18  # far above any real certificate chain; a cap for hostile peers


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    type: int
    data: bytes


Extensions = tuple[Extension, ...]


def find_extension(extensions: Extensions, ext_type: int) -> bytes | None:
    for ext in extensions:
        if ext.type == ext_type:
            return ext.data
    return None


def pull_extensions(buf: Buffer) -> Extensions:
    out: list[Extension] = []
    seen: set[int] = set()
    with buf.pull_block(2, "extensions"):
        while not buf.eof():
            ext_type = buf.pull_uint16("extension type")
            data = buf.pull_vector(2, "extension data")
            if ext_type in seen:
                raise IllegalParameter(f"extension {ext_type} appears twice")
            seen.add(ext_type)
            out.append(Extension(type=ext_type, data=data))
    return tuple(out)


def push_extensions(w: Writer, extensions: Sequence[Extension]) -> None:
    with w.push_block(2):
        for ext in extensions:
            w.push_uint16(ext.type)
            w.push_vector(2, ext.data)


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    random: bytes
    legacy_session_id: bytes
    cipher_suites: tuple[int, ...]
    extensions: Extensions
    legacy_compression_methods: bytes = b"\x00"
    legacy_version: int = LEGACY_VERSION

    msg_type = HandshakeType.CLIENT_HELLO


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    random: bytes
    legacy_session_id_echo: bytes
    cipher_suite: int
    extensions: Extensions
    legacy_compression_method: int = 0
    legacy_version: int = LEGACY_VERSION

    msg_type = HandshakeType.SERVER_HELLO


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedExtensions:
    extensions: Extensions

    msg_type = HandshakeType.ENCRYPTED_EXTENSIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntry:
    cert_data: bytes
    extensions: Extensions = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    request_context: bytes
    entries: tuple[CertificateEntry, ...]

    msg_type = HandshakeType.CERTIFICATE


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRequest:
    request_context: bytes
    extensions: Extensions

    msg_type = HandshakeType.CERTIFICATE_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateVerify:
    algorithm: int
    signature: bytes

    msg_type = HandshakeType.CERTIFICATE_VERIFY


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    verify_data: bytes

    msg_type = HandshakeType.FINISHED


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSessionTicket:
    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    extensions: Extensions = ()

    msg_type = HandshakeType.NEW_SESSION_TICKET


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUpdate:
    request_update: int

    msg_type = HandshakeType.KEY_UPDATE


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfEarlyData:
    msg_type = HandshakeType.END_OF_EARLY_DATA


HandshakeMessage = (ClientHello | ServerHello | EncryptedExtensions | Certificate
                    | CertificateRequest | CertificateVerify | Finished | NewSessionTicket
                    | KeyUpdate | EndOfEarlyData)


def pull_client_hello(buf: Buffer) -> ClientHello:
    legacy_version = buf.pull_uint16("legacy_version")
    random = buf.pull_bytes(32, "random")
    session_id = buf.pull_vector(1, "legacy_session_id")
    if len(session_id) > 32:
        raise DecodeError(f"legacy_session_id of {len(session_id)} bytes (max 32)")
    suites_raw = buf.pull_vector(2, "cipher_suites")
    if len(suites_raw) % 2 or not suites_raw:
        raise DecodeError(f"cipher_suites vector of {len(suites_raw)} bytes")
    suites = _bytes_to_u16s(suites_raw)
    compression = buf.pull_vector(1, "legacy_compression_methods")
    return ClientHello(legacy_version=legacy_version, random=random, legacy_session_id=session_id,
                       cipher_suites=suites, legacy_compression_methods=compression,
                       extensions=pull_extensions(buf))


def push_client_hello(w: Writer, msg: ClientHello) -> None:
    w.push_uint16(msg.legacy_version)
    w.push_bytes(msg.random)
    w.push_vector(1, msg.legacy_session_id)
    w.push_vector(2, _u16s_to_bytes(msg.cipher_suites))
    w.push_vector(1, msg.legacy_compression_methods)
    push_extensions(w, msg.extensions)


def pull_server_hello(buf: Buffer) -> ServerHello:
    legacy_version = buf.pull_uint16("legacy_version")
    random = buf.pull_bytes(32, "random")
    session_id = buf.pull_vector(1, "legacy_session_id_echo")
    if len(session_id) > 32:
        raise DecodeError(f"legacy_session_id_echo of {len(session_id)} bytes (max 32)")
    suite = buf.pull_uint16("cipher_suite")
    compression = buf.pull_uint8("legacy_compression_method")
    # A TLS 1.2 ServerHello may end here; no extensions means no supported_versions.
    extensions = () if buf.eof() else pull_extensions(buf)
    return ServerHello(legacy_version=legacy_version, random=random,
                       legacy_session_id_echo=session_id, cipher_suite=suite,
                       legacy_compression_method=compression, extensions=extensions)


def push_server_hello(w: Writer, msg: ServerHello) -> None:
    w.push_uint16(msg.legacy_version)
    w.push_bytes(msg.random)
    w.push_vector(1, msg.legacy_session_id_echo)
    w.push_uint16(msg.cipher_suite)
    w.push_uint8(msg.legacy_compression_method)
    push_extensions(w, msg.extensions)


def pull_encrypted_extensions(buf: Buffer) -> EncryptedExtensions:
    return EncryptedExtensions(extensions=pull_extensions(buf))


def push_encrypted_extensions(w: Writer, msg: EncryptedExtensions) -> None:
    push_extensions(w, msg.extensions)


def pull_certificate(buf: Buffer) -> Certificate:
    context = buf.pull_vector(1, "certificate_request_context")
    entries: list[CertificateEntry] = []
    with buf.pull_block(3, "certificate_list"):
        while not buf.eof():
            cert_data = buf.pull_vector(3, "cert_data")
            if not cert_data:
                raise DecodeError("empty cert_data")
            entries.append(CertificateEntry(cert_data=cert_data, extensions=pull_extensions(buf)))
    return Certificate(request_context=context, entries=tuple(entries))


def push_certificate(w: Writer, msg: Certificate) -> None:
    w.push_vector(1, msg.request_context)
    with w.push_block(3):
        for entry in msg.entries:
            w.push_vector(3, entry.cert_data)
            push_extensions(w, entry.extensions)


def pull_certificate_request(buf: Buffer) -> CertificateRequest:
    context = buf.pull_vector(1, "certificate_request_context")
    return CertificateRequest(request_context=context, extensions=pull_extensions(buf))


def push_certificate_request(w: Writer, msg: CertificateRequest) -> None:
    w.push_vector(1, msg.request_context)
    push_extensions(w, msg.extensions)


def pull_certificate_verify(buf: Buffer) -> CertificateVerify:
    algorithm = buf.pull_uint16("algorithm")
    return CertificateVerify(algorithm=algorithm, signature=buf.pull_vector(2, "signature"))


def push_certificate_verify(w: Writer, msg: CertificateVerify) -> None:
    w.push_uint16(msg.algorithm)
    w.push_vector(2, msg.signature)


def pull_finished(buf: Buffer) -> Finished:
    return Finished(verify_data=buf.pull_rest())


def push_finished(w: Writer, msg: Finished) -> None:
    w.push_bytes(msg.verify_data)


def pull_new_session_ticket(buf: Buffer) -> NewSessionTicket:
    lifetime = buf.pull_uint32("ticket_lifetime")
    age_add = buf.pull_uint32("ticket_age_add")
    nonce = buf.pull_vector(1, "ticket_nonce")
    ticket = buf.pull_vector(2, "ticket")
    if not ticket:
        raise DecodeError("empty session ticket")
    return NewSessionTicket(lifetime=lifetime, age_add=age_add, nonce=nonce, ticket=ticket,
                            extensions=pull_extensions(buf))


def push_new_session_ticket(w: Writer, msg: NewSessionTicket) -> None:
    w.push_uint32(msg.lifetime)
    w.push_uint32(msg.age_add)
    w.push_vector(1, msg.nonce)
    w.push_vector(2, msg.ticket)
    push_extensions(w, msg.extensions)


def pull_key_update(buf: Buffer) -> KeyUpdate:
    request = buf.pull_uint8("request_update")
    if request > 1:
        raise IllegalParameter(f"KeyUpdate request_update {request} is neither 0 nor 1")
    return KeyUpdate(request_update=request)


def push_key_update(w: Writer, msg: KeyUpdate) -> None:
    w.push_uint8(msg.request_update)


def pull_end_of_early_data(buf: Buffer) -> EndOfEarlyData:
    return EndOfEarlyData()


_PULLERS: dict[int, Callable[[Buffer], HandshakeMessage]] = {
    HandshakeType.CLIENT_HELLO: pull_client_hello,
    HandshakeType.SERVER_HELLO: pull_server_hello,
    HandshakeType.ENCRYPTED_EXTENSIONS: pull_encrypted_extensions,
    HandshakeType.CERTIFICATE: pull_certificate,
    HandshakeType.CERTIFICATE_REQUEST: pull_certificate_request,
    HandshakeType.CERTIFICATE_VERIFY: pull_certificate_verify,
    HandshakeType.FINISHED: pull_finished,
    HandshakeType.NEW_SESSION_TICKET: pull_new_session_ticket,
    HandshakeType.KEY_UPDATE: pull_key_update,
    HandshakeType.END_OF_EARLY_DATA: pull_end_of_early_data,
}

_PUSHERS: dict[type, Callable[[Writer, object], None]] = {
    ClientHello: push_client_hello,  # type: ignore[dict-item]
    ServerHello: push_server_hello,  # type: ignore[dict-item]
    EncryptedExtensions: push_encrypted_extensions,  # type: ignore[dict-item]
    Certificate: push_certificate,  # type: ignore[dict-item]
    CertificateRequest: push_certificate_request,  # type: ignore[dict-item]
    CertificateVerify: push_certificate_verify,  # type: ignore[dict-item]
    Finished: push_finished,  # type: ignore[dict-item]
    NewSessionTicket: push_new_session_ticket,  # type: ignore[dict-item]
    KeyUpdate: push_key_update,  # type: ignore[dict-item]
    EndOfEarlyData: lambda w, m: None,
}


def parse_handshake(msg_type: int, body: bytes) -> HandshakeMessage:
    """Decode one handshake message body; every malformation is a DecodeError."""
    puller = _PULLERS.get(msg_type)
    if puller is None:
        raise DecodeError(f"unknown handshake message type {msg_type}")
    buf = Buffer(body)
    try:
        msg = puller(buf)
        if not buf.eof():
            raise DecodeError(f"{buf.remaining} trailing bytes after handshake message {msg_type}")
    except DecodeError:
        raise
    except ProtocolError as exc:
        if isinstance(exc, IllegalParameter):
            raise
        raise DecodeError(f"handshake message {msg_type}: {exc}") from None
    return msg


def serialize_handshake(msg: HandshakeMessage) -> bytes:
    """The message with its 4-byte handshake header."""
    w = Writer()
    _PUSHERS[type(msg)](w, msg)
    body = w.data()
    if len(body) >= 1 << 24:
        raise ValueError("handshake message too long")
    return bytes((msg.msg_type,)) + len(body).to_bytes(3, "big") + body


# -- extension payloads ----------------------------------------------------------------


def _u16s_to_bytes(values: Sequence[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def _bytes_to_u16s(raw: bytes) -> tuple[int, ...]:
    """Big-endian 16-bit values; the caller has checked that ``len(raw)`` is even."""
    return tuple(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2))


def _u16_list(values: Sequence[int], prefix: int = 2) -> bytes:
    w = Writer()
    w.push_vector(prefix, _u16s_to_bytes(values))
    return w.data()


@contextmanager
def _payload(data: bytes, what: str) -> Iterator[Buffer]:
    """A reader over one extension payload that must be consumed exactly.

    Running short, a block length that does not add up, or bytes left over all become a
    DecodeError naming the extension (the checks the reader raises itself pass through).
    """
    buf = Buffer(data)
    try:
        yield buf
    except TLSError:
        raise
    except ProtocolError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    if not buf.eof():
        raise DecodeError(f"{what}: {buf.remaining} trailing bytes")


def _pull_u16_list(data: bytes, prefix: int, what: str) -> tuple[int, ...]:
    with _payload(data, what) as buf:
        raw = buf.pull_vector(prefix, what)
        if len(raw) % 2:
            raise DecodeError(f"{what}: malformed list")
    return _bytes_to_u16s(raw)


def _parse_u16(data: bytes, what: str) -> int:
    """An extension whose whole payload is one uint16."""
    with _payload(data, what) as buf:
        value = buf.pull_uint16(what)
    return value


def server_name_ext(host: str) -> Extension:
    name = host.encode("ascii")
    w = Writer()
    with w.push_block(2):
        w.push_uint8(0)  # host_name
        w.push_vector(2, name)
    return Extension(type=ExtensionType.SERVER_NAME, data=w.data())


def supported_groups_ext(groups: Sequence[int]) -> Extension:
    return Extension(type=ExtensionType.SUPPORTED_GROUPS, data=_u16_list(groups))


def signature_algorithms_ext(schemes: Sequence[int]) -> Extension:
    return Extension(type=ExtensionType.SIGNATURE_ALGORITHMS, data=_u16_list(schemes))


def supported_versions_ext(versions: Sequence[int]) -> Extension:
    return Extension(type=ExtensionType.SUPPORTED_VERSIONS, data=_u16_list(versions, prefix=1))


def psk_modes_ext(modes: Sequence[int]) -> Extension:
    w = Writer()
    w.push_vector(1, bytes(modes))
    return Extension(type=ExtensionType.PSK_KEY_EXCHANGE_MODES, data=w.data())


def alpn_ext(protocols: Sequence[bytes]) -> Extension:
    w = Writer()
    with w.push_block(2):
        for proto in protocols:
            w.push_vector(1, proto)
    return Extension(type=ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION, data=w.data())


def cookie_ext(cookie: bytes) -> Extension:
    w = Writer()
    w.push_vector(2, cookie)
    return Extension(type=ExtensionType.COOKIE, data=w.data())


def client_key_share_ext(shares: Sequence[tuple[int, bytes]]) -> Extension:
    w = Writer()
    with w.push_block(2):
        for group, key in shares:
            w.push_uint16(group)
            w.push_vector(2, key)
    return Extension(type=ExtensionType.KEY_SHARE, data=w.data())


def pre_shared_key_ext(identities: Sequence[tuple[bytes, int]],
                       binders: Sequence[bytes]) -> Extension:
    w = Writer()
    with w.push_block(2):
        for identity, age in identities:
            w.push_vector(2, identity)
            w.push_uint32(age)
    with w.push_block(2):
        for binder in binders:
            w.push_vector(1, binder)
    return Extension(type=ExtensionType.PRE_SHARED_KEY, data=w.data())


def binders_length(binder_lengths: Sequence[int]) -> int:
    """Bytes the binders list takes on the wire (its 2-byte length included)."""
    return 2 + sum(1 + n for n in binder_lengths)


def parse_server_supported_version(data: bytes) -> int:
    return _parse_u16(data, "supported_versions")


def parse_server_key_share(data: bytes) -> tuple[int, bytes]:
    with _payload(data, "key_share") as buf:
        group = buf.pull_uint16("key_share group")
        key = buf.pull_vector(2, "key_exchange")
    if not key:
        raise IllegalParameter("empty key_exchange in server key_share")
    return group, key


def parse_hrr_key_share(data: bytes) -> int:
    return _parse_u16(data, "key_share selected_group")


def parse_cookie(data: bytes) -> bytes:
    with _payload(data, "cookie") as buf:
        cookie = buf.pull_vector(2, "cookie")
    if not cookie:
        raise DecodeError("empty cookie")
    return cookie


def parse_server_alpn(data: bytes) -> bytes:
    """The server's ALPN answer: exactly one protocol name (RFC 7301 3.1)."""
    with _payload(data, "ALPN") as buf, buf.pull_block(2, "protocol_name_list"):
        name = buf.pull_vector(1, "protocol_name")
    if not name:
        raise DecodeError("ALPN: empty protocol name")
    return name


def parse_server_pre_shared_key(data: bytes) -> int:
    return _parse_u16(data, "pre_shared_key selected_identity")


def parse_signature_algorithms(data: bytes) -> tuple[int, ...]:
    return _pull_u16_list(data, 2, "signature_algorithms")


def parse_supported_groups(data: bytes) -> tuple[int, ...]:
    return _pull_u16_list(data, 2, "supported_groups")


def parse_max_early_data(data: bytes) -> int:
    with _payload(data, "early_data") as buf:
        value = buf.pull_uint32("max_early_data_size")
    return value
