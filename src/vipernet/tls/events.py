"""Events the sans-IO connection hands out through ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass

from vipernet.tls.constants import CipherSuite
from vipernet.tls.session import SessionTicket


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeCompleted:
    cipher_suite: CipherSuite
    alpn_protocol: str | None
    session_resumed: bool
    group: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationDataReceived:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTicketReceived:
    ticket: SessionTicket


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUpdateReceived:
    update_requested: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseNotifyReceived:
    """The server closed its side cleanly; nothing more will arrive."""


Event = (HandshakeCompleted | ApplicationDataReceived | SessionTicketReceived | KeyUpdateReceived
         | CloseNotifyReceived)
