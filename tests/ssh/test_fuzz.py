"""Property tests: hostile bytes into every parser give typed errors, never anything else."""

from __future__ import annotations

import contextlib
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.errors import VipernetError
from vipernet.ssh.algorithms import CIPHERS, MACS
from vipernet.ssh.auth import AuthState
from vipernet.ssh.connection import SSHConnection
from vipernet.ssh.messages import Msg, build_kexinit, parse_kexinit
from vipernet.ssh.packet import PacketKeys, PacketOpener
from vipernet.ssh.sftp.protocol import Framer, Fxp, parse_response, parse_version
from vipernet.ssh.transport import Transport

SETTINGS = settings(max_examples=300, deadline=None)


def _drain(opener: PacketOpener, data: bytes) -> None:
    """Feed ``data`` and take every packet out: only typed errors may come out of it."""
    opener.feed(data)
    try:
        while opener.next() is not None:
            pass
    except VipernetError:
        pass


@SETTINGS
@given(st.binary(max_size=600))
def test_plaintext_packet_parser_only_raises_typed_errors(data: bytes) -> None:
    _drain(PacketOpener(), data)


@SETTINGS
@given(st.binary(max_size=600), st.sampled_from(["hmac-sha2-256", "hmac-sha1-etm@openssh.com"]))
def test_encrypted_packet_parser_only_raises_typed_errors(data: bytes, mac: str) -> None:
    opener = PacketOpener()
    opener.set_keys(PacketKeys(CIPHERS["aes128-ctr"], MACS[mac], key=bytes(16), iv=bytes(16),
                               mac_key=bytes(32), encrypt=False), reset_sequence=True)
    _drain(opener, data)


@SETTINGS
@given(st.binary(max_size=400))
def test_kexinit_parser_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(VipernetError):
        parse_kexinit(bytes([Msg.KEXINIT]) + data)


name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-@.", min_size=1, max_size=20)
names = st.lists(name, max_size=5).map(tuple)


@SETTINGS
@given(st.lists(names, min_size=10, max_size=10), st.booleans(), st.binary(min_size=16,
                                                                            max_size=16))
def test_kexinit_round_trips(lists: list[tuple[str, ...]], first: bool, cookie: bytes) -> None:
    from vipernet.ssh.messages import KexInit

    k = KexInit(cookie=cookie, kex=lists[0], host_key=lists[1], cipher_c2s=lists[2],
                cipher_s2c=lists[3], mac_c2s=lists[4], mac_s2c=lists[5],
                compression_c2s=lists[6], compression_s2c=lists[7], languages_c2s=lists[8],
                languages_s2c=lists[9], first_kex_follows=first)
    assert parse_kexinit(build_kexinit(k)) == k


def _packet(payload: bytes) -> bytes:
    pad = 8 - (5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + bytes(pad)


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=6))
def test_transport_fed_hostile_packets_during_kex_only_raises_typed_errors(
        payloads: list[bytes]) -> None:
    t = Transport(rng=random.Random(0), verify_host_key=lambda key: None)
    t.start(0.0)
    with contextlib.suppress(VipernetError):
        t.receive_data(b"SSH-2.0-fuzz\r\n" + b"".join(_packet(p) for p in payloads), 1.0)


def _authenticated_connection() -> SSHConnection:
    conn = SSHConnection("u", rng=random.Random(0), verify_host_key=lambda key: None)
    conn.auth.state = AuthState.DONE
    conn.open_session()
    conn.open_session()
    return conn


@SETTINGS
@given(st.integers(min_value=80, max_value=100), st.binary(max_size=80))
def test_connection_layer_messages_only_raise_typed_errors(msg: int, body: bytes) -> None:
    conn = _authenticated_connection()
    # Aim a share of the messages at a real channel so the handlers get past the lookup.
    if len(body) >= 4 and body[0] & 1:
        body = b"\x00\x00\x00\x00" + body[4:]
    with contextlib.suppress(VipernetError):
        conn._handle(bytes([msg]) + body)


@SETTINGS
@given(st.binary(max_size=500))
def test_sftp_framer_and_response_parser_only_raise_typed_errors(data: bytes) -> None:
    framer = Framer()
    framer.feed(data)
    try:
        while (pkt := framer.next()) is not None:
            kind, _rid, body = pkt
            if kind == Fxp.VERSION:
                parse_version(body)
            else:
                parse_response(kind, body)
    except VipernetError:
        pass


@SETTINGS
@given(st.sampled_from([Fxp.STATUS, Fxp.HANDLE, Fxp.DATA, Fxp.NAME, Fxp.ATTRS, 7, 250]),
       st.binary(max_size=300))
def test_each_sftp_response_type_only_raises_typed_errors(kind: int, body: bytes) -> None:
    with contextlib.suppress(VipernetError):
        parse_response(kind, body)


@SETTINGS
@given(st.sampled_from([6, 51, 52, 53, 60, 61, 99]), st.binary(max_size=120))
def test_authentication_messages_only_raise_typed_errors(msg: int, body: bytes) -> None:
    from vipernet.ssh.auth import AuthClient

    auth = AuthClient("u", password="pw")
    with contextlib.suppress(VipernetError):
        auth.handle(bytes([Msg.SERVICE_ACCEPT]) + b"\x00\x00\x00\x0cssh-userauth", b"s", ())
        auth.handle(bytes([msg]) + body, b"sid", ())
        auth.method = "keyboard-interactive"
        auth.handle(bytes([60]) + body, b"sid", ())


@SETTINGS
@given(st.sampled_from(["ssh-ed25519", "rsa-sha2-256", "ecdsa-sha2-nistp256"]),
       st.binary(max_size=200), st.binary(max_size=200))
def test_host_key_and_signature_checks_only_raise_typed_errors(alg: str, blob: bytes,
                                                               sig: bytes) -> None:
    from vipernet.ssh.hostkey import KEY_TYPE_OF_ALGORITHM, parse_host_key, verify_signature

    key_type = KEY_TYPE_OF_ALGORITHM[alg].encode()
    blob = len(key_type).to_bytes(4, "big") + key_type + blob
    with contextlib.suppress(VipernetError):
        verify_signature(parse_host_key(blob), alg, sig, b"exchange hash")


@SETTINGS
@given(st.binary(min_size=1, max_size=120), st.integers(0, 255),
       st.sampled_from(["hmac-sha2-256", "hmac-sha2-256-etm@openssh.com"]))
def test_authentic_packets_with_any_padding_length_byte_open_or_raise_typed_errors(
        body: bytes, pad: int, mac: str) -> None:
    # A peer that holds the keys (so the MAC checks out) but lies about the padding: the
    # opener trims the payload in place, and must neither crash nor hand out a wrong slice.
    import hmac as hmac_mod

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, iv, mkey = bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 64))
    etm = mac.endswith("-etm@openssh.com")
    unaligned = bytes([pad]) + body
    plain = unaligned + bytes(-(len(unaligned) + (0 if etm else 4)) % 16)  # block-align
    length = struct.pack(">I", len(plain))
    crypt = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    if etm:
        enc = length + crypt.update(plain)
        wire = enc + hmac_mod.new(mkey, bytes(4) + enc, "sha256").digest()
    else:
        wire = crypt.update(length + plain) + hmac_mod.new(mkey, bytes(4) + length + plain,
                                                           "sha256").digest()
    opener = PacketOpener()
    opener.set_keys(PacketKeys(CIPHERS["aes128-ctr"], MACS[mac], key=key, iv=iv,
                               mac_key=mkey, encrypt=False), reset_sequence=True)
    opener.feed(wire)
    try:
        payload = opener.next()
    except VipernetError:
        assert pad < 4 or pad + 1 > len(plain)
        return
    assert 4 <= pad < len(plain) and payload == plain[1 : len(plain) - pad]
