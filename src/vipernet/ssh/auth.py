"""User authentication (RFC 4252, RFC 4256) as a sans-IO client: messages in, messages out.

Order: ``none`` (to learn the allowed methods), then each private key with
``publickey`` (signed directly, without the optional query round trip), then ``password``,
then ``keyboard-interactive`` answering hidden prompts with the password.  Only methods
the server lists in USERAUTH_FAILURE are tried.  When none is left,
:class:`AuthenticationFailed` says what was tried.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from vipernet.ssh.codec import SSHBuffer, SSHWriter, string
from vipernet.ssh.errors import AuthenticationFailed, SSHProtocolError
from vipernet.ssh.keys import UserKey
from vipernet.ssh.messages import Msg

SERVICE = "ssh-connection"
MAX_KBD_ROUNDS = 4


class AuthState(enum.Enum):
    SERVICE_REQUESTED = "service-requested"
    TRYING = "trying"
    DONE = "done"


class AuthClient:
    def __init__(self, username: str, *, keys: Sequence[UserKey] = (),
                 password: str | None = None,
                 password_prompt: Callable[[], str | None] | None = None,
                 prompt: Callable[[str, str, list[tuple[str, bool]]], list[str]] | None = None
                 ) -> None:
        self.username = username
        self._keys = list(keys)
        self._password = password
        self._password_prompt = password_prompt  # asked lazily, only if password is tried
        self._prompt = prompt  # keyboard-interactive prompts the password cannot answer
        self.state = AuthState.SERVICE_REQUESTED
        self.method = ""
        self.tried: list[str] = []
        self.banner = ""
        self._allowed: tuple[str, ...] | None = None
        self._queue: list[tuple[str, UserKey | None, str]] = []
        self._kbd_rounds = 0

    def start(self) -> bytes:
        w = SSHWriter()
        w.push_uint8(Msg.SERVICE_REQUEST)
        w.push_string("ssh-userauth")
        return w.data()

    @property
    def done(self) -> bool:
        return self.state is AuthState.DONE

    def handle(self, payload: bytes, session_id: bytes,
               server_sig_algs: Sequence[str]) -> list[bytes]:
        """Process one auth-phase message; returns the messages to send."""
        msg = payload[0]
        buf = SSHBuffer(payload[1:])
        if msg == Msg.SERVICE_ACCEPT:
            if self.state is not AuthState.SERVICE_REQUESTED:
                raise SSHProtocolError("unexpected SERVICE_ACCEPT")
            self.state = AuthState.TRYING
            self.method = "none"
            return [self._request("none")]
        if self.state is not AuthState.TRYING:
            raise SSHProtocolError(f"authentication message {msg} in state {self.state.value}")
        if msg == Msg.USERAUTH_BANNER:
            self.banner += buf.pull_text("banner")
            return []
        if msg == Msg.USERAUTH_SUCCESS:
            self.state = AuthState.DONE
            return []
        if msg == Msg.USERAUTH_FAILURE:
            methods = buf.pull_name_list("authentications that can continue")
            buf.pull_bool("partial success")
            if self._allowed is None:
                self._allowed = methods
                self._plan(server_sig_algs)
            else:
                self._allowed = methods
            return [self._next_attempt(session_id)]
        if msg == 60 and self.method == "keyboard-interactive":
            return [self._info_response(buf)]
        raise SSHProtocolError(f"unexpected authentication message {msg}")

    def _plan(self, server_sig_algs: Sequence[str]) -> None:
        for key in self._keys:
            for alg in key.algorithms(server_sig_algs)[:1]:
                self._queue.append(("publickey", key, alg))
        if self._password is not None or self._password_prompt is not None:
            self._queue.append(("password", None, ""))
            self._queue.append(("keyboard-interactive", None, ""))
        elif self._prompt is not None:
            self._queue.append(("keyboard-interactive", None, ""))

    def _next_attempt(self, session_id: bytes) -> bytes:
        allowed = self._allowed or ()
        while self._queue:
            method, key, alg = self._queue.pop(0)
            if method not in allowed:
                continue
            self.method = method
            self.tried.append(method if key is None else f"{method} ({key.key_type})")
            if method == "publickey" and key is not None:
                return self._publickey(key, alg, session_id)
            if method in ("password", "keyboard-interactive") and self._password is None \
                    and self._password_prompt is not None:
                self._password = self._password_prompt()
                self._password_prompt = None
                if self._password is None:
                    continue
            if method == "password":
                w = SSHWriter()
                w.push_bool(False)
                w.push_string(self._password or "")
                return self._request("password", w.data())
            w = SSHWriter()
            w.push_string(b"")  # language
            w.push_string(b"")  # submethods
            self._kbd_rounds = 0
            return self._request("keyboard-interactive", w.data())
        raise AuthenticationFailed(
            f"authentication failed for {self.username}: tried "
            f"{', '.join(self.tried) or 'nothing'}; server allows {','.join(allowed) or '-'}")

    def _request(self, method: str, tail: bytes = b"") -> bytes:
        w = SSHWriter()
        w.push_uint8(Msg.USERAUTH_REQUEST)
        w.push_string(self.username)
        w.push_string(SERVICE)
        w.push_string(method)
        w.push_bytes(tail)
        return w.data()

    def _publickey(self, key: UserKey, alg: str, session_id: bytes) -> bytes:
        w = SSHWriter()
        w.push_bool(True)
        w.push_string(alg)
        w.push_string(key.public_blob)
        unsigned = self._request("publickey", w.data())
        signature = key.sign(alg, string(session_id) + unsigned)
        return unsigned + string(signature)

    def _info_response(self, buf: SSHBuffer) -> bytes:
        name = buf.pull_text("name")
        instruction = buf.pull_text("instruction")
        buf.pull_string("language")
        count = buf.pull_uint32("prompt count")
        if count > 64:
            raise SSHProtocolError(f"keyboard-interactive: {count} prompts")
        prompts = [(buf.pull_text("prompt"), buf.pull_bool("echo")) for _ in range(count)]
        self._kbd_rounds += 1
        if self._kbd_rounds > MAX_KBD_ROUNDS:
            raise AuthenticationFailed("keyboard-interactive: server keeps asking")
        if not prompts:
            answers: list[str] = []
        elif self._password is not None and all(not echo for _, echo in prompts) \
                and len(prompts) == 1 and self._kbd_rounds == 1:
            answers = [self._password]
        elif self._prompt is not None:
            answers = self._prompt(name, instruction, prompts)
        else:
            raise AuthenticationFailed(f"keyboard-interactive: cannot answer {prompts!r}")
        w = SSHWriter()
        w.push_uint8(Msg.USERAUTH_INFO_RESPONSE)
        w.push_uint32(len(answers))
        for a in answers:
            w.push_string(a)
        return w.data()
