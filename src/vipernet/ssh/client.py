"""The blocking SSH client: a thin I/O shell around the sans-IO :class:`SSHConnection`.

::

    client = SSHClient.connect("127.0.0.1", 2222, username="root",
                               key_filename="~/.ssh/id_ed25519",
                               known_hosts="~/.ssh/known_hosts", policy="accept-new")
    status, out, err = client.exec("uname -a")
    with client.open_sftp() as sftp:
        sftp.get("/etc/hostname", "hostname")
    client.close()

The socket is anything stream-shaped with ``recv``/``sendall``/``settimeout``/``close`` (a
stdlib socket, a vipernet socket); ``connect=`` injects how to open one from host/port.
Every wait is bounded: the handshake by ``timeout``, other waits by their own ``timeout``
argument, and a connection that dies raises instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from vipernet.ssh.algorithms import Preferences
from vipernet.ssh.channel import Channel
from vipernet.ssh.connection import SSHConnection
from vipernet.ssh.errors import ChannelError, ConnectionLost, SSHError, SSHTimeout
from vipernet.ssh.hostkey import HostKey
from vipernet.ssh.keys import UserKey, load_private_key
from vipernet.ssh.known_hosts import KnownHosts, Policy

if TYPE_CHECKING:
    from vipernet.ssh.sftp.client import SFTPClient

RECV_SIZE = 512 * 1024
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


class ExecResult(NamedTuple):
    status: int | None
    stdout: bytes
    stderr: bytes


def _default_connect(host: str, port: int, timeout: float | None) -> Any:
    return socket.create_connection((host, port), timeout=timeout)


class SSHClient:
    def __init__(self, sock: Any, conn: SSHConnection,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.conn = conn
        self._clock = clock
        self._timeout: float | None = -1.0
        self._closed = False
        self._quickack = hasattr(socket, "TCP_QUICKACK")
        # Nagle would hold our small requests back for the server's delayed ACK; not every
        # stream socket knows TCP options, hence the suppress.
        with contextlib.suppress(AttributeError, OSError, TypeError, ValueError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- construction -----------------------------------------------------------------

    @classmethod
    def connect(cls, host: str | None = None, port: int = 22, *, username: str,
                sock: Any = None,
                key_filename: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
                | None = None,
                keys: Sequence[UserKey] = (), passphrase: str | None = None,
                password: str | None = None,
                password_prompt: Callable[[], str | None] | None = None,
                known_hosts: str | os.PathLike[str] | KnownHosts | None = None,
                policy: Policy | str = Policy.ACCEPT_NEW,
                ask: Callable[[str], bool] | None = None,
                verify_host_key: Callable[[HostKey], None] | None = None,
                connect: Callable[[str, int, float | None], Any] | None = None,
                timeout: float = 30.0, prefs: Preferences | None = None,
                rekey_bytes: int = 1 << 30, rekey_seconds: float = 3600.0,
                keepalive_interval: float | None = None,
                prompt: Callable[[str, str, list[tuple[str, bool]]], list[str]] | None = None,
                rng: random.Random | None = None) -> SSHClient:
        """Open (or take) a stream socket, run the handshake and authenticate."""
        all_keys = list(keys)
        if key_filename is not None:
            names = [key_filename] if isinstance(key_filename, str | os.PathLike) \
                else list(key_filename)
            all_keys += [load_private_key(os.path.expanduser(os.fspath(n)), passphrase)
                         for n in names]
        if verify_host_key is None:
            if host is None:
                raise ValueError("host is needed to check known_hosts (or pass verify_host_key)")
            kh = known_hosts if isinstance(known_hosts, KnownHosts) else KnownHosts(
                os.path.expanduser(os.fspath(known_hosts)) if known_hosts is not None else None)
            pol = policy if isinstance(policy, Policy) else Policy.from_option(policy)
            verify_host_key = kh.verifier(host, port, pol, ask)
        if sock is None:
            if host is None:
                raise ValueError("give host or sock")
            sock = (connect or _default_connect)(host, port, timeout)
        conn = SSHConnection(username, rng=rng or random.SystemRandom(),
                             verify_host_key=verify_host_key, keys=all_keys, password=password,
                             password_prompt=password_prompt, prompt=prompt, prefs=prefs,
                             rekey_bytes=rekey_bytes,
                             rekey_seconds=rekey_seconds, handshake_timeout=timeout,
                             keepalive_interval=keepalive_interval)
        client = cls(sock, conn)
        try:
            conn.start(client._clock())
            client.pump(lambda: conn.authenticated, timeout=timeout, what="authentication")
        except BaseException:
            client.close()
            raise
        return client

    # -- the I/O loop -----------------------------------------------------------------

    def flush(self) -> None:
        conn = self.conn
        conn.transport.maybe_rekey(self._clock())
        data = conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                conn.connection_lost()
                raise ConnectionLost(f"send failed: {exc}") from exc

    def _set_timeout(self, value: float | None) -> None:
        if value != self._timeout:
            self.sock.settimeout(value)
            self._timeout = value

    def pump(self, until: Callable[[], bool], *, timeout: float | None = None,
             what: str = "the server") -> None:
        """Run the connection until ``until()`` holds; raise on error, close or timeout."""
        clock = self._clock
        deadline = None if timeout is None else clock() + timeout
        while True:
            self.flush()
            if until():
                return
            wait = None if deadline is None else deadline - clock()
            if wait is not None and wait <= 0:
                raise SSHTimeout(f"timed out after {timeout:g} s waiting for {what}")
            self.step(wait)

    def step(self, timeout: float | None) -> bool:
        """Flush, then receive once (waiting at most ``timeout``) and run timers.

        Returns True if data arrived.  Raises the connection's error if it is closed.
        """
        conn = self.conn
        clock = self._clock
        self.flush()
        if conn.closed:
            raise conn.error or conn.transport.disconnect_error or ConnectionLost(
                "connection closed")
        now = clock()
        wake = conn.next_deadline()
        wait = None if wake is None else max(wake - now, 0.0)
        if timeout is not None:
            wait = timeout if wait is None else min(wait, timeout)
        self._set_timeout(None if wait is None else max(wait, 0.0005))
        try:
            data = self.sock.recv(RECV_SIZE)
        except (TimeoutError, BlockingIOError):
            try:
                conn.handle_timer(clock())
            except SSHError:
                self._send_final()
                raise
            return False
        except OSError as exc:
            conn.connection_lost()
            raise ConnectionLost(f"receive failed: {exc}") from exc
        if not data:
            conn.connection_lost()
            raise conn.error or ConnectionLost("server closed the connection")
        if self._quickack and len(data) < 4096:
            self._ack_now()
        try:
            conn.receive_data(data, clock())
        except SSHError:
            self._send_final()
            raise
        return True

    def _ack_now(self) -> None:
        # sshd leaves Nagle on for non-pty sessions, so its second small packet in a row
        # waits for our ACK -- which Linux delays up to 40 ms.  Quick ACKs after small
        # reads remove that stall from every request/response round trip.
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except (AttributeError, OSError, TypeError, ValueError):
            self._quickack = False

    def _send_final(self) -> None:
        """Best-effort: push out the DISCONNECT the engine queued."""
        try:
            data = self.conn.data_to_send()
            if data:
                self._set_timeout(1.0)
                self.sock.sendall(data)
        except OSError:
            pass

    # -- sessions ---------------------------------------------------------------------

    def open_channel(self, timeout: float | None = 30.0, **kwargs: int) -> Channel:
        ch = self.conn.open_session(**kwargs)
        self.pump(lambda: ch.state.value != "opening", timeout=timeout, what="channel open")
        if ch.open_error is not None:
            raise ch.open_error
        return ch

    def request(self, ch: Channel, send: Callable[[], int], name: str,
                timeout: float | None = 30.0) -> None:
        """Send a channel request (``send`` returns its ticket) and wait for its own reply;
        ChannelError if refused."""
        ticket = send()
        self.pump(lambda: len(ch.request_results) > ticket or ch.closed, timeout=timeout,
                  what=f"reply to {name}")
        if len(ch.request_results) <= ticket or not ch.request_results[ticket][1]:
            raise ChannelError(f"server refused {name}")

    def exec(self, command: str, *, stdin: bytes = b"", timeout: float | None = None,
             env: dict[str, str] | None = None) -> ExecResult:
        """Run ``command``; returns (exit status, stdout, stderr)."""
        ch = self.open_channel()
        for k, v in (env or {}).items():
            ch.setenv(k, v)  # servers commonly refuse env; the reply is not waited for
        self.request(ch, lambda: ch.exec(command), "exec")
        if stdin:
            ch.write(stdin)
        ch.send_eof()
        out = bytearray()
        err = bytearray()

        def done() -> bool:
            if ch.stdout:
                out.extend(ch.read())
            if ch.stderr:
                err.extend(ch.read(stderr=True))
            return ch.closed

        self.pump(done, timeout=timeout, what=f"command {command!r}")
        self.conn.forget(ch)
        return ExecResult(ch.exit_status, bytes(out), bytes(err))

    def invoke_shell(self, term: str = "xterm", cols: int = 80, rows: int = 24,
                     env: dict[str, str] | None = None) -> Channel:
        """A session channel with a pty and a shell; drive it with read/write + pump."""
        ch = self.open_channel()
        for k, v in (env or {}).items():
            ch.setenv(k, v)
        self.request(ch, lambda: ch.request_pty(term, cols, rows), "pty-req")
        self.request(ch, ch.shell, "shell")
        return ch

    def open_sftp(self) -> SFTPClient:
        from vipernet.ssh.sftp.client import SFTPClient

        return SFTPClient.start(self)

    def rekey(self) -> None:
        """Force a key exchange now (it completes as the connection runs)."""
        self.conn.transport.rekey(self._clock())
        self.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self.conn.closed:
                self.conn.disconnect()
                self._send_final()
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()

    def __enter__(self) -> SSHClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
