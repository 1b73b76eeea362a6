"""OpenSSH ``known_hosts`` files: lookup (plain, wildcard and hashed ``|1|`` entries) and policy.

A host on a non-standard port is written ``[host]:port``.  Hashed entries are
``|1|base64(salt)|base64(HMAC-SHA1(salt, host))``.  ``@revoked`` lines refuse a key;
``@cert-authority`` lines are skipped (we do not do certificates).

Policies for an unknown host: ``accept-new`` (trust and record it), ``ask`` (call the
``ask`` function with the fingerprint), ``refuse``.  A host known with a *different* key of
the same type is always refused with :class:`HostKeyMismatch`, whatever the policy.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from pathlib import Path

from vipernet.ssh.errors import HostKeyError, HostKeyMismatch, HostKeyUnknown
from vipernet.ssh.hostkey import HostKey


class Policy(enum.Enum):
    ACCEPT_NEW = "accept-new"
    ASK = "ask"
    REFUSE = "refuse"

    @classmethod
    def from_option(cls, value: str) -> Policy:
        """Map OpenSSH's StrictHostKeyChecking values onto ours."""
        v = value.strip().lower()
        if v in ("yes", "refuse", "true"):
            return cls.REFUSE
        if v in ("ask",):
            return cls.ASK
        if v in ("accept-new", "no", "off", "false"):
            return cls.ACCEPT_NEW
        raise ValueError(f"unknown StrictHostKeyChecking value {value!r}")


class Match(enum.Enum):
    KNOWN = "known"
    UNKNOWN = "unknown"
    MISMATCH = "mismatch"
    REVOKED = "revoked"


def host_token(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def hash_host(token: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, token.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _glob(pattern: str, token: str) -> bool:
    """OpenSSH patterns: only ``*`` and ``?`` are special (``[host]:port`` is literal)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, token, re.IGNORECASE | re.DOTALL) is not None


def _pattern_matches(patterns: str, token: str) -> bool:
    if patterns.startswith("|1|"):
        parts = patterns.split("|")
        if len(parts) != 4:
            return False
        try:
            salt = base64.b64decode(parts[2], validate=True)
            want = base64.b64decode(parts[3], validate=True)
        except (binascii.Error, ValueError):
            return False
        got = hmac.new(salt, token.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(got, want)
    matched = False
    for pattern in patterns.split(","):
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        if _glob(pat, token):
            if negate:
                return False
            matched = True
    return matched


class KnownHosts:
    """One known_hosts file (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike[str] | None, *, hash_new: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.hash_new = hash_new

    def _entries(self) -> list[tuple[str, str, str, str]]:
        """(marker, host patterns, key type, base64 key) for every usable line."""
        if self.path is None or not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            marker = ""
            if fields[0].startswith("@"):
                marker, fields = fields[0], fields[1:]
            if len(fields) < 3:
                continue
            out.append((marker, fields[0], fields[1], fields[2]))
        return out

    def lookup(self, host: str, port: int, key: HostKey) -> Match:
        token = host_token(host, port)
        b64 = base64.b64encode(key.blob).decode()
        result = Match.UNKNOWN
        for marker, patterns, key_type, data in self._entries():
            if marker == "@cert-authority" or not _pattern_matches(patterns, token):
                continue
            if marker == "@revoked":
                if data == b64:
                    return Match.REVOKED
                continue
            if key_type != key.key_type:
                continue
            if data == b64:
                return Match.KNOWN
            result = Match.MISMATCH
        return result

    def add(self, host: str, port: int, key: HostKey) -> None:
        if self.path is None:
            return
        token = host_token(host, port)
        name = hash_host(token) if self.hash_new else token
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing = self.path.read_bytes() if self.path.exists() else b""
        sep = "" if not existing or existing.endswith(b"\n") else "\n"
        with self.path.open("a") as f:
            f.write(f"{sep}{name} {key.openssh()}\n")

    def verifier(self, host: str, port: int, policy: Policy = Policy.ACCEPT_NEW,
                 ask: Callable[[str], bool] | None = None) -> Callable[[HostKey], None]:
        """A ``verify_host_key`` function for :class:`~.transport.Transport`."""

        def verify(key: HostKey) -> None:
            match = self.lookup(host, port, key)
            where = host_token(host, port)
            if match is Match.KNOWN:
                return
            if match is Match.REVOKED:
                raise HostKeyError(f"host key for {where} is REVOKED in {self.path}")
            if match is Match.MISMATCH:
                raise HostKeyMismatch(
                    "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n"
                    f"The {key.key_type} host key for {where} is now {key.fingerprint()}, "
                    f"which differs from the one recorded in {self.path}. Someone could be "
                    "eavesdropping on you right now (man-in-the-middle attack), or the host "
                    "key was just changed. Refusing to connect.")
            if policy is Policy.REFUSE:
                raise HostKeyUnknown(f"no {key.key_type} host key is known for {where} "
                                     f"(fingerprint {key.fingerprint()}) and strict host key "
                                     "checking is on")
            if policy is Policy.ASK:
                question = (f"The authenticity of host '{where}' can't be established.\n"
                            f"{key.key_type} key fingerprint is {key.fingerprint()}.\n"
                            "Are you sure you want to continue connecting (yes/no)? ")
                if ask is None or not ask(question):
                    raise HostKeyUnknown(f"host key for {where} not accepted")
            self.add(host, port, key)

        return verify
