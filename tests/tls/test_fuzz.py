"""Hypothesis: hostile bytes into every parser and the record layer give only typed errors."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tls.pki import NOW
from vipernet.tls.config import TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import CipherSuite, ContentType, HandshakeType
from vipernet.tls.errors import TLSError
from vipernet.tls.key_schedule import SUITES
from vipernet.tls.messages import (
    Certificate,
    CertificateEntry,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Extension,
    Finished,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    parse_cookie,
    parse_handshake,
    parse_server_alpn,
    parse_server_key_share,
    parse_server_supported_version,
    parse_signature_algorithms,
    serialize_handshake,
)
from vipernet.tls.record import RecordCipher, RecordLayer

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
PARSED_TYPES = [t for t in HandshakeType if t != HandshakeType.MESSAGE_HASH]


@FUZZ
@given(msg_type=st.sampled_from(PARSED_TYPES), body=st.binary(max_size=600))
def test_every_handshake_parser_gives_only_typed_errors(msg_type: int, body: bytes) -> None:
    with contextlib.suppress(TLSError):
        parse_handshake(msg_type, body)


extensions = st.lists(st.builds(Extension, type=st.integers(0, 0xFFFF),
                                data=st.binary(max_size=40)),
                      max_size=5, unique_by=lambda e: e.type).map(tuple)
messages = st.one_of(
    st.builds(ClientHello, random=st.binary(min_size=32, max_size=32),
              legacy_session_id=st.binary(max_size=32),
              cipher_suites=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=5).map(tuple),
              extensions=extensions),
    st.builds(ServerHello, random=st.binary(min_size=32, max_size=32),
              legacy_session_id_echo=st.binary(max_size=32),
              cipher_suite=st.integers(0, 0xFFFF), extensions=extensions),
    st.builds(EncryptedExtensions, extensions=extensions),
    st.builds(Certificate, request_context=st.binary(max_size=4), entries=st.lists(
        st.builds(CertificateEntry, cert_data=st.binary(min_size=1, max_size=50),
                  extensions=extensions), max_size=3).map(tuple)),
    st.builds(CertificateVerify, algorithm=st.integers(0, 0xFFFF),
              signature=st.binary(max_size=80)),
    st.builds(Finished, verify_data=st.binary(min_size=32, max_size=48)),
    st.builds(NewSessionTicket, lifetime=st.integers(0, 2**32 - 1),
              age_add=st.integers(0, 2**32 - 1), nonce=st.binary(max_size=8),
              ticket=st.binary(min_size=1, max_size=64), extensions=extensions),
    st.builds(KeyUpdate, request_update=st.integers(0, 1)),
)


@FUZZ
@given(msg=messages)
def test_every_message_round_trips(msg: object) -> None:
    raw = serialize_handshake(msg)  # type: ignore[arg-type]
    assert parse_handshake(raw[0], raw[4:]) == msg


@FUZZ
@given(msg=messages, cut=st.integers(0, 2000), flip=st.integers(0, 2000))
def test_truncated_or_flipped_messages_give_only_typed_errors(msg: object, cut: int,
                                                              flip: int) -> None:
    raw = bytearray(serialize_handshake(msg))  # type: ignore[arg-type]
    body = raw[4:]
    if body:
        body[flip % len(body)] ^= 0xA5
    for candidate in (bytes(body), bytes(raw[4:])[: cut % (len(raw) - 3)]):
        with contextlib.suppress(TLSError):
            parse_handshake(raw[0], candidate)


@FUZZ
@given(data=st.binary(max_size=80))
def test_extension_payload_readers_give_only_typed_errors(data: bytes) -> None:
    for reader in (parse_cookie, parse_server_alpn, parse_server_key_share,
                   parse_server_supported_version, parse_signature_algorithms):
        with contextlib.suppress(TLSError):
            reader(data)


@FUZZ
@given(data=st.binary(max_size=3000), protected=st.booleans())
def test_record_layer_gives_only_typed_errors(data: bytes, protected: bool) -> None:
    layer = RecordLayer()
    if protected:
        params = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]
        layer.read_cipher = RecordCipher.from_key(params, bytes(16), bytes(12))
    try:
        layer.feed(data)
        while layer.next_record() is not None:
            pass
    except TLSError:
        pass


@FUZZ
@given(chunks=st.lists(st.binary(max_size=400), max_size=6),
       header_type=st.sampled_from([20, 21, 22, 23]))
def test_client_fed_hostile_bytes_after_client_hello_gives_only_typed_errors(
        chunks: list[bytes], header_type: int) -> None:
    client = TLSClientConnection(TLSConfig(server_name="localhost"), now=NOW.timestamp(),
                                 rng=random.Random(3))
    client.start_handshake()
    try:
        for chunk in chunks:
            # Give most chunks a plausible record header so the fuzz reaches deeper.
            framed = bytes((header_type, 3, 3)) + len(chunk).to_bytes(2, "big") + chunk
            client.receive_data(framed)
    except TLSError as exc:
        assert exc.__cause__ is None, f"untyped failure behind the safety net: {exc.__cause__!r}"


@pytest.mark.parametrize("way", ["all_at_once", "byte_by_byte", "with_trailing_partial"])
def test_records_are_read_whole_however_the_bytes_arrive(way: str) -> None:
    params = SUITES[CipherSuite.TLS_CHACHA20_POLY1305_SHA256]
    writer = RecordLayer()
    writer.write_cipher = RecordCipher.from_key(params, bytes(range(32)), bytes(12))
    writer.write(ContentType.APPLICATION_DATA, b"a" * 20000)  # two records
    writer.write(ContentType.HANDSHAKE, b"\x18\x00\x00\x01\x00")
    wire = writer.take_output()
    reader = RecordLayer()
    reader.read_cipher = RecordCipher.from_key(params, bytes(range(32)), bytes(12))
    got: list[tuple[int, bytes]] = []
    if way == "all_at_once":
        pieces = [wire]
    elif way == "byte_by_byte":
        pieces = [wire[i:i + 1] for i in range(len(wire))]
    else:
        pieces = [wire + b"\x17\x03\x03\x00"]
    for piece in pieces:
        reader.feed(piece)
        while (rec := reader.next_record()) is not None:
            got.append((rec[0], bytes(rec[1])))
    assert got == [(23, b"a" * 16384), (23, b"a" * (20000 - 16384)),
                   (22, b"\x18\x00\x00\x01\x00")]
    assert reader.buffered == (4 if way == "with_trailing_partial" else 0)


def test_padding_is_stripped_and_inner_type_recovered() -> None:
    params = SUITES[CipherSuite.TLS_AES_256_GCM_SHA384]
    seal = RecordCipher.from_key(params, bytes(32), bytes(12))
    record = seal.seal(23, b"hello", padding=100)
    assert len(record) == 5 + 5 + 1 + 100 + 16
    opener = RecordCipher.from_key(params, bytes(32), bytes(12))
    assert opener.open(record[:5], record[5:]) == (23, b"hello")


def test_all_padding_record_is_unexpected_message() -> None:
    from vipernet.tls.errors import UnexpectedMessage

    params = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]
    seal = RecordCipher.from_key(params, bytes(16), bytes(12))
    record = seal.seal(0, b"", padding=10)
    opener = RecordCipher.from_key(params, bytes(16), bytes(12))
    with pytest.raises(UnexpectedMessage):
        opener.open(record[:5], record[5:])


def test_plaintext_over_2_pow_14_is_record_overflow() -> None:
    from vipernet.tls.errors import RecordOverflow

    layer = RecordLayer()
    layer.feed(bytes((22, 3, 3)) + (2**14 + 1).to_bytes(2, "big") + bytes(2**14 + 1))
    with pytest.raises(RecordOverflow):
        layer.next_record()


def test_inner_plaintext_over_2_pow_14_is_record_overflow() -> None:
    from vipernet.tls.errors import RecordOverflow

    params = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]
    seal = RecordCipher.from_key(params, bytes(16), bytes(12))
    record = seal.seal(23, bytes(2**14 + 1))  # one byte too many, sealed anyway
    opener = RecordCipher.from_key(params, bytes(16), bytes(12))
    with pytest.raises(RecordOverflow):
        opener.open(record[:5], record[5:])


def test_non_tls_bytes_are_a_decode_error() -> None:
    from vipernet.tls.errors import DecodeError

    layer = RecordLayer()
    layer.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(DecodeError, match="not a TLS record"):
        layer.next_record()


@pytest.fixture(scope="module")
def flight() -> tuple[bytes, bytes, bytes]:
    """A real server flight answering a fixed ClientHello (seeded), plus the trust root."""
    from tests.tls.fake_server import FakeServer, client_for
    from tests.tls.pki import make_ca, make_leaf

    root = make_ca("fuzz root")
    leaf = make_leaf(root)
    client = client_for(trust_pem=root.pem(), seed=11)
    client.start_handshake()
    hello = client.data_to_send()
    server = FakeServer(leaf, seed=5)
    server.receive(hello)
    return root.pem(), hello, server.output()


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**6), xor=st.integers(1, 255),
       cut=st.integers(0, 10**6), mode=st.sampled_from(["flip", "truncate", "both"]))
def test_mutated_server_flight_gives_only_typed_errors(
        flight: tuple[bytes, bytes, bytes], position: int, xor: int, cut: int,
        mode: str) -> None:
    from tests.tls.fake_server import client_for

    trust, hello, server_flight = flight
    client = client_for(trust_pem=trust, seed=11)
    client.start_handshake()
    assert client.data_to_send() == hello  # same seed, same ClientHello
    data = bytearray(server_flight)
    if mode in ("flip", "both"):
        data[position % len(data)] ^= xor
    if mode in ("truncate", "both"):
        data = data[: cut % len(data)]
    try:
        client.receive_data(bytes(data))
    except TLSError as exc:
        assert exc.__cause__ is None, f"untyped failure behind the safety net: {exc.__cause__!r}"
        assert not client.handshake_complete
        return
    # No error: the bytes so far were a valid prefix, or the mutation hit the one field TLS
    # 1.3 ignores (the minor version of the plaintext ServerHello record's header).
    if client.handshake_complete and bytes(data) != server_flight:
        assert mode == "flip" and position % len(data) == 2


@FUZZ
@given(suite=st.sampled_from(list(CipherSuite)), data=st.binary(max_size=3 * 2**14),
       content_type=st.sampled_from([21, 22, 23]), padding=st.integers(0, 64),
       key=st.binary(min_size=32, max_size=32), iv=st.binary(min_size=12, max_size=12))
def test_sealed_records_open_to_the_same_content(suite: CipherSuite, data: bytes,
                                                 content_type: int, padding: int, key: bytes,
                                                 iv: bytes) -> None:
    params = SUITES[suite]
    key = key[: params.key_length]
    writer, reader = RecordLayer(), RecordLayer()
    writer.write_cipher = RecordCipher.from_key(params, key, iv)
    reader.read_cipher = RecordCipher.from_key(params, key, iv)
    writer.write(content_type, data)
    reader.feed(writer.take_output())
    got = bytearray()
    while (rec := reader.next_record()) is not None:
        assert rec[0] == content_type and rec[2]
        got += rec[1]
    assert got == data
    # And a single padded record, opened directly.
    sealer = RecordCipher.from_key(params, key, iv)
    opener = RecordCipher.from_key(params, key, iv)
    chunk = data[:100] or b"x"
    record = sealer.seal(content_type, chunk, padding=padding)
    assert opener.open(record[:5], record[5:]) == (content_type, chunk)
