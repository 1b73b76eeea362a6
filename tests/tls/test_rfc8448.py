"""RFC 8448 section 3 (simple 1-RTT) and 4 (resumed) as known answers for the key schedule.

The handshake messages and the expected secrets are the trace's published values.  The
record check seals the client Finished with the trace's handshake key and compares the
whole record with the trace's ciphertext.
"""

from __future__ import annotations

import hashlib
import random

from cryptography.hazmat.primitives.asymmetric import x25519

from vipernet.tls.config import TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import CipherSuite
from vipernet.tls.key_schedule import (
    SUITES,
    KeySchedule,
    finished_verify_data,
    hkdf_expand_label,
    resumption_psk,
    traffic_keys,
)
from vipernet.tls.record import RecordCipher

H = bytes.fromhex
CLIENT_HELLO = H(
    "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113031302"
    "010000910000000b0009000006736572766572ff01000100000a00140012001d001700180019010001010102010301"
    "0400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c"
    "002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d0002"
    "0101001c00024001")
SERVER_HELLO = H(
    "020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e003300"
    "24001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304")
ENCRYPTED_EXTENSIONS = H(
    "080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000")
CERTIFICATE = H(
    "0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c30"
    "0a06035504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c"
    "300a0603550403130372736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279"
    "303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c"
    "7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbf"
    "ae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d13040230"
    "00300b0603551d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a72"
    "67170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd"
    "335e5e67f2dbf102702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3"
    "eac9d91d402dcc0cc8f8961229ac9187b42b4de10000")
CERTIFICATE_VERIFY = H(
    "0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2"
    "d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46"
    "445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3")
SERVER_FINISHED = H("140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718")
CLIENT_FINISHED = H("14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61")
CLIENT_PRIVATE = H("49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005")
SERVER_PUBLIC = H("c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f")
SHA256 = SUITES[CipherSuite.TLS_AES_128_GCM_SHA256]


def run_simple_handshake() -> tuple[KeySchedule, dict[str, bytes]]:
    ks = KeySchedule("sha256")
    out = {"early": ks.early_secret}
    shared = x25519.X25519PrivateKey.from_private_bytes(CLIENT_PRIVATE).exchange(
        x25519.X25519PublicKey.from_public_bytes(SERVER_PUBLIC))
    out["shared"] = shared
    ks.update(CLIENT_HELLO)
    ks.update(SERVER_HELLO)
    out["c_hs"], out["s_hs"] = ks.handshake_secrets(shared)
    out["handshake"] = ks.handshake_secret
    for msg in (ENCRYPTED_EXTENSIONS, CERTIFICATE, CERTIFICATE_VERIFY):
        ks.update(msg)
    out["s_finished"] = finished_verify_data("sha256", out["s_hs"], ks.transcript_hash())
    ks.update(SERVER_FINISHED)
    out["c_ap"], out["s_ap"], out["exp"] = ks.application_secrets()
    out["master"] = ks.master_secret
    out["c_finished"] = finished_verify_data("sha256", out["c_hs"], ks.transcript_hash())
    ks.update(CLIENT_FINISHED)
    out["res"] = ks.resumption_master_secret()
    return ks, out


def test_simple_1rtt_secrets_match_rfc8448() -> None:
    _, s = run_simple_handshake()
    assert s["early"].hex() == "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a"
    assert s["shared"].hex() == "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d"
    assert s["handshake"].hex() == (
        "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac")
    assert s["c_hs"].hex() == "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21"
    assert s["s_hs"].hex() == "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38"
    assert s["master"].hex() == "18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919"
    assert s["c_ap"].hex() == "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"
    assert s["s_ap"].hex() == "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"
    assert s["exp"].hex() == "fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50"
    assert s["res"].hex() == "7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c"


def test_simple_1rtt_finished_values_match_rfc8448() -> None:
    _, s = run_simple_handshake()
    assert s["s_finished"] == SERVER_FINISHED[4:]
    assert s["c_finished"] == CLIENT_FINISHED[4:]


def test_traffic_keys_match_rfc8448() -> None:
    _, s = run_simple_handshake()
    assert [v.hex() for v in traffic_keys(SHA256, s["s_hs"])] == [
        "3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"]
    assert [v.hex() for v in traffic_keys(SHA256, s["c_hs"])] == [
        "dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f"]
    assert [v.hex() for v in traffic_keys(SHA256, s["s_ap"])] == [
        "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"]
    assert [v.hex() for v in traffic_keys(SHA256, s["c_ap"])] == [
        "17422dda596ed5d9acd890e3c63f5051", "5b78923dee08579033e523d9"]


def test_client_finished_record_protection_matches_rfc8448() -> None:
    _, s = run_simple_handshake()
    cipher = RecordCipher(SHA256, s["c_hs"])
    record = cipher.seal(22, CLIENT_FINISHED)
    assert record.hex() == (
        "170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4bfc44d87f38f80338ac98fc46de"
        "b384bd1caeacab6867d726c40546")
    opener = RecordCipher(SHA256, s["c_hs"])
    assert opener.open(record[:5], record[5:]) == (22, CLIENT_FINISHED)


def test_resumption_psk_and_binder_match_rfc8448() -> None:
    _, s = run_simple_handshake()
    psk = resumption_psk("sha256", s["res"], b"\x00\x00")
    assert psk.hex() == "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3"
    ks = KeySchedule("sha256")
    ks.set_psk(psk)
    assert ks.early_secret.hex() == (
        "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c")
    # The trace's binder hash over the truncated ClientHello, and the binder it yields.
    truncated_hash = H("63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14")
    assert ks.binder(truncated_hash).hex() == (
        "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d")


def test_expand_label_encodes_length_label_and_context() -> None:
    # HKDF-Expand-Label of "derived" with the empty-string hash, from the trace.
    empty = hashlib.sha256().digest()
    early = H("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
    assert hkdf_expand_label("sha256", early, b"derived", empty, 32).hex() == (
        "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba")


SERVER_FLIGHT_RECORD = H(
    "17030302a2d1ff334a56f5bff6594a07cc87b580233f500f45e489e7f33af35edf7869fcf40aa40aa2b8ea73f848"
    "a7ca07612ef9f945cb960b4068905123ea78b111b429ba9191cd05d2a389280f526134aadc7fc78c4b729df828b5ec"
    "f7b13bd9aefb0e57f271585b8ea9bb355c7c79020716cfb9b1183ef3ab20e37d57a6b9d7477609aee6e122a4cf5142"
    "7325250c7d0e509289444c9b3a648f1d71035d2ed65b0e3cdd0cbae8bf2d0b227812cbb360987255cc744110c453ba"
    "a4fcd610928d809810e4b7ed1a8fd991f06aa6248204797e36a6a73b70a2559c09ead686945ba246ab66e5edd8044b"
    "4c6de3fcf2a89441ac66272fd8fb330ef8190579b3684596c960bd596eea520a56a8d650f563aad27409960dca63d3"
    "e688611ea5e22f4415cf9538d51a200c27034272968a264ed6540c84838d89f72c24461aad6d26f59ecaba9acbbb31"
    "7b66d902f4f292a36ac1b639c637ce343117b659622245317b49eeda0c6258f100d7d961ffb138647e92ea330faeea"
    "6dfa31c7a84dc3bd7e1b7a6c7178af36879018e3f252107f243d243dc7339d5684c8b0378bf30244da8c87c843f5e5"
    "6eb4c5e8280a2b48052cf93b16499a66db7cca71e4599426f7d461e66f99882bd89fc50800becca62d6c74116dbd29"
    "72fda1fa80f85df881edbe5a37668936b335583b599186dc5c6918a396fa48a181d6b6fa4f9d62d513afbb992f2b99"
    "2f67f8afe67f76913fa388cb5630c8ca01e0c65d11c66a1e2ac4c85977b7c7a6999bbf10dc35ae69f5515614636c0b"
    "9b68c19ed2e31c0b3b66763038ebba42f3b38edc0399f3a9f23faa63978c317fc9fa66a73f60f0504de93b5b845e27"
    "5592c12335ee340bbc4fddd502784016e4b3be7ef04dda49f4b440a30cb5d2af939828fd4ae3794e44f94df5a631ed"
    "e42c1719bfdabf0253fe5175be898e750edc53370d2b")
CLIENT_FINISHED_RECORD = H(
    "170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4bfc44d87f38f80338ac98fc46deb384bd"
    "1caeacab6867d726c40546")
CLIENT_RANDOM = H("cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7")


def test_server_flight_record_protection_matches_rfc8448() -> None:
    _, s = run_simple_handshake()
    flight = ENCRYPTED_EXTENSIONS + CERTIFICATE + CERTIFICATE_VERIFY + SERVER_FINISHED
    assert RecordCipher(SHA256, s["s_hs"]).seal(22, flight) == SERVER_FLIGHT_RECORD


class TraceRandom(random.Random):
    """Hands out the trace's client random and X25519 private key, in the order drawn."""

    def __init__(self) -> None:
        super().__init__(0)
        self.queue = [CLIENT_RANDOM, bytes(32), CLIENT_PRIVATE]

    def randbytes(self, n: int) -> bytes:
        return self.queue.pop(0)


def test_connection_replays_the_rfc8448_server_and_sends_the_trace_client_finished() -> None:
    """The whole engine, fed the trace's server records, answers with the trace's record.

    Our ClientHello differs from the trace's (extensions), so the test puts the trace's
    ClientHello in the transcript; the record layer, the state machine, the key schedule,
    the RSA-PSS CertificateVerify check and the Finished check all run for real.  The trace's
    1024-bit self-signed certificate is taken in insecure mode.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conn = TLSClientConnection(TLSConfig(server_name="server", insecure=True), now=0,
                                   rng=TraceRandom())
    conn.start_handshake()
    conn.data_to_send()
    conn._client_hello_raw = CLIENT_HELLO  # the trace's ClientHello, empty session id
    conn._session_id = b""
    conn.receive_data(bytes((22, 3, 3, 0, len(SERVER_HELLO))) + SERVER_HELLO)
    conn.receive_data(SERVER_FLIGHT_RECORD)
    assert conn.handshake_complete
    out = conn.data_to_send()
    assert out[:6] == bytes((20, 3, 3, 0, 1, 1))  # our compatibility CCS
    assert out[6:] == CLIENT_FINISHED_RECORD
    _, s = run_simple_handshake()
    assert conn.exporter_master_secret == s["exp"]
