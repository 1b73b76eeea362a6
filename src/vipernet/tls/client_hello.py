"""Building the ClientHello: extensions, key shares, and the PSK binder when resuming.

The binder (RFC 8446 4.2.11.2) is an HMAC over the transcript up to and including the
ClientHello truncated just before the binders list, so the message is serialized once
with a zero binder, cut, hashed, and completed.  After a HelloRetryRequest the transcript
before that truncated ClientHello is ``message_hash(ClientHello1) || HelloRetryRequest``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from vipernet.tls.config import TLSConfig
from vipernet.tls.constants import TLS13, PskKeyExchangeMode
from vipernet.tls.errors import TLSUsageError
from vipernet.tls.key_schedule import KeySchedule
from vipernet.tls.messages import (
    ClientHello,
    Extension,
    alpn_ext,
    binders_length,
    client_key_share_ext,
    cookie_ext,
    pre_shared_key_ext,
    psk_modes_ext,
    serialize_handshake,
    server_name_ext,
    signature_algorithms_ext,
    supported_groups_ext,
    supported_versions_ext,
)
from vipernet.tls.session import SessionTicket

# TLS 1.2 ECDHE-GCM suites are listed after ours only so that a TLS 1.2-only server answers
# with a ServerHello (which we refuse as protocol_version) instead of handshake_failure; a
# TLS 1.3 server never selects them and we never accept them.
TLS12_PROBE_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030)


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalize_server_name(name: str | None) -> str | None:
    """IP addresses as given; host names as lower-case A-labels (IDNA), no trailing dot."""
    if name is None or is_ip_address(name):
        return name
    try:
        ascii_name = name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise TLSUsageError(f"server name {name!r} is not a valid host name: {exc}") from None
    if not ascii_name or len(ascii_name) > 253:
        raise TLSUsageError(f"server name {name!r} is not a valid host name")
    return ascii_name


def usable_ticket(config: TLSConfig, server_name: str | None, now: float,
                  prior_transcript: KeySchedule | None) -> SessionTicket | None:
    """The configured ticket if it may be offered now, else None."""
    ticket = config.session
    if ticket is None or not ticket.is_valid(now):
        return None
    if ticket.server_name != server_name:
        return None
    if ticket.cipher_suite not in config.cipher_suites:
        return None
    if prior_transcript is not None and prior_transcript.hash_name != ticket.hash_name:
        return None  # after HRR the PSK must fit the chosen suite's hash
    return ticket


def build_client_hello(config: TLSConfig, *, server_name: str | None, random: bytes,
                       session_id: bytes, key_shares: Mapping[int, bytes],
                       cookie: bytes | None, ticket: SessionTicket | None, now: float,
                       prior_transcript: KeySchedule | None) -> bytes:
    """The serialized ClientHello (with its handshake header)."""
    extensions: list[Extension] = []
    if server_name and config.send_sni and not is_ip_address(server_name):
        extensions.append(server_name_ext(server_name))
    extensions.append(supported_groups_ext(config.groups))
    extensions.append(signature_algorithms_ext(config.signature_schemes))
    if config.alpn_protocols:
        extensions.append(alpn_ext([p.encode() for p in config.alpn_protocols]))
    extensions.append(supported_versions_ext([TLS13]))
    if cookie is not None:
        extensions.append(cookie_ext(cookie))
    extensions.append(client_key_share_ext(list(key_shares.items())))
    if ticket is not None:
        extensions.append(psk_modes_ext([PskKeyExchangeMode.PSK_DHE_KE]))
    suites = (*config.cipher_suites, *TLS12_PROBE_SUITES)
    if ticket is None:
        return serialize_handshake(ClientHello(random=random, legacy_session_id=session_id,
                                               cipher_suites=suites,
                                               extensions=tuple(extensions)))
    # pre_shared_key goes last; its binder covers the ClientHello up to the binders.
    hash_length = len(ticket.psk)
    placeholder = pre_shared_key_ext([(ticket.ticket, ticket.obfuscated_age(now))],
                                     [bytes(hash_length)])
    partial = serialize_handshake(ClientHello(
        random=random, legacy_session_id=session_id, cipher_suites=suites,
        extensions=(*extensions, placeholder)))
    cut = len(partial) - binders_length([hash_length])
    truncated = partial[:cut]
    psk_schedule = KeySchedule(ticket.hash_name)
    psk_schedule.set_psk(ticket.psk)
    prefix = prior_transcript if prior_transcript is not None else KeySchedule(ticket.hash_name)
    binder = psk_schedule.binder(prefix.transcript_hash_with(truncated))
    # The binders list: its 2-byte length and the binder's 1-byte length are already there.
    return truncated + partial[cut:cut + 3] + binder
