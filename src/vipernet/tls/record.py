"""The TLS 1.3 record layer (RFC 8446 section 5): framing, AEAD protection, limits.

Incoming bytes collect in one ``bytearray``; :meth:`RecordLayer.next_record` cuts off
one whole record, opens it with the current read key and returns the inner content
type and plaintext.  Protection runs AES-GCM or ChaCha20-Poly1305 from
``cryptography`` over a whole record at a time; the per-record nonce is the IV XOR the
64-bit sequence number.  Limits: a ciphertext longer than 2^14 + 256 or an inner
plaintext longer than 2^14 + 1 is a ``record_overflow``; a record that fails
authentication is ``bad_record_mac``.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag

from vipernet.tls.constants import LEGACY_VERSION, ContentType
from vipernet.tls.errors import BadRecordMac, DecodeError, RecordOverflow, UnexpectedMessage
from vipernet.tls.key_schedule import SuiteParams, traffic_keys

MAX_PLAINTEXT = 1 << 14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256
MAX_INNER_PLAINTEXT = MAX_PLAINTEXT + 1
TAG_LENGTH = 16
HEADER_LENGTH = 5
_HEADER = struct.Struct(">BHH")
_VALID_TYPES = frozenset(int(t) for t in ContentType)
_APPLICATION_DATA = int(ContentType.APPLICATION_DATA)


class RecordCipher:
    """One direction's AEAD state: key, IV and sequence number."""

    __slots__ = ("_aead", "_iv", "secret", "seq")

    def __init__(self, params: SuiteParams, secret: bytes) -> None:
        key, iv = traffic_keys(params, secret)
        self._aead = params.aead(key)
        self._iv = int.from_bytes(iv, "big")
        self.seq = 0
        self.secret = secret

    @classmethod
    def from_key(cls, params: SuiteParams, key: bytes, iv: bytes) -> RecordCipher:
        """A cipher from raw key material (known-answer tests)."""
        cipher = cls.__new__(cls)
        cipher._aead = params.aead(key)
        cipher._iv = int.from_bytes(iv, "big")
        cipher.seq = 0
        cipher.secret = b""
        return cipher

    def _nonce(self) -> bytes:
        nonce = (self._iv ^ self.seq).to_bytes(12, "big")
        self.seq += 1
        return nonce

    def seal(self, content_type: int, data: bytes | bytearray | memoryview,
             padding: int = 0) -> bytes:
        """One protected record (header included) carrying ``data`` of ``content_type``."""
        inner = bytes(data) + bytes((content_type,)) + bytes(padding)
        header = _HEADER.pack(_APPLICATION_DATA, LEGACY_VERSION, len(inner) + TAG_LENGTH)
        return header + self._aead.encrypt(self._nonce(), inner, header)

    def open(self, header: bytes, ciphertext: bytes | bytearray | memoryview) -> tuple[int, bytes]:
        """Authenticate and decrypt one record body; returns (inner type, content)."""
        try:
            inner = self._aead.decrypt(self._nonce(), ciphertext, header)
        except InvalidTag:
            raise BadRecordMac(
                f"record {self.seq - 1} failed authentication (tampered or wrong key)"
            ) from None
        if len(inner) > MAX_INNER_PLAINTEXT:
            raise RecordOverflow(f"inner plaintext of {len(inner)} bytes exceeds 2^14 + 1")
        # Strip the zero padding; the last non-zero byte is the real content type.
        if not inner or inner[-1] == 0:
            inner = inner.rstrip(b"\x00")
            if not inner:
                raise UnexpectedMessage("protected record has no non-zero content type")
        return inner[-1], inner[:-1]


class RecordLayer:
    """Record framing in both directions, with the current read and write ciphers."""

    __slots__ = ("_in", "_out", "max_buffer", "read_cipher", "records_in", "records_out",
                 "write_cipher")

    def __init__(self, *, max_buffer: int = 1 << 22) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self.read_cipher: RecordCipher | None = None
        self.write_cipher: RecordCipher | None = None
        self.max_buffer = max_buffer
        self.records_in = 0
        self.records_out = 0

    # -- incoming ---------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._in += data
        if len(self._in) > self.max_buffer:
            raise RecordOverflow(f"{len(self._in)} unread bytes buffered (cap {self.max_buffer})")

    @property
    def buffered(self) -> int:
        return len(self._in)

    def next_record(self) -> tuple[int, bytes | bytearray, bool] | None:
        """The next whole record as (content type, plaintext, was_protected), or None.

        A plaintext record (no read key yet, or a change_cipher_spec) comes back as is,
        with ``was_protected`` False; the connection decides whether it was allowed.
        """
        buf = self._in
        if len(buf) < HEADER_LENGTH:
            return None
        content_type, version, length = _HEADER.unpack_from(buf)
        if content_type not in _VALID_TYPES or version >> 8 != 3:
            raise DecodeError(
                f"not a TLS record: type {content_type}, version {version:#06x} (is the peer TLS?)")
        if length > MAX_CIPHERTEXT:
            raise RecordOverflow(f"record of {length} bytes exceeds 2^14 + 256")
        end = HEADER_LENGTH + length
        if len(buf) < end:
            return None
        header = bytes(buf[:HEADER_LENGTH])
        body = buf[HEADER_LENGTH:end]
        del buf[:end]
        self.records_in += 1
        cipher = self.read_cipher
        if cipher is None or content_type != _APPLICATION_DATA:
            if content_type != ContentType.CHANGE_CIPHER_SPEC and length > MAX_PLAINTEXT:
                raise RecordOverflow(f"plaintext record of {length} bytes exceeds 2^14")
            if cipher is None and content_type == _APPLICATION_DATA:
                raise UnexpectedMessage("application_data record before any key was agreed")
            return content_type, body, False
        if length < TAG_LENGTH + 1:
            raise DecodeError(f"protected record of {length} bytes is shorter than tag + type")
        inner_type, content = cipher.open(header, body)
        return inner_type, content, True

    # -- outgoing ---------------------------------------------------------------------

    def write(self, content_type: int, data: bytes | bytearray | memoryview, *,
              record_version: int = LEGACY_VERSION) -> None:
        """Queue ``data`` as one or more records, protected when a write key is set."""
        view = memoryview(data)
        cipher = self.write_cipher
        first = True
        while first or view:
            first = False
            chunk, view = view[:MAX_PLAINTEXT], view[MAX_PLAINTEXT:]
            if cipher is None:
                self._out += _HEADER.pack(content_type, record_version, len(chunk))
                self._out += chunk
            else:
                self._out += cipher.seal(content_type, chunk)
            self.records_out += 1

    def write_raw(self, data: bytes) -> None:
        """Queue bytes as they are (the plaintext compatibility change_cipher_spec)."""
        self._out += data

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)
