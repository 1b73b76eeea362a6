"""The client handshake state machine as data (RFC 8446 appendix A.1).

``TRANSITIONS[state][message type]`` names the connection's handler for that message in
that state; anything not listed is an ``unexpected_message``.  The handler decides the
next state (some messages lead to more than one) through the connection's single
``_set_state``.
"""

from __future__ import annotations

import enum

from vipernet.tls.constants import HandshakeType


class State(enum.Enum):
    START = "start"
    WAIT_SERVER_HELLO = "wait_server_hello"
    WAIT_ENCRYPTED_EXTENSIONS = "wait_encrypted_extensions"
    WAIT_CERTIFICATE_OR_REQUEST = "wait_certificate_or_request"
    WAIT_CERTIFICATE = "wait_certificate"
    WAIT_CERTIFICATE_VERIFY = "wait_certificate_verify"
    WAIT_FINISHED = "wait_finished"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


TRANSITIONS: dict[State, dict[HandshakeType, str]] = {
    State.START: {},
    State.WAIT_SERVER_HELLO: {HandshakeType.SERVER_HELLO: "_on_server_hello"},
    State.WAIT_ENCRYPTED_EXTENSIONS: {
        HandshakeType.ENCRYPTED_EXTENSIONS: "_on_encrypted_extensions"},
    State.WAIT_CERTIFICATE_OR_REQUEST: {
        HandshakeType.CERTIFICATE: "_on_certificate",
        HandshakeType.CERTIFICATE_REQUEST: "_on_certificate_request"},
    State.WAIT_CERTIFICATE: {HandshakeType.CERTIFICATE: "_on_certificate"},
    State.WAIT_CERTIFICATE_VERIFY: {
        HandshakeType.CERTIFICATE_VERIFY: "_on_certificate_verify"},
    State.WAIT_FINISHED: {HandshakeType.FINISHED: "_on_finished"},
    State.CONNECTED: {
        HandshakeType.NEW_SESSION_TICKET: "_on_new_session_ticket",
        HandshakeType.KEY_UPDATE: "_on_key_update"},
    State.CLOSED: {},
    State.FAILED: {},
}

HANDSHAKING = frozenset({
    State.WAIT_SERVER_HELLO, State.WAIT_ENCRYPTED_EXTENSIONS, State.WAIT_CERTIFICATE_OR_REQUEST,
    State.WAIT_CERTIFICATE, State.WAIT_CERTIFICATE_VERIFY, State.WAIT_FINISHED})
