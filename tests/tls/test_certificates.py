"""Chain validation: each bad certificate is refused with the error that names the check."""

from __future__ import annotations

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.tls.pki import DAY, NOW, Issued, make_ca, make_leaf
from vipernet.tls.alerts import AlertDescription
from vipernet.tls.certificates import TrustStore, load_trust_store, verify_server_chain
from vipernet.tls.errors import (
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateParseError,
    HostnameMismatch,
    MissingIntermediate,
    SelfSignedCertificate,
    UnknownCA,
    WrongKeyUsage,
)


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca("vipernet test root")


@pytest.fixture(scope="module")
def intermediate(root: Issued) -> Issued:
    return make_ca("vipernet test intermediate", parent=root)


def check(chain: list[Issued], trust: Issued, hostname: str = "localhost") -> None:
    verify_server_chain([c.der() for c in chain], hostname=hostname,
                        trust=TrustStore.from_pem(trust.pem()), now=NOW)


def test_leaf_signed_by_trusted_root_is_accepted(root: Issued) -> None:
    check([make_leaf(root)], root)


def test_chain_through_intermediate_is_accepted(root: Issued, intermediate: Issued) -> None:
    check([make_leaf(intermediate), intermediate], root)


@pytest.mark.parametrize("kind", ["rsa2048", "p256", "p384", "ed25519"])
def test_each_key_type_is_accepted(root: Issued, kind: str) -> None:
    check([make_leaf(root, key_kind=kind)], root)


def test_ip_address_matches_ip_san_only(root: Issued) -> None:
    check([make_leaf(root, names=("127.0.0.1",))], root, hostname="127.0.0.1")
    with pytest.raises(HostnameMismatch, match=r"127\.0\.0\.2"):
        check([make_leaf(root, names=("127.0.0.1",))], root, hostname="127.0.0.2")


def test_wildcard_matches_one_label_only(root: Issued) -> None:
    leaf = make_leaf(root, names=("*.example.test",))
    check([leaf], root, hostname="www.example.test")
    with pytest.raises(HostnameMismatch):
        check([leaf], root, hostname="a.b.example.test")
    with pytest.raises(HostnameMismatch):
        check([leaf], root, hostname="example.test")


def test_expired_leaf_says_when_it_expired(root: Issued) -> None:
    with pytest.raises(CertificateExpired, match="expired at") as info:
        check([make_leaf(root, not_before=NOW - 10 * DAY, not_after=NOW - DAY)], root)
    assert info.value.alert is AlertDescription.CERTIFICATE_EXPIRED


def test_not_yet_valid_leaf_is_refused(root: Issued) -> None:
    with pytest.raises(CertificateNotYetValid, match="not valid before"):
        check([make_leaf(root, not_before=NOW + DAY, not_after=NOW + 10 * DAY)], root)


def test_expired_intermediate_is_refused(root: Issued) -> None:
    old = make_ca("old intermediate", parent=root, not_before=NOW - 10 * DAY,
                  not_after=NOW - DAY)
    with pytest.raises(CertificateExpired, match="intermediate"):
        check([make_leaf(old), old], root)


def test_wrong_hostname_names_both(root: Issued) -> None:
    with pytest.raises(HostnameMismatch, match=r"other\.test"):
        check([make_leaf(root)], root, hostname="other.test")


def test_self_signed_leaf_is_refused(root: Issued) -> None:
    with pytest.raises(SelfSignedCertificate, match="self-signed"):
        check([make_leaf(None)], root)


def test_unknown_ca_is_refused(root: Issued) -> None:
    stranger = make_ca("somebody else's root")
    with pytest.raises(UnknownCA, match="not in the trust store"):
        check([make_leaf(stranger), stranger], root)


def test_unknown_ca_via_untrusted_intermediate_chain_is_refused(root: Issued) -> None:
    stranger = make_ca("somebody else's root")
    middle = make_ca("somebody else's intermediate", parent=stranger)
    with pytest.raises(UnknownCA):
        check([make_leaf(middle), middle], root)


def test_missing_intermediate_is_refused(root: Issued, intermediate: Issued) -> None:
    with pytest.raises(MissingIntermediate, match="missing intermediate"):
        check([make_leaf(intermediate)], root)


def test_key_usage_without_digital_signature_is_refused(root: Issued) -> None:
    with pytest.raises(WrongKeyUsage, match="digitalSignature"):
        check([make_leaf(root, digital_signature=False)], root)


def test_client_auth_only_extended_key_usage_is_refused(root: Issued) -> None:
    with pytest.raises(WrongKeyUsage, match="serverAuth"):
        check([make_leaf(root, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))], root)


def test_garbage_certificate_is_a_parse_error(root: Issued) -> None:
    with pytest.raises(CertificateParseError):
        verify_server_chain([b"\x30\x03junk"], hostname="localhost",
                            trust=TrustStore.from_pem(root.pem()), now=NOW)


def test_certifi_store_loads_and_is_cached() -> None:
    first = load_trust_store()
    assert len(first.certificates) > 50
    assert load_trust_store() is first


def test_every_certificate_error_carries_an_alert() -> None:
    for cls in (CertificateExpired, HostnameMismatch, SelfSignedCertificate, UnknownCA,
                MissingIntermediate, WrongKeyUsage):
        assert issubclass(cls, CertificateError)
        assert isinstance(cls.alert, AlertDescription)
