"""The SSH transport layer (RFC 4253) as a sans-IO engine: bytes in, bytes and payloads out.

It owns the version exchange (banner lines before the server's version are tolerated),
the binary packet protocol (:mod:`.packet`), KEXINIT negotiation (:mod:`.algorithms`),
curve25519-sha256 (:mod:`.kex`), host key checks (:mod:`.hostkey` + the caller's
``verify_host_key``), strict KEX, rekeying by bytes or time, and the generic messages
(IGNORE, DEBUG, UNIMPLEMENTED, DISCONNECT).

Usage::

    t = Transport(rng=rng, verify_host_key=check, handled=frozenset({...}))
    t.start(now)                         # queues our version line and KEXINIT
    payloads = t.receive_data(data, now)  # service-layer messages, in order
    t.send(payload)                       # queued while a key exchange is in progress
    wire = t.data_to_send()
    t.handle_timer(now) at t.next_deadline()

Incoming messages are dispatched through ``_process_<name>`` handlers keyed by message
number.  Any :class:`SSHError` raised while processing input closes the transport after
queueing a DISCONNECT with the error's reason code, then propagates to the caller.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable

from vipernet.buffer import BufferUnderflow
from vipernet.ssh import algorithms
from vipernet.ssh.algorithms import Negotiated, Preferences
from vipernet.ssh.codec import SSHBuffer, SSHWriter
from vipernet.ssh.errors import (
    ConnectionLost,
    DisconnectReason,
    KexError,
    SSHDisconnect,
    SSHError,
    SSHProtocolError,
    SSHTimeout,
    SSHUsageError,
)
from vipernet.ssh.hostkey import HostKey, parse_host_key, verify_signature
from vipernet.ssh.kex import Curve25519Exchange, derive_keys, exchange_hash
from vipernet.ssh.messages import Msg, build_kexinit, parse_kexinit
from vipernet.ssh.packet import Data, PacketKeys, PacketOpener, PacketSealer, Payload

log = logging.getLogger(__name__)

CLIENT_VERSION = "SSH-2.0-vipernet_0.1"
MAX_VERSION_LINE = 8192  # RFC says 255; be lenient with banners, but bounded
MAX_PRE_VERSION_BYTES = 64 * 1024
KEX_MESSAGES = frozenset({Msg.KEXINIT, Msg.NEWKEYS, Msg.KEX_ECDH_INIT, Msg.KEX_ECDH_REPLY})


class State(enum.Enum):
    VERSION = "version"     # waiting for the server's identification string
    KEX = "kex"             # a key exchange is running (first or rekey)
    OPEN = "open"           # keys in place, service-layer traffic flows
    CLOSED = "closed"


class KexPhase(enum.Enum):
    IDLE = "idle"
    KEXINIT_SENT = "kexinit-sent"      # waiting for the server's KEXINIT
    ECDH_SENT = "ecdh-sent"            # waiting for KEX_ECDH_REPLY
    NEWKEYS_SENT = "newkeys-sent"      # waiting for the server's NEWKEYS


class Transport:
    def __init__(self, *, rng: random.Random, verify_host_key: Callable[[HostKey], None],
                 handled: frozenset[int] = frozenset(), prefs: Preferences | None = None,
                 client_version: str = CLIENT_VERSION, rekey_bytes: int = 1 << 30,
                 rekey_seconds: float = 3600.0, handshake_timeout: float = 30.0) -> None:
        self._rng = rng
        self._verify_host_key = verify_host_key
        self._handled = handled
        self.prefs = prefs or Preferences()
        self.client_version = client_version.encode("ascii")
        self.server_version = b""
        self.banner_lines: list[bytes] = []
        self.rekey_bytes = rekey_bytes
        self.rekey_seconds = rekey_seconds
        self.handshake_timeout = handshake_timeout
        self.state = State.VERSION
        self.kex_phase = KexPhase.IDLE
        self._sealer = PacketSealer(rng)
        self._opener = PacketOpener()
        self._out: list[Data] = []  # wire pieces, joined by data_to_send()
        # Service payloads (as payload, tail) held back during a key exchange.
        self._pending: list[tuple[Data, Data]] = []
        self._version_buf = bytearray()
        self._client_kexinit = b""
        self._server_kexinit = b""
        self._exchange: Curve25519Exchange | None = None
        self._negotiated: Negotiated | None = None
        self._new_keys: tuple[PacketKeys, PacketKeys] | None = None
        self._kex_count = 0
        self._kex_started_at = 0.0
        self._last_kex_done = 0.0
        self._deadline: float | None = None
        self.session_id = b""
        self.host_key: HostKey | None = None
        self.strict_kex = False
        self.established = False  # the first key exchange has completed
        self.server_sig_algs: tuple[str, ...] = ()
        self.debug_messages: list[str] = []
        self.ignored = 0
        self.disconnect_error: SSHError | None = None
        self._skip_guessed = False
        self._dispatch: dict[int, Callable[[SSHBuffer, bytes, float], None]] = {
            Msg.DISCONNECT: self._process_disconnect,
            Msg.IGNORE: self._process_ignore,
            Msg.UNIMPLEMENTED: self._process_unimplemented,
            Msg.DEBUG: self._process_debug,
            Msg.EXT_INFO: self._process_ext_info,
            Msg.KEXINIT: self._process_kexinit,
            Msg.KEX_ECDH_REPLY: self._process_kex_ecdh_reply,
            Msg.NEWKEYS: self._process_newkeys,
        }

    # -- public API -------------------------------------------------------------------

    @property
    def negotiated(self) -> Negotiated | None:
        return self._negotiated

    @property
    def kex_count(self) -> int:
        return self._kex_count

    def start(self, now: float) -> None:
        """Queue our identification string and first KEXINIT (both may go before the server's)."""
        self._out.append(self.client_version + b"\r\n")
        self._deadline = now + self.handshake_timeout
        self._send_kexinit(now)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send(self, payload: Data, tail: Data = b"") -> None:
        """Send a service-layer message ``payload + tail`` (held back while a key exchange
        runs).  The two parts let a caller add a header to data without joining them;
        neither may be modified afterwards."""
        if self.state is State.CLOSED:
            raise SSHUsageError("transport is closed")
        if self.state is State.OPEN and self.kex_phase is KexPhase.IDLE:
            self._sealer.seal_to(self._out, payload, tail)
        else:
            self._pending.append((payload, tail))

    def wants_rekey(self, now: float) -> bool:
        return self.state is State.OPEN and self.kex_phase is KexPhase.IDLE and (
            self._sealer.bytes_since_rekey >= self.rekey_bytes
            or self._opener.bytes_since_rekey >= self.rekey_bytes
            or now - self._last_kex_done >= self.rekey_seconds)

    def maybe_rekey(self, now: float) -> bool:
        """Start a key exchange if the byte or time limit is reached; True if one started."""
        if self.wants_rekey(now):
            self.rekey(now)
            return True
        return False

    def rekey(self, now: float) -> None:
        """Start a key exchange now (no-op if one is already running)."""
        if self.state is State.OPEN and self.kex_phase is KexPhase.IDLE:
            self._send_kexinit(now)

    def next_deadline(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        if self.state is State.OPEN and self.kex_phase is KexPhase.IDLE:
            return self._last_kex_done + self.rekey_seconds
        return self._deadline

    def handle_timer(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self._deadline is not None and now >= self._deadline and (
                self.state is not State.OPEN or self.kex_phase is not KexPhase.IDLE):
            what = "version exchange" if self.state is State.VERSION else "key exchange"
            self._fail(SSHTimeout(f"server did not complete the {what} within "
                                  f"{self.handshake_timeout:g} s"))
            raise self.disconnect_error  # type: ignore[misc]
        self.maybe_rekey(now)

    def disconnect(self, reason: DisconnectReason = DisconnectReason.BY_APPLICATION,
                   description: str = "bye") -> None:
        """Queue a DISCONNECT and close."""
        if self.state is State.CLOSED:
            return
        self._queue_disconnect(reason, description)
        self.state = State.CLOSED

    def connection_lost(self) -> None:
        """The stream ended under us."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.disconnect_error = ConnectionLost("server closed the connection"
                                                   + ("" if self.established
                                                      else " during the handshake"))

    def receive_data(self, data: Data, now: float) -> list[Payload]:
        """Feed bytes off the wire; returns the service-layer payloads they completed."""
        if self.state is State.CLOSED:
            return []
        try:
            return self._receive(data, now)
        except SSHDisconnect as exc:
            self.state = State.CLOSED
            self.disconnect_error = exc
            raise
        except (BufferUnderflow, SSHProtocolError) as exc:
            err = exc if isinstance(exc, SSHError) else SSHProtocolError(str(exc))
            self._fail(err)
            raise err from None
        except SSHError as exc:
            self._fail(exc)
            raise

    # -- internals --------------------------------------------------------------------

    def _fail(self, exc: SSHError) -> None:
        if self.state is not State.CLOSED:
            log.debug("transport failed: %s", exc)
            self._queue_disconnect(exc.reason, str(exc)[:200])
            self.state = State.CLOSED
            self.disconnect_error = exc

    def _queue_disconnect(self, reason: int, description: str) -> None:
        w = SSHWriter()
        w.push_uint8(Msg.DISCONNECT)
        w.push_uint32(int(reason))
        w.push_string(description)
        w.push_string(b"")
        if self.state is not State.VERSION:
            self._sealer.seal_to(self._out, w.data())

    def _receive(self, data: Data, now: float) -> list[Payload]:
        if self.state is State.VERSION:
            self._version_buf += data
            if not self._read_version():
                return []
            data = bytes(self._version_buf)
            self._version_buf.clear()
            self.state = State.KEX
        opener = self._opener
        opener.feed(data)
        out: list[Payload] = []
        while self.state is not State.CLOSED:
            payload = opener.next()
            if payload is None:
                break
            if not payload:
                raise SSHProtocolError("empty packet payload")
            msg = payload[0]
            if self.strict_kex_in_progress() and msg not in KEX_MESSAGES:
                raise SSHProtocolError(f"strict KEX: message {msg} during the initial key "
                                       "exchange")
            if self._skip_guessed and 30 <= msg <= 49:
                self._skip_guessed = False
                continue
            handler = self._dispatch.get(msg)
            if handler is not None:
                handler(SSHBuffer(payload[1:]), bytes(payload), now)
            elif msg in self._handled or msg == Msg.SERVICE_ACCEPT:
                # Between the server's KEXINIT and its NEWKEYS only KEX messages may come.
                if not self.established or self._server_kexinit:
                    raise SSHProtocolError(f"service message {msg} during key exchange")
                out.append(payload)
            else:
                log.debug("unimplemented message %d", msg)
                w = SSHWriter()
                w.push_uint8(Msg.UNIMPLEMENTED)
                w.push_uint32((opener.sequence - 1) & 0xFFFFFFFF)
                self._send_transport(w.data())
        self.maybe_rekey(now)
        return out

    def strict_kex_in_progress(self) -> bool:
        return self.strict_kex and not self.established

    def _read_version(self) -> bool:
        """Consume lines until the server's identification string; True once it is read."""
        while True:
            nl = self._version_buf.find(b"\n")
            if nl < 0:
                if len(self._version_buf) > MAX_VERSION_LINE:
                    raise SSHProtocolError("server sent a line of more than "
                                           f"{MAX_VERSION_LINE} bytes before its version",
                                           DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED)
                return False
            line = bytes(self._version_buf[:nl]).rstrip(b"\r")
            del self._version_buf[: nl + 1]
            if line.startswith(b"SSH-"):
                if not (line.startswith(b"SSH-2.0-") or line.startswith(b"SSH-1.99-")):
                    raise SSHProtocolError(f"unsupported protocol version {line[:40]!r}",
                                           DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED)
                if len(line) > 255 or any(c < 0x20 or c > 0x7E for c in line):
                    raise SSHProtocolError("malformed identification string",
                                           DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED)
                self.server_version = line
                return True
            if b"\x00" in line:
                # As OpenSSH: a NUL can never be part of a banner; this is not an SSH server.
                raise SSHProtocolError("banner line contains invalid characters (not SSH?)",
                                       DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED)
            self.banner_lines.append(line)
            if sum(len(b) for b in self.banner_lines) > MAX_PRE_VERSION_BYTES \
                    or len(self.banner_lines) > 1024:
                raise SSHProtocolError("server sent too much before its version string",
                                       DisconnectReason.PROTOCOL_VERSION_NOT_SUPPORTED)

    def _send_transport(self, payload: bytes) -> None:
        self._sealer.seal_to(self._out, payload)

    def _send_kexinit(self, now: float) -> None:
        first = self._kex_count == 0 and not self.established
        kexinit = algorithms.client_kexinit(self.prefs, self._rng.randbytes(16), first_kex=first)
        self._client_kexinit = build_kexinit(kexinit)
        self._server_kexinit = b""
        self._send_transport(self._client_kexinit)
        self.kex_phase = KexPhase.KEXINIT_SENT
        self._kex_started_at = now
        self._deadline = now + self.handshake_timeout
        if self.state is State.OPEN:
            self.state = State.KEX

    # -- handlers (payload buffers start after the message number) -------------------

    def _process_disconnect(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        code = buf.pull_uint32("reason code")
        try:
            description = buf.pull_string("description").decode("utf-8", "replace")
        except BufferUnderflow:
            description = ""
        raise SSHDisconnect(code, description)

    def _process_ignore(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        self.ignored += 1

    def _process_unimplemented(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        seq = buf.pull_uint32("sequence number")
        log.debug("server did not implement our packet %d", seq)

    def _process_debug(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        buf.pull_bool("always_display")
        message = buf.pull_string("message").decode("utf-8", "replace")
        if len(self.debug_messages) < 100:
            self.debug_messages.append(message)

    def _process_ext_info(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        count = buf.pull_uint32("extension count")
        for _ in range(min(count, 1000)):
            name = buf.pull_string("extension name")
            value = buf.pull_string("extension value")
            if name == b"server-sig-algs":
                self.server_sig_algs = tuple(
                    value.decode("ascii", "replace").split(",")) if value else ()

    def _process_kexinit(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        if self._server_kexinit:
            raise SSHProtocolError("second KEXINIT during a key exchange")
        server = parse_kexinit(payload)
        if self.kex_phase is KexPhase.IDLE:
            self._send_kexinit(now)  # the server started a rekey
        self._server_kexinit = payload
        client = parse_kexinit(self._client_kexinit)
        first = not self.established
        negotiated = algorithms.negotiate(client, server, first_kex=first)
        if first:
            self.strict_kex = negotiated.strict_kex
            if self.strict_kex and self._opener.packets != 1:
                raise SSHProtocolError("strict KEX: KEXINIT was not the server's first packet")
        self._negotiated = negotiated
        # RFC 4253 7: a server that guessed and sent its first KEX packet early must have
        # that packet ignored if the guess (first kex and host key algorithm) was wrong.
        self._skip_guessed = server.first_kex_follows and (
            server.kex[:1] != (negotiated.kex,) or server.host_key[:1] != (negotiated.host_key,))
        self._exchange = Curve25519Exchange(self._rng)
        w = SSHWriter()
        w.push_uint8(Msg.KEX_ECDH_INIT)
        w.push_string(self._exchange.public)
        self._send_transport(w.data())
        self.kex_phase = KexPhase.ECDH_SENT
        self.state = State.KEX

    def _process_kex_ecdh_reply(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        if self.kex_phase is not KexPhase.ECDH_SENT or self._exchange is None \
                or self._negotiated is None:
            raise SSHProtocolError("unexpected KEX_ECDH_REPLY")
        host_key_blob = buf.pull_string("host key")
        server_public = buf.pull_string("server public value")
        signature = buf.pull_string("signature")
        buf.expect_end("KEX_ECDH_REPLY")
        host_key = parse_host_key(host_key_blob)
        secret = self._exchange.shared_secret(server_public)
        h = exchange_hash(client_version=self.client_version,
                          server_version=self.server_version,
                          client_kexinit=self._client_kexinit,
                          server_kexinit=self._server_kexinit, host_key=host_key_blob,
                          client_public=self._exchange.public, server_public=server_public,
                          secret=secret)
        verify_signature(host_key, self._negotiated.host_key, signature, h)
        if self.host_key is None:
            self._verify_host_key(host_key)  # raises HostKeyError to refuse
            self.host_key = host_key
        elif host_key.blob != self.host_key.blob:
            raise KexError("server's host key changed during a rekey")
        if not self.session_id:
            self.session_id = h
        n = self._negotiated
        keys = derive_keys(secret, h, self.session_id)
        self._new_keys = (
            PacketKeys(n.cipher_c2s, n.mac_c2s, key=keys.key_c2s, iv=keys.iv_c2s,
                       mac_key=keys.mac_c2s, encrypt=True),
            PacketKeys(n.cipher_s2c, n.mac_s2c, key=keys.key_s2c, iv=keys.iv_s2c,
                       mac_key=keys.mac_s2c, encrypt=False),
        )
        self._exchange = None
        self._send_transport(bytes([Msg.NEWKEYS]))
        self._sealer.set_keys(self._new_keys[0], reset_sequence=self.strict_kex)
        self.kex_phase = KexPhase.NEWKEYS_SENT

    def _process_newkeys(self, buf: SSHBuffer, payload: bytes, now: float) -> None:
        if self.kex_phase is not KexPhase.NEWKEYS_SENT or self._new_keys is None:
            raise SSHProtocolError("unexpected NEWKEYS")
        buf.expect_end("NEWKEYS")
        self._opener.set_keys(self._new_keys[1], reset_sequence=self.strict_kex)
        self._new_keys = None
        self._kex_count += 1
        self._last_kex_done = now
        self._deadline = None
        self._server_kexinit = b""
        self.kex_phase = KexPhase.IDLE
        self.state = State.OPEN
        self.established = True
        pending, self._pending = self._pending, []
        for head, tail in pending:
            self._sealer.seal_to(self._out, head, tail)
