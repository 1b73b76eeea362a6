"""The client against the scripted in-memory server: happy paths and every misbehaviour."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tls.fake_server import FakeServer, Script, client_for, pump
from tests.tls.pki import DAY, NOW, Issued, make_ca, make_leaf
from vipernet.tls.constants import CipherSuite, HandshakeType, NamedGroup
from vipernet.tls.errors import (
    BadCertificateVerify,
    BadFinished,
    BadRecordMac,
    IllegalParameter,
    NoApplicationProtocol,
    PeerAlert,
    ProtocolVersionError,
    RecordOverflow,
    TLSError,
    TLSUsageError,
    UnexpectedMessage,
)
from vipernet.tls.events import (
    ApplicationDataReceived,
    CloseNotifyReceived,
    HandshakeCompleted,
    KeyUpdateReceived,
    SessionTicketReceived,
)
from vipernet.tls.messages import EncryptedExtensions, Finished, serialize_handshake
from vipernet.tls.states import State


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued]:
    root = make_ca("vipernet test root")
    return root, make_leaf(root)


def connected(pki: tuple[Issued, Issued], script: Script | None = None,
              **config: Any) -> tuple[Any, FakeServer]:
    root, leaf = pki
    client = client_for(trust_pem=root.pem(), **config)
    server = FakeServer(leaf, script=script)
    client.start_handshake()
    pump(client, server)
    return client, server


def events(client: Any) -> list[object]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_handshake_completes_with_each_suite_and_data_flows_both_ways(
        pki: tuple[Issued, Issued], suite: CipherSuite) -> None:
    client, server = connected(pki, Script(suite=suite))
    got = events(client)
    assert isinstance(got[0], HandshakeCompleted) and got[0].cipher_suite == suite
    assert client.state is State.CONNECTED
    client.send_application_data(b"ping" * 5000)
    server.receive(client.data_to_send())
    assert server.app_received == b"ping" * 5000
    server.send_app(b"x" * 40000)
    client.receive_data(server.output())
    data = b"".join(e.data for e in events(client) if isinstance(e, ApplicationDataReceived))
    assert data == b"x" * 40000


def test_server_bytes_are_accepted_one_byte_at_a_time(pki: tuple[Issued, Issued]) -> None:
    root, leaf = pki
    client = client_for(trust_pem=root.pem())
    server = FakeServer(leaf)
    client.start_handshake()
    server.receive(client.data_to_send())
    flight = server.output()
    for i in range(len(flight)):
        client.receive_data(flight[i:i + 1])
    assert client.handshake_complete


def test_certificate_message_spanning_several_records_is_reassembled(
        pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki, Script(certificate_extension_bytes=40000))
    assert client.handshake_complete


def test_hello_retry_request_with_cookie_is_answered_on_secp256r1(
        pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki, Script(hello_retry=True))
    assert server.retried
    assert client.handshake_complete
    assert client.group == NamedGroup.SECP256R1
    assert client.counters["ccs_ignored"] == 0


def test_alpn_choice_is_reported(pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki, Script(alpn="h2"), alpn_protocols=("h2", "http/1.1"))
    assert client.alpn_protocol == "h2"


def test_alpn_we_did_not_offer_is_refused(pki: tuple[Issued, Issued]) -> None:
    with pytest.raises(NoApplicationProtocol) as info:
        connected(pki, Script(alpn="spdy/1"), alpn_protocols=("h2",))
    assert info.value.alert.name == "NO_APPLICATION_PROTOCOL"


def test_tickets_are_stored_and_resume_with_psk_dhe(pki: tuple[Issued, Issued]) -> None:
    root, leaf = pki
    client, server = connected(pki, Script(tickets=3))
    tickets = [e for e in events(client) if isinstance(e, SessionTicketReceived)]
    assert len(tickets) == 3
    assert len({t.ticket.psk for t in tickets}) == 3
    ticket = client.latest_ticket
    again = client_for(trust_pem=root.pem(), session=ticket, now=NOW.timestamp() + 5)
    # The same server object knows the tickets it issued.
    server2 = FakeServer(leaf, script=Script())
    server2.tickets = server.tickets
    again.start_handshake()
    pump(again, server2)
    assert server2.resumed and again.session_resumed
    assert again.peer_certificates == []


def test_resumption_after_hello_retry_recomputes_the_binder(pki: tuple[Issued, Issued]) -> None:
    root, leaf = pki
    client, server = connected(pki, Script(tickets=1))
    again = client_for(trust_pem=root.pem(), session=client.latest_ticket,
                       now=NOW.timestamp() + 1)
    server2 = FakeServer(leaf, script=Script(hello_retry=True))
    server2.tickets = server.tickets
    again.start_handshake()
    pump(again, server2)
    assert server2.retried and server2.binder_ok and again.session_resumed


def test_client_initiated_key_update_is_answered_by_the_server(
        pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    events(client)
    client.request_key_update()
    client.send_application_data(b"under the new key")
    server.receive(client.data_to_send())
    assert server.app_received == b"under the new key"
    server.send_app(b"reply under the server's new key")
    client.receive_data(server.output())
    got = events(client)
    assert got[0] == KeyUpdateReceived(update_requested=False)
    assert got[1] == ApplicationDataReceived(data=b"reply under the server's new key")
    assert client.counters["key_updates_sent"] == 1


def test_server_key_update_request_is_answered(pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    events(client)
    server.send_key_update(request=True)
    server.send_app(b"after update")
    client.receive_data(server.output())
    got = events(client)
    assert isinstance(got[0], KeyUpdateReceived) and got[0].update_requested
    assert got[1] == ApplicationDataReceived(data=b"after update")
    server.receive(client.data_to_send())
    assert server.key_updates_received == 1
    client.send_application_data(b"with new key")
    server.receive(client.data_to_send())
    assert server.app_received == b"with new key"


def test_close_notify_both_ways_closes(pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    events(client)
    server.send_alert(0)
    client.receive_data(server.output())
    assert isinstance(events(client)[-1], CloseNotifyReceived)
    client.close()
    server.receive(client.data_to_send())
    assert server.alerts_received == [0]
    assert client.state is State.CLOSED
    with pytest.raises(TLSUsageError):
        client.send_application_data(b"late")


# -- negative matrix: each refused with a specific error, no application data ---------------


def refused(pki: tuple[Issued, Issued], script: Script, error: type[TLSError]) -> TLSError:
    root, leaf = pki
    client = client_for(trust_pem=root.pem())
    server = FakeServer(leaf, script=script)
    client.start_handshake()
    with pytest.raises(error) as info:
        pump(client, server)
    assert not client.handshake_complete
    assert client.state is State.FAILED
    with pytest.raises(TLSUsageError):
        client.send_application_data(b"secret")
    # The alert that names the failure went to the server.
    server.receive(client.data_to_send())
    assert server.alerts_received == [info.value.alert]
    return info.value


def test_bad_certificate_verify_signature_is_refused(pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(corrupt_signature=True), BadCertificateVerify)


def test_bad_finished_is_refused(pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(corrupt_finished=True), BadFinished)


def test_server_without_supported_versions_is_refused_as_tls12(
        pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(replace_server_hello_version=True), ProtocolVersionError)


def test_downgrade_sentinel_in_server_random_is_refused(pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(server_random=bytes(24) + b"DOWNGRD\x01"), IllegalParameter)


ENCRYPTED_EXTENSIONS = serialize_handshake(EncryptedExtensions(extensions=()))
FINISHED = serialize_handshake(Finished(verify_data=bytes(32)))


@pytest.mark.parametrize(("step", "raw"), [
    ("encrypted_extensions", FINISHED),           # state wait_encrypted_extensions
    ("certificate", FINISHED),                    # wait_certificate_or_request
    ("certificate_verify", ENCRYPTED_EXTENSIONS),  # wait_certificate_verify
    ("finished", ENCRYPTED_EXTENSIONS),           # wait_finished
    ("certificate", bytes((HandshakeType.KEY_UPDATE, 0, 0, 1, 0))),
    ("encrypted_extensions", bytes((HandshakeType.NEW_SESSION_TICKET, 0, 0, 0))),
])
def test_unexpected_message_in_each_handshake_state_is_refused(
        pki: tuple[Issued, Issued], step: str, raw: bytes) -> None:
    refused(pki, Script(inject_before={step: raw}), UnexpectedMessage)


def test_certificate_request_is_answered_with_an_empty_certificate(
        pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki, Script(request_certificate=True))
    assert client.handshake_complete
    # Certificate, 3-byte length 4: empty context, empty certificate_list.
    assert server.client_certificate == bytes((11, 0, 0, 4, 0, 0, 0, 0))


def test_unexpected_message_after_certificate_request_is_refused(
        pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(request_certificate=True, inject_before={"certificate": FINISHED}),
            UnexpectedMessage)


def test_server_bytes_before_the_client_hello_are_refused(pki: tuple[Issued, Issued]) -> None:
    root, _leaf = pki
    client = client_for(trust_pem=root.pem())
    with pytest.raises(UnexpectedMessage):
        client.receive_data(bytes((22, 3, 3, 0, len(ENCRYPTED_EXTENSIONS))) + ENCRYPTED_EXTENSIONS)


@pytest.mark.parametrize("step", ["encrypted_extensions", "certificate", "finished"])
def test_application_data_during_the_handshake_is_refused(pki: tuple[Issued, Issued],
                                                          step: str) -> None:
    refused(pki, Script(inject_record_before={step: (23, b"early!")}), UnexpectedMessage)


def test_compatibility_ccs_during_the_handshake_is_ignored(pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki, Script(inject_record_before={"server_hello": (20, b"\x01"),
                                                            "certificate": (20, b"\x01")}))
    assert client.handshake_complete
    assert client.counters["ccs_ignored"] == 2


def test_malformed_ccs_is_refused(pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(inject_record_before={"certificate": (20, b"\x02")}), UnexpectedMessage)


def test_ccs_after_the_handshake_is_refused(pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki)
    with pytest.raises(UnexpectedMessage):
        client.receive_data(bytes((20, 3, 3, 0, 1, 1)))


def test_forged_plaintext_close_notify_after_the_handshake_is_refused(
        pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki)
    events(client)
    with pytest.raises(UnexpectedMessage, match="plaintext alert"):
        client.receive_data(bytes((21, 3, 3, 0, 2, 1, 0)))
    assert not any(isinstance(e, CloseNotifyReceived) for e in events(client))


def test_server_alert_instead_of_server_hello_is_a_peer_alert(
        pki: tuple[Issued, Issued]) -> None:
    root, _leaf = pki
    client = client_for(trust_pem=root.pem())
    client.start_handshake()
    with pytest.raises(PeerAlert, match="handshake_failure"):
        client.receive_data(bytes((21, 3, 3, 0, 2, 2, 40)))


def test_unexpected_message_before_server_hello_is_refused(pki: tuple[Issued, Issued]) -> None:
    refused(pki, Script(inject_before={"server_hello": ENCRYPTED_EXTENSIONS}), UnexpectedMessage)


def test_unexpected_handshake_message_after_handshake_is_refused(
        pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    server.send_handshake(ENCRYPTED_EXTENSIONS)
    with pytest.raises(UnexpectedMessage):
        client.receive_data(server.output())


def test_tampered_record_is_bad_record_mac_and_no_data_is_delivered(
        pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    events(client)
    server.send_app(b"secret payload")
    record = bytearray(server.output())
    record[10] ^= 0x40
    with pytest.raises(BadRecordMac):
        client.receive_data(bytes(record))
    assert events(client) == []


def test_oversized_record_is_record_overflow(pki: tuple[Issued, Issued]) -> None:
    client, _ = connected(pki)
    header = bytes((23, 3, 3)) + (2 ** 14 + 257).to_bytes(2, "big")
    with pytest.raises(RecordOverflow):
        client.receive_data(header + bytes(100))


def test_fatal_alert_from_server_is_reported_as_peer_alert(pki: tuple[Issued, Issued]) -> None:
    client, server = connected(pki)
    server.send_alert(40)
    with pytest.raises(PeerAlert) as info:
        client.receive_data(server.output())
    assert info.value.code == 40
    assert client.state is State.FAILED


def test_expired_leaf_is_refused_before_any_data(pki: tuple[Issued, Issued]) -> None:
    from vipernet.tls.errors import CertificateExpired

    root, _ = pki
    leaf = make_leaf(root, not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    client = client_for(trust_pem=root.pem())
    server = FakeServer(leaf)
    client.start_handshake()
    with pytest.raises(CertificateExpired):
        pump(client, server)


def test_injected_clock_decides_validity(pki: tuple[Issued, Issued]) -> None:
    from vipernet.tls.errors import CertificateNotYetValid

    root, leaf = pki
    past = (NOW - datetime.timedelta(days=30)).timestamp()
    client = client_for(trust_pem=root.pem(), now=past)
    server = FakeServer(leaf)
    client.start_handshake()
    with pytest.raises(CertificateNotYetValid):
        pump(client, server)


def test_insecure_mode_warns_loudly_and_skips_chain_checks() -> None:
    leaf = make_leaf(None)  # self-signed
    with pytest.warns(UserWarning, match="DISABLED"):
        client = client_for(insecure=True)
    server = FakeServer(leaf)
    client.start_handshake()
    pump(client, server)
    assert client.handshake_complete and client.insecure


def test_server_name_is_required_unless_insecure() -> None:
    with pytest.raises(TLSUsageError):
        client_for(server_name=None)  # type: ignore[arg-type]


def test_server_name_is_sent_and_checked_as_an_idna_a_label() -> None:
    root = make_ca("idna root")
    leaf = make_leaf(root, names=("xn--bcher-kva.example",))
    client = client_for("Bücher.example.", trust_pem=root.pem())
    assert client.server_name == "xn--bcher-kva.example"
    client.start_handshake()
    assert b"xn--bcher-kva.example" in client.data_to_send()
    client2 = client_for("BÜCHER.example", trust_pem=root.pem())
    server = FakeServer(leaf)
    client2.start_handshake()
    pump(client2, server)
    assert client2.handshake_complete


def test_invalid_server_name_is_a_usage_error() -> None:
    with pytest.raises(TLSUsageError):
        client_for("bad..name")


def test_ticket_age_is_obfuscated_and_expiry_is_honoured(pki: tuple[Issued, Issued]) -> None:
    root, _leaf = pki
    client, _ = connected(pki, Script(tickets=1))
    ticket = client.latest_ticket
    assert ticket.obfuscated_age(ticket.received_at + 2.5) == (2500 + ticket.age_add) % 2**32
    assert ticket.is_valid(ticket.received_at + 10)
    assert not ticket.is_valid(ticket.received_at + ticket.lifetime + 1)
    late = client_for(trust_pem=root.pem(), session=ticket,
                      now=ticket.received_at + ticket.lifetime + 1)
    late.start_handshake()
    assert ticket.ticket not in late.data_to_send()  # an expired ticket is not offered
    other = client_for("other.test", trust_pem=root.pem(), session=ticket,
                       now=ticket.received_at + 1)
    other.start_handshake()
    assert ticket.ticket not in other.data_to_send()  # nor one from another server
    fresh = client_for(trust_pem=root.pem(), session=ticket, now=ticket.received_at + 1)
    fresh.start_handshake()
    assert ticket.ticket in fresh.data_to_send()


ACTIONS = st.lists(st.sampled_from(["server_data", "server_update", "server_update_ask",
                                    "server_ticket", "client_data", "client_update",
                                    "client_update_ask", "deliver"]), max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_any_interleaving_of_data_key_updates_and_tickets_keeps_both_streams_intact(
        pki: tuple[Issued, Issued], actions: list[str]) -> None:
    client, server = connected(pki)
    events(client)
    sent_down, sent_up = bytearray(), bytearray()
    got_down = bytearray()
    for i, action in enumerate(actions):
        chunk = f"<{i}:{action}>".encode() * (i + 1)
        if action == "server_data":
            server.send_app(chunk)
            sent_down += chunk
        elif action.startswith("server_update"):
            server.send_key_update(request=action.endswith("ask"))
        elif action == "server_ticket":
            server.send_ticket(bytes((i,)))
        elif action == "client_data":
            client.send_application_data(chunk)
            sent_up += chunk
        elif action.startswith("client_update"):
            client.request_key_update(ask_peer=action.endswith("ask"))
        if action == "deliver" or i == len(actions) - 1:
            pump(client, server)
            got_down += b"".join(e.data for e in events(client)
                                 if isinstance(e, ApplicationDataReceived))
    pump(client, server)
    got_down += b"".join(e.data for e in events(client) if isinstance(e, ApplicationDataReceived))
    assert got_down == sent_down
    assert server.app_received == sent_up


def test_crossing_key_update_requests_are_each_answered(pki: tuple[Issued, Issued]) -> None:
    # RFC 8446 4.6.3: when both sides ask at once and the requests cross, each side still
    # answers the other's; our own pending request does not excuse us from answering.
    client, server = connected(pki)
    events(client)
    client.request_key_update(ask_peer=True)  # in flight, not yet seen by the server
    server.send_key_update(request=True)  # the server's own request crosses it
    client.receive_data(server.output())
    assert client.counters["key_updates_sent"] == 2  # our request, then our answer
    server.receive(client.data_to_send())
    assert server.key_updates_received == 2
    # Each side has moved its write key twice (the server once for its request and once
    # for its answer to ours) and both streams still read.
    client.receive_data(server.output())
    server.send_app(b"down")
    client.send_application_data(b"up")
    client.receive_data(server.output())
    server.receive(client.data_to_send())
    assert [e for e in events(client) if isinstance(e, ApplicationDataReceived)] == [
        ApplicationDataReceived(data=b"down")]
    assert server.app_received == b"up"
