"""Every handshake message the state table does not allow is refused, in every state.

test_handshake.py checks one wrong message per state; this walks the whole table
(states.TRANSITIONS): each state the scripted server can put the client in, and each
message type that state does not list, well-formed so that only its arrival is wrong.
"""

from __future__ import annotations

import pytest

from tests.tls.fake_server import FakeServer, Script, client_for, pump
from tests.tls.pki import Issued, make_ca, make_leaf
from vipernet.tls.constants import HandshakeType
from vipernet.tls.errors import UnexpectedMessage
from vipernet.tls.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    HandshakeMessage,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    serialize_handshake,
)
from vipernet.tls.states import HANDSHAKING, TRANSITIONS, State

# One well-formed example of every message type the client can parse.
SAMPLES: dict[HandshakeType, HandshakeMessage] = {
    HandshakeType.CLIENT_HELLO: ClientHello(random=bytes(32), legacy_session_id=b"",
                                            cipher_suites=(0x1301,), extensions=()),
    HandshakeType.SERVER_HELLO: ServerHello(random=bytes(32), legacy_session_id_echo=b"",
                                            cipher_suite=0x1301, extensions=()),
    HandshakeType.NEW_SESSION_TICKET: NewSessionTicket(lifetime=60, age_add=1, nonce=b"\x00",
                                                       ticket=b"ticket"),
    HandshakeType.END_OF_EARLY_DATA: EndOfEarlyData(),
    HandshakeType.ENCRYPTED_EXTENSIONS: EncryptedExtensions(extensions=()),
    HandshakeType.CERTIFICATE: Certificate(request_context=b"", entries=()),
    HandshakeType.CERTIFICATE_REQUEST: CertificateRequest(request_context=b"", extensions=()),
    HandshakeType.CERTIFICATE_VERIFY: CertificateVerify(algorithm=0x0804, signature=b"\x00"),
    HandshakeType.FINISHED: Finished(verify_data=bytes(32)),
    HandshakeType.KEY_UPDATE: KeyUpdate(request_update=0),
}

# Where in the scripted server's flight to inject, to find the client in each state.
REACH: dict[State, tuple[str, bool]] = {  # state -> (inject before step, request a cert)
    State.WAIT_SERVER_HELLO: ("server_hello", False),
    State.WAIT_ENCRYPTED_EXTENSIONS: ("encrypted_extensions", False),
    State.WAIT_CERTIFICATE_OR_REQUEST: ("certificate", False),
    State.WAIT_CERTIFICATE: ("certificate", True),
    State.WAIT_CERTIFICATE_VERIFY: ("certificate_verify", False),
    State.WAIT_FINISHED: ("finished", False),
}

CASES = [(state, msg_type) for state in REACH for msg_type in SAMPLES
         if msg_type not in TRANSITIONS[state]]


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued]:
    root = make_ca("vipernet state table root")
    return root, make_leaf(root)


def test_the_table_and_these_cases_cover_every_handshaking_state() -> None:
    assert set(REACH) == HANDSHAKING
    assert len(CASES) >= 50


@pytest.mark.parametrize(("state", "msg_type"), CASES,
                         ids=[f"{s.value}-{t.name.lower()}" for s, t in CASES])
def test_message_not_in_the_table_is_unexpected(pki: tuple[Issued, Issued], state: State,
                                                msg_type: HandshakeType) -> None:
    root, leaf = pki
    step, request_certificate = REACH[state]
    raw = serialize_handshake(SAMPLES[msg_type])
    client = client_for(trust_pem=root.pem())
    server = FakeServer(leaf, script=Script(inject_before={step: raw},
                                            request_certificate=request_certificate))
    client.start_handshake()
    with pytest.raises(UnexpectedMessage):
        pump(client, server)
    assert client.state is State.FAILED
    assert not client.handshake_complete
    server.receive(client.data_to_send())
    assert server.alerts_received == [UnexpectedMessage.alert]


@pytest.mark.parametrize("msg_type", [t for t in SAMPLES
                                      if t not in TRANSITIONS[State.CONNECTED]],
                         ids=lambda t: t.name.lower())
def test_message_not_in_the_table_is_unexpected_after_the_handshake(
        pki: tuple[Issued, Issued], msg_type: HandshakeType) -> None:
    root, leaf = pki
    client = client_for(trust_pem=root.pem())
    server = FakeServer(leaf)
    client.start_handshake()
    pump(client, server)
    assert client.handshake_complete
    server.send_handshake(serialize_handshake(SAMPLES[msg_type]))
    with pytest.raises(UnexpectedMessage):
        client.receive_data(server.output())
    assert client.state is State.FAILED
