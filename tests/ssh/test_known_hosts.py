"""known_hosts lookup and the host key policies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from vipernet.ssh.errors import HostKeyMismatch, HostKeyUnknown
from vipernet.ssh.hostkey import HostKey
from vipernet.ssh.known_hosts import KnownHosts, Match, Policy, hash_host, host_token

KEY_A = HostKey(key_type="ssh-ed25519", blob=b"\x00\x00\x00\x0bssh-ed25519" + b"A" * 36)
KEY_B = HostKey(key_type="ssh-ed25519", blob=b"\x00\x00\x00\x0bssh-ed25519" + b"B" * 36)
KEY_RSA = HostKey(key_type="ssh-rsa", blob=b"\x00\x00\x00\x07ssh-rsa" + b"R" * 40)


def _line(hosts: str, key: HostKey) -> str:
    return f"{hosts} {key.key_type} {base64.b64encode(key.blob).decode()}\n"


def test_host_token_brackets_non_default_ports() -> None:
    assert host_token("example.com", 22) == "example.com"
    assert host_token("10.0.2.2", 2222) == "[10.0.2.2]:2222"


def test_plain_entry_matches_its_key(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text("# comment\n\n" + _line("other,example.com", KEY_A))
    kh = KnownHosts(path)
    assert kh.lookup("example.com", 22, KEY_A) is Match.KNOWN
    assert kh.lookup("example.com", 22, KEY_B) is Match.MISMATCH
    assert kh.lookup("example.com", 2222, KEY_A) is Match.UNKNOWN
    assert kh.lookup("example.com", 22, KEY_RSA) is Match.UNKNOWN  # other key type


def test_hashed_entry_as_openssh_writes_it_matches(tmp_path: Path) -> None:
    # Produced by `ssh-keygen -H`: |1|base64(salt)|base64(HMAC-SHA1(salt, host)).
    salt = bytes(range(20))
    path = tmp_path / "kh"
    path.write_text(_line(hash_host("[127.0.0.1]:2222", salt), KEY_A))
    kh = KnownHosts(path)
    assert kh.lookup("127.0.0.1", 2222, KEY_A) is Match.KNOWN
    assert kh.lookup("127.0.0.1", 22, KEY_A) is Match.UNKNOWN
    assert kh.lookup("127.0.0.1", 2222, KEY_B) is Match.MISMATCH


def test_wildcards_and_negation(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text(_line("*.example.com,!bad.example.com", KEY_A))
    kh = KnownHosts(path)
    assert kh.lookup("www.example.com", 22, KEY_A) is Match.KNOWN
    assert kh.lookup("bad.example.com", 22, KEY_A) is Match.UNKNOWN


def test_revoked_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text("@revoked " + _line("*", KEY_A))
    assert KnownHosts(path).lookup("any", 22, KEY_A) is Match.REVOKED


def test_accept_new_records_a_hashed_entry_then_knows_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kh"
    kh = KnownHosts(path)
    kh.verifier("h", 2200, Policy.ACCEPT_NEW)(KEY_A)
    text = path.read_text()
    assert text.startswith("|1|") and "[h]:2200" not in text  # the name is hashed
    assert kh.lookup("h", 2200, KEY_A) is Match.KNOWN


def test_changed_key_is_refused_loudly_even_with_accept_new(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text(_line("[h]:2200", KEY_A))
    verify = KnownHosts(path).verifier("h", 2200, Policy.ACCEPT_NEW)
    with pytest.raises(HostKeyMismatch, match="REMOTE HOST IDENTIFICATION HAS CHANGED"):
        verify(KEY_B)
    assert path.read_text() == _line("[h]:2200", KEY_A)  # nothing was added


def test_refuse_policy_rejects_unknown_hosts(tmp_path: Path) -> None:
    with pytest.raises(HostKeyUnknown):
        KnownHosts(tmp_path / "kh").verifier("h", 22, Policy.REFUSE)(KEY_A)


def test_ask_policy_follows_the_answer(tmp_path: Path) -> None:
    kh = KnownHosts(tmp_path / "kh")
    questions: list[str] = []
    with pytest.raises(HostKeyUnknown):
        kh.verifier("h", 22, Policy.ASK, lambda q: questions.append(q) is not None)(KEY_A)
    assert KEY_A.fingerprint() in questions[0]
    kh.verifier("h", 22, Policy.ASK, lambda q: True)(KEY_A)
    assert kh.lookup("h", 22, KEY_A) is Match.KNOWN


def test_strict_host_key_checking_values_map_to_policies() -> None:
    assert Policy.from_option("yes") is Policy.REFUSE
    assert Policy.from_option("accept-new") is Policy.ACCEPT_NEW
    assert Policy.from_option("no") is Policy.ACCEPT_NEW
    assert Policy.from_option("ask") is Policy.ASK
    with pytest.raises(ValueError):
        Policy.from_option("maybe")
