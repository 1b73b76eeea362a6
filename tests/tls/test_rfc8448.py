"""Known answers for the TLS 1.3 key schedule and record layer, from RFC 8448.

Source: every hex value in this file is published in RFC 8448 section 3 ("Simple 1-RTT
Handshake"), except the PSK, its early secret, the hash of the truncated ClientHello and the
PSK binder, which RFC 8448 section 4 ("Resumed 0-RTT Handshake") prints.  They are facts of
the RFC.  The trace's inputs are laid out as the RFC prints them, sixteen octets to a line,
so that each can be held against the RFC page; the values it prints per stage are plain hex.

Only the inputs are taken as given: the client's X25519 private key, the handshake messages
as they crossed the wire, and (for section 4) the truncated ClientHello's hash.  Every
secret, key, Finished value and protected record is then computed by vipernet.tls and
compared with the value the RFC prints for that stage, so a failure names the first stage
that went wrong.  The last test drives the whole client engine with the trace's server
records.
"""

from __future__ import annotations

import hashlib
import random
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519

from vipernet.tls.config import TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import CipherSuite, ContentType, ExtensionType, HandshakeType
from vipernet.tls.errors import BadCertificateVerify
from vipernet.tls.key_schedule import (
    SUITES,
    KeySchedule,
    finished_verify_data,
    hkdf_expand_label,
    resumption_psk,
    traffic_keys,
)
from vipernet.tls.messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    ServerHello,
    find_extension,
    parse_handshake,
    parse_server_key_share,
)
from vipernet.tls.record import RecordCipher
from vipernet.tls.signatures import verify_certificate_verify


def octets(*rows: str) -> bytes:
    """Hex written the way the RFC prints it: pairs of digits separated by spaces."""
    return bytes.fromhex("".join(rows))


# -- the trace's inputs (RFC 8448 section 3) ----------------------------------------------

CLIENT_PRIVATE = octets(
    "49 af 42 ba 7f 79 94 85 2d 71 3e f2 78 4b cb ca"
    "a7 91 1d e2 6a dc 56 42 cb 63 45 40 e7 ea 50 05")

CLIENT_HELLO = octets(
    "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38"
    "c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef"
    "62 83 02 4d ec e7 00 00 06 13 01 13 03 13 02 01"
    "00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76"
    "65 72 ff 01 00 01 00 00 0a 00 14 00 12 00 1d 00"
    "17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00"
    "23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d"
    "e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e"
    "51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00"
    "03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03"
    "02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01"
    "04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c"
    "00 02 40 01")

SERVER_HELLO = octets(
    "02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e"
    "60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55"
    "77 2e d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24"
    "00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db"
    "f7 c6 72 e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0"
    "4e 75 1f 0f 00 2b 00 02 03 04")

ENCRYPTED_EXTENSIONS = octets(
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17"
    "00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c"
    "00 02 40 01 00 00 00 00")

CERTIFICATE = octets(
    "0b 00 01 b9 00 00 01 b5 00 01 b0 30 82 01 ac 30"
    "82 01 15 a0 03 02 01 02 02 01 02 30 0d 06 09 2a"
    "86 48 86 f7 0d 01 01 0b 05 00 30 0e 31 0c 30 0a"
    "06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36"
    "30 37 33 30 30 31 32 33 35 39 5a 17 0d 32 36 30"
    "37 33 30 30 31 32 33 35 39 5a 30 0e 31 0c 30 0a"
    "06 03 55 04 03 13 03 72 73 61 30 81 9f 30 0d 06"
    "09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00"
    "30 81 89 02 81 81 00 b4 bb 49 8f 82 79 30 3d 98"
    "08 36 39 9b 36 c6 98 8c 0c 68 de 55 e1 bd b8 26"
    "d3 90 1a 24 61 ea fd 2d e4 9a 91 d0 15 ab bc 9a"
    "95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12"
    "09 98 e1 87 a8 0e e0 cc b0 52 4b 1b 01 8c 3e 0b"
    "63 26 4d 44 9a 6d 38 e2 2a 5f da 43 08 46 74 80"
    "30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6 d1 d0"
    "3e 2b d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a"
    "8d 88 d7 9f 7f 1e 3f 02 03 01 00 01 a3 1a 30 18"
    "30 09 06 03 55 1d 13 04 02 30 00 30 0b 06 03 55"
    "1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86"
    "f7 0d 01 01 0b 05 00 03 81 81 00 85 aa d2 a0 e5"
    "b9 27 6b 90 8c 65 f7 3a 72 67 17 06 18 a5 4c 5f"
    "8a 7b 33 7d 2d f7 a5 94 36 54 17 f2 ea e8 f8 a5"
    "8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a"
    "03 01 51 56 72 60 96 fd 33 5e 5e 67 f2 db f1 02"
    "70 2e 60 8c ca e6 be c1 fc 63 a4 2a 99 be 5c 3e"
    "b7 10 7c 3c 54 e9 b9 eb 2b d5 20 3b 1c 3b 84 e0"
    "a8 b2 f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8"
    "f8 96 12 29 ac 91 87 b4 2b 4d e1 00 00")

CERTIFICATE_VERIFY = octets(
    "0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2"
    "e5 5a b0 85 a6 10 15 b7 21 1f 82 4c d4 84 14 5a"
    "b3 ff 52 f1 fd a8 47 7b 0b 7a bc 90 db 78 e2 d3"
    "3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee"
    "aa a7 85 c4 f3 94 ca b6 d3 0b be 8d 48 59 ee 51"
    "1f 60 29 57 b1 54 11 ac 02 76 71 45 9e 46 44 5c"
    "9e a5 8c 18 1e 81 8e 95 b8 c3 fb 0b f3 27 84 09"
    "d3 be 15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2"
    "0d 53 df ac d4 2f 74 f3")

SERVER_FINISHED = octets(
    "14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7"
    "1d f4 de da 4a b4 2c 30 95 72 cb 7f ff ee 54 54"
    "b7 8f 07 18")

CLIENT_FINISHED = octets(
    "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc"
    "eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2"
    "ed d5 ce 61")

# What the server's flight and the client's Finished look like once protected.
SERVER_FLIGHT_RECORD = octets(
    "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07"
    "cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e"
    "df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca"
    "07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78"
    "b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61"
    "34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b"
    "d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79"
    "02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9"
    "d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c"
    "7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e"
    "d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3"
    "60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92"
    "8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82"
    "04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94"
    "5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8"
    "94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68"
    "45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63"
    "aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f"
    "44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26"
    "4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26"
    "f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3"
    "6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31"
    "7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64"
    "7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e"
    "1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24"
    "3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da"
    "8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c"
    "f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4"
    "61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c"
    "74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be"
    "5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18"
    "a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb"
    "99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb"
    "56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59"
    "77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14"
    "63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38"
    "eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97"
    "8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84"
    "5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78"
    "40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5"
    "d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31"
    "ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e"
    "75 0e dc 53 37 0d 2b")

CLIENT_FINISHED_RECORD = octets(
    "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44"
    "a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc"
    "44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c"
    "ae ac ab 68 67 d7 26 c4 05 46")


SHA256 = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]  # the trace's suite (0x1301)


def handshake_body(message: bytes) -> tuple[int, bytes]:
    """Split a handshake message into its type and its body (the 4-byte header dropped)."""
    return message[0], message[4:]


def server_public_key() -> bytes:
    """The server's X25519 share, read out of the trace's ServerHello by our own parser."""
    hello = parse_handshake(*handshake_body(SERVER_HELLO))
    assert isinstance(hello, ServerHello)
    share = find_extension(hello.extensions, ExtensionType.KEY_SHARE)
    assert share is not None
    group, key = parse_server_key_share(share)
    assert group == 0x001D  # x25519
    return key


def derive_trace_secrets() -> dict[str, bytes]:
    """Walk the trace through our KeySchedule; each stage is kept under a short name."""
    schedule = KeySchedule("sha256")
    stages = {"early": schedule.early_secret}
    mine = x25519.X25519PrivateKey.from_private_bytes(CLIENT_PRIVATE)
    stages["shared"] = mine.exchange(x25519.X25519PublicKey.from_public_bytes(server_public_key()))
    schedule.update(CLIENT_HELLO)
    schedule.update(SERVER_HELLO)
    stages["c_hs"], stages["s_hs"] = schedule.handshake_secrets(stages["shared"])
    stages["handshake"] = schedule.handshake_secret
    schedule.update(ENCRYPTED_EXTENSIONS)
    schedule.update(CERTIFICATE)
    stages["cv_transcript"] = schedule.transcript_hash()
    schedule.update(CERTIFICATE_VERIFY)
    stages["s_finished"] = finished_verify_data("sha256", stages["s_hs"],
                                                schedule.transcript_hash())
    schedule.update(SERVER_FINISHED)
    stages["c_ap"], stages["s_ap"], stages["exp"] = schedule.application_secrets()
    stages["master"] = schedule.master_secret
    stages["c_finished"] = finished_verify_data("sha256", stages["c_hs"],
                                                schedule.transcript_hash())
    schedule.update(CLIENT_FINISHED)
    stages["res"] = schedule.resumption_master_secret()
    return stages


# The intermediate secrets RFC 8448 section 3 prints, keyed like derive_trace_secrets().
PRINTED_SECRETS = {
    "early": "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a",
    "shared": "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d",
    "handshake": "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac",
    "c_hs": "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21",
    "s_hs": "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38",
    "master": "18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919",
    "c_ap": "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5",
    "s_ap": "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643",
    "exp": "fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50",
    "res": "7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c",
}

# Write key and IV of each traffic secret, as RFC 8448 section 3 prints them.
PRINTED_KEYS = {
    "s_hs": ("3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"),
    "c_hs": ("dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f"),
    "s_ap": ("9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"),
    "c_ap": ("17422dda596ed5d9acd890e3c63f5051", "5b78923dee08579033e523d9"),
}


def test_the_trace_inputs_agree_with_one_another() -> None:
    # The private key's public half is the key share the ClientHello carries, and the
    # ClientHello offers the suite and group the ServerHello picks.
    client_hello = parse_handshake(*handshake_body(CLIENT_HELLO))
    assert isinstance(client_hello, ClientHello)
    public = x25519.X25519PrivateKey.from_private_bytes(CLIENT_PRIVATE).public_key()
    assert public.public_bytes_raw() in CLIENT_HELLO
    server_hello = parse_handshake(*handshake_body(SERVER_HELLO))
    assert isinstance(server_hello, ServerHello)
    assert server_hello.cipher_suite == CipherSuite.TLS_AES_128_GCM_SHA256
    assert server_hello.cipher_suite in client_hello.cipher_suites
    assert [msg[0] for msg in (ENCRYPTED_EXTENSIONS, CERTIFICATE, CERTIFICATE_VERIFY,
                               SERVER_FINISHED, CLIENT_FINISHED)] == [
        HandshakeType.ENCRYPTED_EXTENSIONS, HandshakeType.CERTIFICATE,
        HandshakeType.CERTIFICATE_VERIFY, HandshakeType.FINISHED, HandshakeType.FINISHED]


def test_derived_label_of_the_early_secret_matches_rfc8448() -> None:
    # The first HKDF-Expand-Label of the schedule: "derived" over the hash of nothing.
    early = bytes.fromhex(PRINTED_SECRETS["early"])
    derived = hkdf_expand_label("sha256", early, b"derived", hashlib.sha256().digest(), 32)
    assert derived.hex() == "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"


def test_every_secret_of_the_1rtt_schedule_matches_rfc8448() -> None:
    derived = derive_trace_secrets()
    for stage, printed in PRINTED_SECRETS.items():  # in schedule order: first failure first
        assert derived[stage].hex() == printed, stage


def test_both_finished_values_match_rfc8448() -> None:
    derived = derive_trace_secrets()
    assert derived["s_finished"] == handshake_body(SERVER_FINISHED)[1]
    assert derived["c_finished"] == handshake_body(CLIENT_FINISHED)[1]


def test_write_keys_and_ivs_match_rfc8448() -> None:
    derived = derive_trace_secrets()
    for stage, (key, iv) in PRINTED_KEYS.items():
        assert [v.hex() for v in traffic_keys(SHA256, derived[stage])] == [key, iv], stage


def test_server_certificate_verify_checks_out_with_the_trace_certificate() -> None:
    # RSA-PSS over the transcript up to Certificate, with the 1024-bit key the trace's
    # self-signed certificate carries; a flipped bit in the signature must not verify.
    certificate = parse_handshake(*handshake_body(CERTIFICATE))
    verify = parse_handshake(*handshake_body(CERTIFICATE_VERIFY))
    assert isinstance(certificate, Certificate) and isinstance(verify, CertificateVerify)
    key = x509.load_der_x509_certificate(certificate.entries[0].cert_data).public_key()
    transcript = derive_trace_secrets()["cv_transcript"]
    verify_certificate_verify(key, verify.algorithm, verify.signature, transcript)
    forged = bytes([verify.signature[0] ^ 1]) + verify.signature[1:]
    with pytest.raises(BadCertificateVerify):
        verify_certificate_verify(key, verify.algorithm, forged, transcript)


def test_sealing_the_client_finished_gives_the_trace_record_and_it_opens_again() -> None:
    derived = derive_trace_secrets()
    record = RecordCipher(SHA256, derived["c_hs"]).seal(ContentType.HANDSHAKE, CLIENT_FINISHED)
    assert record == CLIENT_FINISHED_RECORD
    opened = RecordCipher(SHA256, derived["c_hs"]).open(record[:5], record[5:])
    assert opened == (ContentType.HANDSHAKE, CLIENT_FINISHED)


def test_sealing_the_server_flight_gives_the_trace_record() -> None:
    derived = derive_trace_secrets()
    flight = ENCRYPTED_EXTENSIONS + CERTIFICATE + CERTIFICATE_VERIFY + SERVER_FINISHED
    sealed = RecordCipher(SHA256, derived["s_hs"]).seal(ContentType.HANDSHAKE, flight)
    assert sealed == SERVER_FLIGHT_RECORD


def test_resumption_psk_early_secret_and_binder_match_rfc8448_section_4() -> None:
    # The ticket of section 3 carries nonce 00 00; section 4 resumes with the PSK it gives.
    psk = resumption_psk("sha256", derive_trace_secrets()["res"], b"\x00\x00")
    assert psk.hex() == "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3"
    schedule = KeySchedule("sha256")
    schedule.set_psk(psk)
    assert schedule.early_secret.hex() == (
        "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c")
    # Section 4 prints the hash of its ClientHello cut before the binders, and the binder.
    hello_prefix_hash = octets(
        "63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04"
        "f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14")
    assert schedule.binder(hello_prefix_hash).hex() == (
        "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d")


class ScriptedRandom(random.Random):
    """Gives the engine the trace's client random and private key when it draws bytes.

    The engine draws, in order: the ClientHello random, the legacy session id, the X25519
    private key.
    """

    def __init__(self) -> None:
        super().__init__(0)
        client_hello = parse_handshake(*handshake_body(CLIENT_HELLO))
        assert isinstance(client_hello, ClientHello)
        self.draws = [client_hello.random, bytes(32), CLIENT_PRIVATE]

    def randbytes(self, n: int) -> bytes:
        value = self.draws.pop(0)
        assert len(value) == n
        return value


def test_engine_fed_the_trace_server_records_answers_with_the_trace_client_finished() -> None:
    """Record layer, state machine, schedule, RSA-PSS check and Finished check, all for real.

    Our own ClientHello carries other extensions than the trace's, so the trace's
    ClientHello (with its empty legacy session id) is put in the transcript in its place.
    The trace's certificate is self-signed, so it is taken in insecure mode.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # insecure mode warns loudly; that is tested elsewhere
        conn = TLSClientConnection(TLSConfig(server_name="server", insecure=True), now=0,
                                   rng=ScriptedRandom())
    conn.start_handshake()
    conn.data_to_send()
    conn._client_hello_raw = CLIENT_HELLO
    conn._session_id = b""
    plaintext_header = bytes((ContentType.HANDSHAKE, 3, 3)) + len(SERVER_HELLO).to_bytes(2, "big")
    conn.receive_data(plaintext_header + SERVER_HELLO)
    conn.receive_data(SERVER_FLIGHT_RECORD)
    assert conn.handshake_complete
    sent = conn.data_to_send()
    assert sent[:6] == bytes((ContentType.CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1))  # compat CCS
    assert sent[6:] == CLIENT_FINISHED_RECORD
    assert conn.exporter_master_secret.hex() == PRINTED_SECRETS["exp"]
