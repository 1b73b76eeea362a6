"""What our first ClientHello says, read back with our own parser (RFC 8446 4.1.2, 4.2)."""

from __future__ import annotations

import pytest

from tests.tls.fake_server import client_for
from vipernet.buffer import Buffer
from vipernet.tls.constants import (
    TLS13,
    CipherSuite,
    ContentType,
    ExtensionType,
    NamedGroup,
    SignatureScheme,
)
from vipernet.tls.messages import (
    ClientHello,
    find_extension,
    parse_handshake,
    parse_signature_algorithms,
    parse_supported_groups,
)


def first_client_hello(server_name: str = "example.test", **config: object) -> ClientHello:
    client = client_for(server_name, **config)
    client.start_handshake()
    record = client.data_to_send()
    assert record[0] == ContentType.HANDSHAKE
    assert int.from_bytes(record[3:5], "big") == len(record) - 5  # one record, whole
    hello = parse_handshake(record[5], record[9:])
    assert isinstance(hello, ClientHello)
    return hello


def extension(hello: ClientHello, ext_type: ExtensionType) -> Buffer:
    data = find_extension(hello.extensions, ext_type)
    assert data is not None, f"{ext_type.name} is missing"
    return Buffer(data)


def test_client_hello_offers_exactly_the_three_tls13_suites_first() -> None:
    hello = first_client_hello()
    assert hello.cipher_suites[:3] == (CipherSuite.TLS_AES_128_GCM_SHA256,
                                       CipherSuite.TLS_AES_256_GCM_SHA384,
                                       CipherSuite.TLS_CHACHA20_POLY1305_SHA256)
    # Whatever follows is a TLS 1.2 suite (0xC0xx), listed only to draw a 1.2 server out.
    assert all(suite >> 8 == 0xC0 for suite in hello.cipher_suites[3:])
    assert len(hello.legacy_session_id) == 32  # middlebox compatibility mode


def test_client_hello_names_the_server_in_sni() -> None:
    sni = extension(first_client_hello("Example.TEST."), ExtensionType.SERVER_NAME)
    with sni.pull_block(2, "server_name_list"):
        assert sni.pull_uint8("name_type") == 0
        assert sni.pull_vector(2, "host_name") == b"example.test"
    assert sni.eof()


def test_client_hello_sends_no_sni_for_an_ip_address() -> None:
    hello = first_client_hello("127.0.0.1")
    assert find_extension(hello.extensions, ExtensionType.SERVER_NAME) is None


def test_client_hello_asks_for_tls13_only() -> None:
    versions = extension(first_client_hello(), ExtensionType.SUPPORTED_VERSIONS)
    assert versions.pull_vector(1, "versions") == TLS13.to_bytes(2, "big")
    assert versions.eof()


def test_client_hello_offers_x25519_and_p256_but_shares_x25519_only() -> None:
    hello = first_client_hello()
    groups = find_extension(hello.extensions, ExtensionType.SUPPORTED_GROUPS)
    assert groups is not None
    assert parse_supported_groups(groups) == (NamedGroup.X25519, NamedGroup.SECP256R1)
    shares = extension(hello, ExtensionType.KEY_SHARE)
    with shares.pull_block(2, "client_shares"):
        assert shares.pull_uint16("group") == NamedGroup.X25519
        assert len(shares.pull_vector(2, "key_exchange")) == 32
    assert shares.eof()


@pytest.mark.parametrize("scheme", [SignatureScheme.RSA_PSS_RSAE_SHA256,
                                    SignatureScheme.ECDSA_SECP256R1_SHA256,
                                    SignatureScheme.ECDSA_SECP384R1_SHA384,
                                    SignatureScheme.ED25519])
def test_client_hello_accepts_each_required_signature_scheme(scheme: SignatureScheme) -> None:
    data = find_extension(first_client_hello().extensions, ExtensionType.SIGNATURE_ALGORITHMS)
    assert data is not None
    offered = parse_signature_algorithms(data)
    assert scheme in offered
    # PKCS#1 v1.5 is offered for certificate signatures only, so it ranks below RSA-PSS.
    assert offered.index(SignatureScheme.RSA_PSS_RSAE_SHA256) < offered.index(
        SignatureScheme.RSA_PKCS1_SHA256)


def test_client_hello_lists_alpn_protocols_in_order_and_omits_alpn_when_none() -> None:
    alpn = extension(first_client_hello(alpn_protocols=("h2", "http/1.1")),
                     ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION)
    with alpn.pull_block(2, "protocol_name_list"):
        assert alpn.pull_vector(1, "name") == b"h2"
        assert alpn.pull_vector(1, "name") == b"http/1.1"
    assert alpn.eof()
    plain = first_client_hello()
    assert find_extension(plain.extensions,
                          ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION) is None
