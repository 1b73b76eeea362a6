"""The client side of an SSH connection as one sans-IO engine: transport + auth + channels.

:class:`SSHConnection` wires the :class:`~.transport.Transport`, the
:class:`~.auth.AuthClient` and the channel table (RFC 4254) together.  Service-layer
messages are dispatched by message number to ``_process_<name>`` handlers.  Keepalives are
``keepalive@openssh.com`` global requests: any reply (success or failure) proves the
server is alive; too many unanswered ones end the connection with :class:`SSHTimeout`.

The engine never reads a clock or touches a socket: feed it with :meth:`receive_data`,
drain :meth:`data_to_send`, and call :meth:`handle_timer` at :meth:`next_deadline`.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable, Sequence

from vipernet.buffer import BufferUnderflow
from vipernet.ssh.algorithms import Preferences
from vipernet.ssh.auth import AuthClient
from vipernet.ssh.channel import DEFAULT_MAX_PACKET, DEFAULT_WINDOW, Channel, ChannelState
from vipernet.ssh.codec import SSHBuffer, SSHWriter
from vipernet.ssh.errors import DisconnectReason, SSHError, SSHProtocolError, SSHTimeout
from vipernet.ssh.hostkey import HostKey
from vipernet.ssh.keys import UserKey
from vipernet.ssh.messages import Msg
from vipernet.ssh.packet import Payload
from vipernet.ssh.transport import State, Transport

_U32 = struct.Struct(">I")
_DATA = struct.Struct(">BII")
MAX_CHANNELS = 1024

SERVICE_MESSAGES = frozenset(
    {Msg.SERVICE_ACCEPT, Msg.USERAUTH_FAILURE, Msg.USERAUTH_SUCCESS, Msg.USERAUTH_BANNER,
     Msg.USERAUTH_PK_OK, Msg.GLOBAL_REQUEST, Msg.REQUEST_SUCCESS, Msg.REQUEST_FAILURE,
     Msg.CHANNEL_OPEN, Msg.CHANNEL_OPEN_CONFIRMATION, Msg.CHANNEL_OPEN_FAILURE,
     Msg.CHANNEL_WINDOW_ADJUST, Msg.CHANNEL_DATA, Msg.CHANNEL_EXTENDED_DATA, Msg.CHANNEL_EOF,
     Msg.CHANNEL_CLOSE, Msg.CHANNEL_REQUEST, Msg.CHANNEL_SUCCESS, Msg.CHANNEL_FAILURE}
)
AUTH_MESSAGES = frozenset({Msg.SERVICE_ACCEPT, Msg.USERAUTH_FAILURE, Msg.USERAUTH_SUCCESS,
                           Msg.USERAUTH_BANNER, Msg.USERAUTH_PK_OK})


class SSHConnection:
    def __init__(self, username: str, *, rng: random.Random,
                 verify_host_key: Callable[[HostKey], None], keys: Sequence[UserKey] = (),
                 password: str | None = None,
                 password_prompt: Callable[[], str | None] | None = None,
                 prompt: Callable[[str, str, list[tuple[str, bool]]], list[str]] | None = None,
                 prefs: Preferences | None = None, rekey_bytes: int = 1 << 30,
                 rekey_seconds: float = 3600.0, handshake_timeout: float = 30.0,
                 keepalive_interval: float | None = None, keepalive_max: int = 3) -> None:
        self.transport = Transport(rng=rng, verify_host_key=verify_host_key,
                                   handled=SERVICE_MESSAGES, prefs=prefs,
                                   rekey_bytes=rekey_bytes, rekey_seconds=rekey_seconds,
                                   handshake_timeout=handshake_timeout)
        self.auth = AuthClient(username, keys=keys, password=password,
                               password_prompt=password_prompt, prompt=prompt)
        self.channels: dict[int, Channel] = {}
        self._next_id = 0
        self._global_replies: deque[Callable[[bool, bytes], None]] = deque()
        self.keepalive_interval = keepalive_interval
        self.keepalive_max = keepalive_max
        self._keepalive_at: float | None = None
        self._keepalive_unanswered = 0
        self.error: SSHError | None = None
        self._dispatch: dict[int, Callable[[Payload], None]] = {
            Msg.GLOBAL_REQUEST: self._process_global_request,
            Msg.REQUEST_SUCCESS: self._process_request_success,
            Msg.REQUEST_FAILURE: self._process_request_failure,
            Msg.CHANNEL_OPEN: self._process_channel_open,
            Msg.CHANNEL_OPEN_CONFIRMATION: self._process_channel_open_confirmation,
            Msg.CHANNEL_OPEN_FAILURE: self._process_channel_open_failure,
            Msg.CHANNEL_WINDOW_ADJUST: self._process_channel_window_adjust,
            Msg.CHANNEL_DATA: self._process_channel_data,
            Msg.CHANNEL_EXTENDED_DATA: self._process_channel_extended_data,
            Msg.CHANNEL_EOF: self._process_channel_eof,
            Msg.CHANNEL_CLOSE: self._process_channel_close,
            Msg.CHANNEL_REQUEST: self._process_channel_request,
            Msg.CHANNEL_SUCCESS: self._process_channel_success,
            Msg.CHANNEL_FAILURE: self._process_channel_failure,
        }

    # -- driving ----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self.transport.start(now)
        self.transport.send(self.auth.start())
        if self.keepalive_interval:
            self._keepalive_at = now + self.keepalive_interval

    @property
    def authenticated(self) -> bool:
        return self.auth.done

    @property
    def closed(self) -> bool:
        return self.transport.state is State.CLOSED

    def data_to_send(self) -> bytes:
        return self.transport.data_to_send()

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        try:
            payloads = self.transport.receive_data(data, now)
            if payloads and self._keepalive_at is not None:
                self._keepalive_unanswered = 0
            for payload in payloads:
                self._handle(payload)
        except SSHError as exc:
            self.error = exc
            self.transport.disconnect(exc.reason, str(exc)[:200])
            raise
        except BufferUnderflow as exc:
            err = SSHProtocolError(f"malformed message: {exc}")
            self.error = err
            self.transport.disconnect(err.reason, str(err)[:200])
            raise err from None

    def connection_lost(self) -> None:
        self.transport.connection_lost()
        if self.error is None:
            self.error = self.transport.disconnect_error
        for ch in self.channels.values():
            if not ch.closed:
                ch.close_received = True
                ch.eof_received = True
                ch.state = ChannelState.CLOSED

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.transport.next_deadline(), self._keepalive_at)
                     if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        try:
            self.transport.handle_timer(now)
        except SSHError as exc:
            self.error = exc
            raise
        if self._keepalive_at is not None and now >= self._keepalive_at \
                and self.keepalive_interval:
            if not self.auth.done:
                # Global requests are only meaningful after authentication (the handshake
                # has its own timeout); try again one interval later.
                self._keepalive_at = now + self.keepalive_interval
                return
            if self._keepalive_unanswered >= self.keepalive_max:
                self.error = SSHTimeout(f"server did not answer {self.keepalive_max} "
                                        "keepalives")
                self.transport.disconnect(DisconnectReason.CONNECTION_LOST, "keepalive timeout")
                raise self.error
            self._keepalive_unanswered += 1
            self.global_request("keepalive@openssh.com", want_reply=True)
            self._keepalive_at = now + self.keepalive_interval

    def disconnect(self, description: str = "bye") -> None:
        self.transport.disconnect(DisconnectReason.BY_APPLICATION, description)

    # -- API --------------------------------------------------------------------------

    def open_session(self, *, window: int = DEFAULT_WINDOW,
                     max_packet: int = DEFAULT_MAX_PACKET) -> Channel:
        live = sum(1 for c in self.channels.values() if not c.closed)
        if live >= MAX_CHANNELS:
            raise SSHProtocolError("too many channels")
        local_id = self._next_id
        self._next_id += 1
        ch = Channel(local_id, self.transport.send, window=window, max_packet=max_packet)
        self.channels[local_id] = ch
        w = SSHWriter()
        w.push_uint8(Msg.CHANNEL_OPEN)
        w.push_string("session")
        w.push_uint32(local_id)
        w.push_uint32(window)
        w.push_uint32(max_packet)
        self.transport.send(w.data())
        return ch

    def forget(self, channel: Channel) -> None:
        """Drop a closed channel from the table."""
        if channel.closed:
            self.channels.pop(channel.local_id, None)

    def global_request(self, name: str, body: bytes = b"", *, want_reply: bool = True,
                       on_reply: Callable[[bool, bytes], None] | None = None) -> None:
        w = SSHWriter()
        w.push_uint8(Msg.GLOBAL_REQUEST)
        w.push_string(name)
        w.push_bool(want_reply)
        w.push_bytes(body)
        if want_reply:
            self._global_replies.append(on_reply or (lambda ok, data: None))
        self.transport.send(w.data())

    # -- dispatch ---------------------------------------------------------------------

    def _handle(self, payload: Payload) -> None:
        msg = payload[0]
        if msg in AUTH_MESSAGES or (msg in (60, 61) and not self.auth.done):
            if self.auth.done:
                if msg == Msg.USERAUTH_SUCCESS:
                    return  # a duplicate success is harmless
                raise SSHProtocolError(f"authentication message {msg} after authentication")
            t = self.transport
            for out in self.auth.handle(bytes(payload), t.session_id, t.server_sig_algs):
                t.send(out)
            return
        if not self.auth.done:
            raise SSHProtocolError(f"message {msg} before authentication completed")
        handler = self._dispatch.get(msg)
        if handler is None:
            raise SSHProtocolError(f"unexpected message {msg}")
        handler(payload)

    def _channel(self, payload: Payload) -> Channel:
        if len(payload) < 5:
            raise SSHProtocolError(f"message {payload[0]}: no recipient channel")
        (cid,) = _U32.unpack_from(payload, 1)
        ch = self.channels.get(cid)
        if ch is None or ch.state is ChannelState.FAILED:
            raise SSHProtocolError(f"message {payload[0]} for unknown channel {cid}")
        return ch

    def _process_global_request(self, payload: Payload) -> None:
        buf = SSHBuffer(payload[1:])
        buf.pull_string("request name")
        if buf.pull_bool("want reply"):
            self.transport.send(bytes([Msg.REQUEST_FAILURE]))

    def _global_reply(self, ok: bool, payload: Payload) -> None:
        self._keepalive_unanswered = 0
        if not self._global_replies:
            raise SSHProtocolError("global request reply without a request")
        self._global_replies.popleft()(ok, bytes(payload[1:]))

    def _process_request_success(self, payload: Payload) -> None:
        self._global_reply(True, payload)

    def _process_request_failure(self, payload: Payload) -> None:
        self._global_reply(False, payload)

    def _process_channel_open(self, payload: Payload) -> None:
        # A client accepts no channels from the server (no forwarding, no agent).
        buf = SSHBuffer(payload[1:])
        buf.pull_string("channel type")
        sender = buf.pull_uint32("sender channel")
        w = SSHWriter()
        w.push_uint8(Msg.CHANNEL_OPEN_FAILURE)
        w.push_uint32(sender)
        w.push_uint32(1)  # SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
        w.push_string("no channels accepted by this client")
        w.push_string("")
        self.transport.send(w.data())

    def _process_channel_open_confirmation(self, payload: Payload) -> None:
        ch = self._channel(payload)
        buf = SSHBuffer(payload[5:])
        remote = buf.pull_uint32("sender channel")
        window = buf.pull_uint32("initial window")
        max_packet = buf.pull_uint32("maximum packet")
        ch.on_open_confirmation(remote, window, max_packet)

    def _process_channel_open_failure(self, payload: Payload) -> None:
        ch = self._channel(payload)
        buf = SSHBuffer(payload[5:])
        code = buf.pull_uint32("reason code")
        description = buf.pull_text("description")
        if ch.state is not ChannelState.OPENING:
            raise SSHProtocolError(f"channel {ch.local_id}: open failure while {ch.state}")
        ch.on_open_failure(code, description)

    def _process_channel_window_adjust(self, payload: Payload) -> None:
        ch = self._channel(payload)
        if len(payload) != 9:
            raise SSHProtocolError("WINDOW_ADJUST: bad length")
        ch.on_window_adjust(_U32.unpack_from(payload, 5)[0])

    def _process_channel_data(self, payload: Payload) -> None:
        ch = self._channel(payload)
        if len(payload) < 9:
            raise SSHProtocolError("CHANNEL_DATA: truncated")
        (n,) = _U32.unpack_from(payload, 5)
        if n != len(payload) - 9:
            raise SSHProtocolError(f"CHANNEL_DATA: length {n} but {len(payload) - 9} bytes")
        ch.receive(memoryview(payload)[9:], extended=False)

    def _process_channel_extended_data(self, payload: Payload) -> None:
        ch = self._channel(payload)
        if len(payload) < 13:
            raise SSHProtocolError("CHANNEL_EXTENDED_DATA: truncated")
        (n,) = _U32.unpack_from(payload, 9)
        if n != len(payload) - 13:
            raise SSHProtocolError("CHANNEL_EXTENDED_DATA: bad length")
        ch.receive(memoryview(payload)[13:], extended=True)

    def _process_channel_eof(self, payload: Payload) -> None:
        self._channel(payload).on_eof()

    def _process_channel_close(self, payload: Payload) -> None:
        self._channel(payload).on_close()

    def _process_channel_request(self, payload: Payload) -> None:
        ch = self._channel(payload)
        buf = SSHBuffer(payload[5:])
        name = buf.pull_string("request type")
        want_reply = buf.pull_bool("want reply")
        if name == b"exit-status":
            ch.exit_status = buf.pull_uint32("exit status")
        elif name == b"exit-signal":
            ch.exit_signal = buf.pull_string("signal name").decode("ascii", "replace")
        if want_reply and not ch.close_sent:
            # We implement none of the requests a server may make of a client that want a
            # reply (e.g. keepalive@openssh.com): the answer is FAILURE, which still proves
            # we are alive.
            self.transport.send(struct.pack(">BI", Msg.CHANNEL_FAILURE, ch.remote_id))

    def _process_channel_success(self, payload: Payload) -> None:
        self._channel(payload).on_reply(True)

    def _process_channel_failure(self, payload: Payload) -> None:
        self._channel(payload).on_reply(False)
