"""The binary packet protocol (RFC 4253 section 6) with AES-CTR and HMAC, both directions.

One :class:`PacketSealer` turns payloads into wire bytes, one :class:`PacketOpener` turns a
byte stream back into payloads.  Each keeps a single AES-CTR context alive for the life of
its keys (CTR is a stream: re-creating it per packet would both cost time and reuse
counters) and a keyed HMAC object that is ``.copy()``-ed per packet, so the key schedule is
computed once.  ``-etm@openssh.com`` MACs encrypt-then-MAC with the length in clear.

Copies are kept to the one the cipher makes: :meth:`PacketSealer.seal_to` takes a payload in
two parts (a channel's header and a slice of its data) and appends the encrypted pieces to
the caller's list, and :meth:`PacketOpener.next` decrypts into a fresh bytearray that it
trims to the payload in place (so received payloads are bytearrays, each owned by the
caller).

Sequence numbers are uint32 and wrap; strict KEX resets them to zero after NEWKEYS.
"""

from __future__ import annotations

import hmac
import random
import struct
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vipernet.ssh.algorithms import CipherSpec, MacSpec
from vipernet.ssh.errors import MACError, SSHProtocolError

# RFC 4253 says implementations must handle 35000-byte packets; OpenSSH accepts 256 KiB.
MAX_PACKET = 256 * 1024 + 1024
MIN_PADDING = 4
_U32 = struct.Struct(">I")
_LEN_PAD = struct.Struct(">IB")
# update_into() wants room for one block more than it writes (minus one byte).
_SLACK = 15

Data = bytes | bytearray | memoryview
# Received payloads are bytearrays: each is the buffer the cipher decrypted into, trimmed
# in place, so a payload costs one copy (the decryption) however large it is.
Payload = bytes | bytearray


class PacketKeys:
    """Cipher + MAC state for one direction after NEWKEYS."""

    __slots__ = ("block_size", "crypt", "etm", "mac", "mac_size")

    def __init__(self, cipher: CipherSpec, mac: MacSpec, *, key: bytes, iv: bytes,
                 mac_key: bytes, encrypt: bool) -> None:
        ctx = Cipher(algorithms.AES(key[: cipher.key_size]), modes.CTR(iv[: cipher.iv_size]))
        self.crypt: Any = ctx.encryptor() if encrypt else ctx.decryptor()
        self.mac: Any = hmac.new(mac_key[: mac.key_size], digestmod=mac.digest)
        self.mac_size = mac.mac_size
        self.etm = mac.etm
        self.block_size = cipher.block_size


class PacketSealer:
    """Payload -> wire bytes (the sending half)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._keys: PacketKeys | None = None
        self.sequence = 0
        self.bytes_since_rekey = 0
        self.packets = 0

    def set_keys(self, keys: PacketKeys | None, *, reset_sequence: bool) -> None:
        self._keys = keys
        self.bytes_since_rekey = 0
        if reset_sequence:
            self.sequence = 0

    @property
    def encrypted(self) -> bool:
        return self._keys is not None

    def seal(self, payload: Data, tail: Data = b"") -> bytes:
        """The wire bytes of one packet whose payload is ``payload + tail``."""
        out: list[Data] = []
        self.seal_to(out, payload, tail)
        return b"".join(out)

    def seal_to(self, out: list[Data], payload: Data, tail: Data = b"") -> None:
        """Append the wire pieces of one packet (payload ``payload + tail``) to ``out``.

        The payload arrives in two parts so that a channel can pass its small header and a
        slice of queued data without joining them; CTR is a stream and HMAC incremental,
        so encrypting and MACing the parts one after the other equals doing the joined
        whole, and the only copy of the data is the cipher's output.
        """
        keys = self._keys
        n = len(payload) + len(tail)
        bs = keys.block_size if keys is not None else 8
        # etm: the length field is outside the encrypted (block-aligned) part.
        aligned = 1 + n if keys is not None and keys.etm else 5 + n
        pad = bs - aligned % bs
        if pad < MIN_PADDING:
            pad += bs
        # Padding need not be secret under CTR (it is encrypted); it must just be present.
        padding = self._rng.randbytes(pad)
        header = _LEN_PAD.pack(n + pad + 1, pad)
        seq = _U32.pack(self.sequence)
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        self.packets += 1
        self.bytes_since_rekey += 4 + n + pad + 1 + (keys.mac_size if keys is not None else 0)
        if keys is None:
            out += (header, payload, tail, padding)
            return
        crypt = keys.crypt.update
        mac = keys.mac.copy()
        if keys.etm:
            body = (crypt(header[4:] + payload), crypt(tail), crypt(padding))
            mac.update(seq + header[:4])
            for part in body:
                mac.update(part)
            out.append(header[:4])
            out += body
        else:
            # The payload is usually a channel's few-byte header: joining it to the length
            # fields costs less than a cipher and a MAC call of its own.
            head = header + payload
            mac.update(seq + head)
            mac.update(tail)
            mac.update(padding)
            out += (crypt(head), crypt(tail), crypt(padding))
        out.append(mac.digest())


class PacketOpener:
    """Wire bytes -> payloads (the receiving half): :meth:`feed`, then :meth:`next`."""

    def __init__(self, max_buffer: int = 4 * MAX_PACKET) -> None:
        self._buf = bytearray()
        self._keys: PacketKeys | None = None
        self._first: bytes | None = None  # decrypted first block of the packet in progress
        self._max_buffer = max_buffer
        self.sequence = 0
        self.bytes_since_rekey = 0
        self.packets = 0

    def set_keys(self, keys: PacketKeys | None, *, reset_sequence: bool) -> None:
        self._keys = keys
        self._first = None
        self.bytes_since_rekey = 0
        if reset_sequence:
            self.sequence = 0

    def feed(self, data: Data) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def take_raw(self) -> bytes:
        """Whatever is buffered and unparsed (used once, after the version line)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next(self) -> Payload | None:
        """The next payload, or None if a whole packet has not arrived yet."""
        keys = self._keys
        buf = self._buf
        if keys is None:
            return self._next_plain(buf)
        if keys.etm:
            return self._next_etm(buf, keys)
        return self._next_eam(buf, keys)

    def _check_length(self, length: int, bs: int, aligned_extra: int) -> None:
        if length < 5 or length > MAX_PACKET:
            raise SSHProtocolError(f"packet length {length} outside [5, {MAX_PACKET}]")
        if (length + aligned_extra) % bs:
            raise SSHProtocolError(f"packet length {length} is not a multiple of block size {bs}")

    def _finish(self, plain: bytearray, start: int, end: int, consumed: int) -> bytearray:
        """Trim ``plain[start:end]`` (padding length byte, payload, padding) to the payload
        in place: deleting at the front of a bytearray moves a pointer, not the data."""
        pad = plain[start]
        if pad < MIN_PADDING or pad + 1 > end - start:
            raise SSHProtocolError(f"padding length {pad} invalid for a {end - start}-byte "
                                   "packet")
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        self.packets += 1
        self.bytes_since_rekey += consumed
        del plain[end - pad :]
        del plain[: start + 1]
        return plain

    def _mac_error(self) -> MACError:
        return MACError(f"MAC check failed on packet {self.sequence}: data was tampered "
                        "with or corrupted in transit")

    def _next_plain(self, buf: bytearray) -> Payload | None:
        if len(buf) < 4:
            return None
        (length,) = _U32.unpack_from(buf, 0)
        self._check_length(length, 8, 4)
        if len(buf) < 4 + length:
            if len(buf) > self._max_buffer:
                raise SSHProtocolError("receive buffer overflow")
            return None
        plain = buf[4 : 4 + length]
        del buf[: 4 + length]
        return self._finish(plain, 0, length, 4 + length)

    def _next_etm(self, buf: bytearray, keys: PacketKeys) -> Payload | None:
        if len(buf) < 4:
            return None
        (length,) = _U32.unpack_from(buf, 0)
        self._check_length(length, keys.block_size, 0)
        total = 4 + length + keys.mac_size
        if len(buf) < total:
            return None
        plain = bytearray(length + _SLACK)
        with memoryview(buf) as view:
            mac = keys.mac.copy()
            mac.update(_U32.pack(self.sequence))
            mac.update(view[: 4 + length])
            if not hmac.compare_digest(mac.digest(), view[4 + length : total]):
                raise self._mac_error()
            keys.crypt.update_into(view[4 : 4 + length], plain)
        del buf[:total]
        return self._finish(plain, 0, length, total)

    def _next_eam(self, buf: bytearray, keys: PacketKeys) -> Payload | None:
        bs = keys.block_size
        if self._first is None:
            if len(buf) < bs:
                return None
            self._first = keys.crypt.update(bytes(buf[:bs]))
        first = self._first
        (length,) = _U32.unpack_from(first, 0)
        self._check_length(length, bs, 4)
        total = 4 + length + keys.mac_size
        if len(buf) < total:
            return None
        # Decrypt straight into the buffer that becomes the payload (no slicing/joining).
        plain = bytearray(4 + length + _SLACK)
        plain[:bs] = first
        with memoryview(buf) as view, memoryview(plain) as out:
            keys.crypt.update_into(view[bs : 4 + length], out[bs:])
            mac = keys.mac.copy()
            mac.update(_U32.pack(self.sequence))
            mac.update(out[: 4 + length])
            ok = hmac.compare_digest(mac.digest(), view[4 + length : total])
        if not ok:
            raise self._mac_error()
        self._first = None
        del buf[:total]
        return self._finish(plain, 4, 4 + length, total)
