"""The sans-IO transport against a scripted plaintext server: version exchange, KEXINIT
rules, strict KEX, timeouts.  The full key exchange is covered against OpenSSH."""

from __future__ import annotations

import random

import pytest

from vipernet.ssh.algorithms import STRICT_KEX_CLIENT, STRICT_KEX_SERVER
from vipernet.ssh.codec import SSHBuffer
from vipernet.ssh.errors import (
    DisconnectReason,
    KexError,
    SSHDisconnect,
    SSHProtocolError,
    SSHTimeout,
)
from vipernet.ssh.messages import KexInit, Msg, build_kexinit, parse_kexinit
from vipernet.ssh.packet import PacketOpener, PacketSealer
from vipernet.ssh.transport import State, Transport


def _transport() -> Transport:
    t = Transport(rng=random.Random(7), verify_host_key=lambda key: None)
    t.start(0.0)
    return t


def _server_kexinit(strict: bool = True, ciphers: tuple[str, ...] = ("aes128-ctr",)) -> bytes:
    kex = ("curve25519-sha256",) + ((STRICT_KEX_SERVER,) if strict else ())
    return build_kexinit(KexInit(cookie=bytes(16), kex=kex, host_key=("ssh-ed25519",),
                                 cipher_c2s=ciphers, cipher_s2c=ciphers,
                                 mac_c2s=("hmac-sha2-256",), mac_s2c=("hmac-sha2-256",)))


def _plain(*payloads: bytes) -> bytes:
    sealer = PacketSealer(random.Random(3))
    return b"".join(sealer.seal(p) for p in payloads)


def _sent_payloads(t: Transport) -> list[bytes]:
    data = t.data_to_send()
    line, _, rest = data.partition(b"\r\n")
    opener = PacketOpener()
    opener.feed(rest if line.startswith(b"SSH-") else data)
    out = []
    while (p := opener.next()) is not None:
        out.append(p)
    return out


def test_client_sends_version_then_kexinit_with_strict_and_ext_info_markers() -> None:
    t = Transport(rng=random.Random(1), verify_host_key=lambda key: None)
    t.start(0.0)
    data = t.data_to_send()
    assert data.startswith(b"SSH-2.0-vipernet")
    _line, _, rest = data.partition(b"\r\n")
    opener = PacketOpener()
    opener.feed(rest)
    kexinit = parse_kexinit(opener.next() or b"")
    assert kexinit.kex[:2] == ("curve25519-sha256", "curve25519-sha256@libssh.org")
    assert STRICT_KEX_CLIENT in kexinit.kex and "ext-info-c" in kexinit.kex
    assert kexinit.cipher_c2s[0] == "aes128-ctr"
    assert "ssh-rsa" not in kexinit.host_key  # SHA-1 RSA signatures are not offered


def test_banner_lines_before_the_version_are_tolerated() -> None:
    t = _transport()
    t.receive_data(b"Welcome\r\nto the server\nSSH-2.0-OpenSSH_9.2 Debian\r\n", 0.1)
    assert t.banner_lines == [b"Welcome", b"to the server"]
    assert t.server_version == b"SSH-2.0-OpenSSH_9.2 Debian"
    assert t.state is State.KEX


def test_version_split_across_reads_is_reassembled() -> None:
    t = _transport()
    for ch in b"SSH-2.0-X\r\n":
        t.receive_data(bytes([ch]), 0.1)
    assert t.server_version == b"SSH-2.0-X"


def test_ssh_1_server_is_refused_with_version_reason() -> None:
    t = _transport()
    with pytest.raises(SSHProtocolError) as info:
        t.receive_data(b"SSH-1.5-old\r\n", 0.1)
    assert info.value.reason == DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED
    assert t.state is State.CLOSED


def test_endless_garbage_without_newline_is_refused() -> None:
    t = _transport()
    with pytest.raises(SSHProtocolError, match="line of more than"):
        for _ in range(20):
            t.receive_data(b"A" * 1000, 0.1)


def test_endless_banner_lines_are_refused() -> None:
    t = _transport()
    with pytest.raises(SSHProtocolError, match="too much before"):
        for _ in range(2000):
            t.receive_data(b"banner line\r\n", 0.1)


def test_a_server_that_never_answers_times_out_at_the_deadline() -> None:
    t = Transport(rng=random.Random(1), verify_host_key=lambda key: None,
                  handshake_timeout=5.0)
    t.start(100.0)
    assert t.next_deadline() == 105.0
    t.handle_timer(104.9)  # not yet
    with pytest.raises(SSHTimeout, match="version exchange"):
        t.handle_timer(105.0)
    assert t.state is State.CLOSED


def test_a_server_stalling_mid_kex_times_out() -> None:
    t = _transport()
    t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit()), 1.0)
    with pytest.raises(SSHTimeout, match="key exchange"):
        t.handle_timer(31.0)


def test_kexinit_is_answered_with_ecdh_init() -> None:
    t = _transport()
    t.data_to_send()
    t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit()), 1.0)
    sent = _sent_payloads(t)
    assert sent[0][0] == Msg.KEX_ECDH_INIT
    assert SSHBuffer(sent[0][1:]).pull_string() != b""
    assert t.strict_kex


def test_strict_kex_refuses_a_message_before_kexinit() -> None:
    t = _transport()
    with pytest.raises(SSHProtocolError, match="first packet"):
        t.receive_data(b"SSH-2.0-X\r\n" + _plain(b"\x02\x00\x00\x00\x00",
                                                 _server_kexinit()), 1.0)


def test_strict_kex_refuses_ignore_during_the_initial_exchange() -> None:
    t = _transport()
    with pytest.raises(SSHProtocolError, match="strict KEX"):
        t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit(),
                                                 b"\x02\x00\x00\x00\x00"), 1.0)


def test_without_strict_kex_ignore_and_debug_are_fine_during_kex() -> None:
    t = _transport()
    debug = b"\x04\x00\x00\x00\x00\x05hello\x00\x00\x00\x00"
    t.receive_data(b"SSH-2.0-X\r\n" + _plain(b"\x02\x00\x00\x00\x00",
                                             _server_kexinit(strict=False), debug), 1.0)
    assert not t.strict_kex
    assert t.ignored == 1
    assert t.debug_messages == ["hello"]


def test_unknown_transport_message_is_answered_with_unimplemented() -> None:
    t = _transport()
    t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit(strict=False)), 1.0)
    t.data_to_send()
    t.receive_data(_plain_seq(b"\x28hello", seq=1), 1.0)
    sent = _sent_payloads(t)
    assert sent[0][0] == Msg.UNIMPLEMENTED
    assert SSHBuffer(sent[0][1:]).pull_uint32() == 1


def _plain_seq(payload: bytes, seq: int) -> bytes:
    sealer = PacketSealer(random.Random(4))
    sealer.sequence = seq
    return sealer.seal(payload)


def test_a_wrongly_guessed_first_kex_packet_is_ignored() -> None:
    t = _transport()
    k = parse_kexinit(_server_kexinit())
    guessed = build_kexinit(KexInit(
        cookie=bytes(16), kex=("sntrup761x25519-sha512@openssh.com", *k.kex),
        host_key=k.host_key, cipher_c2s=k.cipher_c2s, cipher_s2c=k.cipher_s2c,
        mac_c2s=k.mac_c2s, mac_s2c=k.mac_s2c, first_kex_follows=True))
    bogus_reply = b"\x1f" + b"\x00" * 12  # would be a malformed KEX_ECDH_REPLY
    t.receive_data(b"SSH-2.0-X\r\n" + _plain(guessed, bogus_reply), 1.0)
    assert t.state is State.KEX  # ignored, not a protocol error


def test_no_common_cipher_is_a_key_exchange_failure() -> None:
    t = _transport()
    with pytest.raises(KexError, match="no common client-to-server cipher") as info:
        t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit(ciphers=("3des-cbc",))), 1.0)
    assert info.value.reason == DisconnectReason.KEY_EXCHANGE_FAILED


def test_service_message_before_keys_is_a_protocol_error() -> None:
    t = Transport(rng=random.Random(1), verify_host_key=lambda key: None,
                  handled=frozenset({Msg.CHANNEL_DATA}))
    t.start(0.0)
    with pytest.raises(SSHProtocolError):
        t.receive_data(b"SSH-2.0-X\r\n" + _plain(_server_kexinit(strict=False),
                                                 b"\x5e\x00\x00\x00\x00"), 1.0)


def test_disconnect_from_the_server_raises_with_its_reason_and_text() -> None:
    t = _transport()
    msg = b"\x01\x00\x00\x00\x0b\x00\x00\x00\x03bye\x00\x00\x00\x00"
    with pytest.raises(SSHDisconnect, match=r"BY_APPLICATION.*bye") as info:
        t.receive_data(b"SSH-2.0-X\r\n" + _plain(msg), 1.0)
    assert info.value.code == 11
    assert t.state is State.CLOSED


def test_our_disconnect_is_queued_and_closes() -> None:
    t = _transport()
    t.receive_data(b"SSH-2.0-X\r\n", 1.0)
    t.data_to_send()
    t.disconnect(DisconnectReason.BY_APPLICATION, "done")
    sent = _sent_payloads(t)
    assert sent[0][0] == Msg.DISCONNECT
    assert t.state is State.CLOSED
    assert t.receive_data(b"more", 2.0) == []
