"""The blocking shell: ``vipernet.tls.wrap(sock, server_hostname=...)`` -> a socket-like object.

It drives :class:`~vipernet.tls.connection.TLSClientConnection` over any stream socket
that has ``recv`` and ``sendall`` (a stdlib socket, a vipernet socket).  The handshake
runs inside :func:`wrap`; the clock is the wall clock and the randomness
``random.SystemRandom`` (the OS CSPRNG) unless the caller injects others.

Reads pull 256 KiB at a time from the transport and keep decrypted bytes in one
``bytearray``, so a bulk download costs one AEAD call per 16 KiB record and no per-byte
Python.
"""

from __future__ import annotations

import contextlib
import io
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vipernet.tls.certificates import TrustStore
from vipernet.tls.config import DEFAULT_SUITES, TLSConfig
from vipernet.tls.connection import TLSClientConnection
from vipernet.tls.constants import CipherSuite
from vipernet.tls.errors import ConnectionClosedError, TLSError, TLSUsageError
from vipernet.tls.events import (
    ApplicationDataReceived,
    CloseNotifyReceived,
)
from vipernet.tls.key_schedule import SUITES
from vipernet.tls.session import SessionTicket

_READ_SIZE = 1 << 18


class StreamSocket(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> Any: ...
    def close(self) -> None: ...


class TLSSocket:
    """A TLS 1.3 client stream over ``sock``, shaped like ``ssl.SSLSocket``."""

    def __init__(self, sock: StreamSocket, connection: TLSClientConnection, *,
                 clock: Callable[[], float], suppress_ragged_eofs: bool = True) -> None:
        self._sock = sock
        self.connection = connection
        self._clock = clock
        self._plain = bytearray()
        self._eof = False
        self._closed = False
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.ragged_eof = False
        self.insecure = connection.insecure

    # -- the engine pump ---------------------------------------------------------------

    def _flush(self) -> None:
        out = self.connection.data_to_send()
        if out:
            self._sock.sendall(out)

    def _drain_events(self) -> None:
        conn = self.connection
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationDataReceived):
                self._plain += event.data
            elif isinstance(event, CloseNotifyReceived):
                self._eof = True

    def _pump(self) -> bool:
        """Read once from the transport; False at transport EOF."""
        data = self._sock.recv(_READ_SIZE)
        if not data:
            return False
        try:
            self.connection.receive_data(data, self._clock())
        except TLSError:
            self._flush_quietly()
            raise
        self._drain_events()
        self._flush()
        return True

    def _flush_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self._flush()

    def do_handshake(self) -> None:
        conn = self.connection
        conn.start_handshake()
        self._flush()
        while not conn.handshake_complete:
            if not self._pump():
                raise ConnectionClosedError(
                    f"server closed the connection during the handshake (state "
                    f"{conn.state.value})")

    # -- socket-like API ---------------------------------------------------------------

    def recv(self, bufsize: int = 65536, flags: int = 0) -> bytes:
        if flags:
            raise ValueError("flags are not supported on a TLS socket")
        while not self._plain and not self._eof:
            if not self._pump():
                self._eof = True
                self.ragged_eof = True
                if not self.suppress_ragged_eofs:
                    raise ConnectionClosedError("transport closed without close_notify "
                                                "(truncated stream)")
        if bufsize >= len(self._plain):
            data = bytes(self._plain)
            self._plain.clear()
            return data
        data = bytes(self._plain[:bufsize])
        del self._plain[:bufsize]
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        want = nbytes or len(view)
        data = self.recv(want, flags)
        view[: len(data)] = data
        return len(data)

    def read(self, n: int = 65536) -> bytes:
        return self.recv(n)

    def pending(self) -> int:
        return len(self._plain)

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        if flags:
            raise ValueError("flags are not supported on a TLS socket")
        if self._closed:
            raise OSError(9, "TLS socket is closed")
        self.connection.send_application_data(data)
        self._flush()
        return len(data)

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        self.send(data, flags)

    def write(self, data: bytes) -> int:
        return self.send(data)

    def unwrap(self) -> StreamSocket:
        """Send close_notify and hand back the transport."""
        self.connection.close()
        self._flush_quietly()
        return self._sock

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.connection.close()
            self._flush()
        except (OSError, TLSError, TLSUsageError):
            pass
        self._sock.close()

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        reading, writing = "r" in mode, "w" in mode
        raw = _TLSRawIO(self, reading, writing)
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        if size == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffered: io.BufferedIOBase
        if reading and writing:
            buffered = io.BufferedRWPair(raw, raw, size)
        elif reading:
            buffered = io.BufferedReader(raw, size)
        else:
            buffered = io.BufferedWriter(raw, size)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding, errors, newline)

    def version(self) -> str | None:
        return "TLSv1.3" if self.connection.handshake_complete else None

    def cipher(self) -> tuple[str, str, int] | None:
        suite = self.connection.cipher_suite
        if suite is None:
            return None
        params = SUITES[suite]
        return params.name, "TLSv1.3", params.key_length * 8

    def selected_alpn_protocol(self) -> str | None:
        return self.connection.alpn_protocol

    @property
    def session(self) -> SessionTicket | None:
        """The newest session ticket, to pass as ``session=`` to a later :func:`wrap`."""
        return self.connection.latest_ticket

    @property
    def session_reused(self) -> bool:
        return self.connection.session_resumed

    def getpeercert(self, binary_form: bool = False) -> Any:
        certs = self.connection.peer_certificates
        if not certs:
            return None
        leaf = certs[0]
        if binary_form:
            from cryptography.hazmat.primitives.serialization import Encoding

            return leaf.public_bytes(Encoding.DER)
        from cryptography import x509

        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            alt: list[tuple[str, str]] = [("DNS", n) for n in san.get_values_for_type(x509.DNSName)]
            alt += [("IP Address", str(a)) for a in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            alt = []
        return {
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "notBefore": leaf.not_valid_before_utc.isoformat(),
            "notAfter": leaf.not_valid_after_utc.isoformat(),
            "serialNumber": format(leaf.serial_number, "X"),
            "subjectAltName": tuple(alt),
            "verified": not self.insecure,
        }

    def settimeout(self, value: float | None) -> None:
        settimeout = getattr(self._sock, "settimeout", None)
        if settimeout is None:
            raise TLSUsageError("the wrapped socket has no settimeout()")
        settimeout(value)

    def gettimeout(self) -> float | None:
        gettimeout = getattr(self._sock, "gettimeout", None)
        return gettimeout() if gettimeout is not None else None

    def fileno(self) -> int:
        fileno = getattr(self._sock, "fileno", None)
        if fileno is None:
            raise io.UnsupportedOperation("the wrapped socket has no file descriptor")
        result: int = fileno()
        return result

    def __getattr__(self, name: str) -> Any:
        # getpeername, getsockname, setsockopt... pass through to the transport.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._sock, name)

    def __enter__(self) -> TLSSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TLSRawIO(io.RawIOBase):
    def __init__(self, tls: TLSSocket, reading: bool, writing: bool) -> None:
        super().__init__()
        self._tls, self._reading, self._writing = tls, reading, writing

    def readable(self) -> bool:
        return self._reading

    def writable(self) -> bool:
        return self._writing

    def readinto(self, buffer: Any) -> int:
        return self._tls.recv_into(buffer)

    def write(self, data: Any) -> int:
        return self._tls.send(data)


def wrap(sock: StreamSocket | socket.socket, *, server_hostname: str | None = None,
         alpn: Sequence[str] = (), cafile: str | None = None, trust: TrustStore | None = None,
         insecure: bool = False, timeout: float | None = None,
         session: SessionTicket | None = None,
         cipher_suites: Sequence[CipherSuite] = DEFAULT_SUITES,
         clock: Callable[[], float] = time.time, rng: random.Random | None = None,
         suppress_ragged_eofs: bool = True) -> TLSSocket:
    """Run a TLS 1.3 handshake over ``sock`` and return the encrypted stream.

    The server's chain is checked against ``cafile`` (or ``trust``, or certifi's roots)
    and ``server_hostname``.  ``insecure=True`` skips that check, warns, and marks the
    socket ``insecure``.  ``timeout`` is applied to the transport before the handshake.
    """
    if timeout is not None:
        settimeout = getattr(sock, "settimeout", None)
        if settimeout is None:
            raise TLSUsageError("timeout given but the socket has no settimeout()")
        settimeout(timeout)
    config = TLSConfig(server_name=server_hostname, alpn_protocols=tuple(alpn), cafile=cafile,
                       trust=trust, insecure=insecure, session=session,
                       cipher_suites=tuple(cipher_suites))
    connection = TLSClientConnection(config, now=clock(), rng=rng or random.SystemRandom())
    tls = TLSSocket(sock, connection, clock=clock, suppress_ragged_eofs=suppress_ragged_eofs)
    tls.do_handshake()
    return tls
