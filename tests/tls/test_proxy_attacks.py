"""Byte-level attacks on a real session: a loopback TCP proxy mutates openssl's records.

The proxy forwards the client's bytes unchanged and waits until it has seen two protected
records from the client (its Finished, then its request).  The next protected record from
the server — the HTTP response — is then tampered with or replaced by an oversized one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import vipernet.tls as tls
from tests.tls.peers import OpenSSLServer
from tests.tls.pki import Issued, make_ca, make_leaf
from vipernet.tls.errors import BadRecordMac, RecordOverflow

pytestmark = pytest.mark.testbed


def _records(buffer: bytearray) -> Iterator[bytes]:
    while len(buffer) >= 5:
        end = 5 + int.from_bytes(buffer[3:5], "big")
        if len(buffer) < end:
            return
        record = bytes(buffer[:end])
        del buffer[:end]
        yield record


class MutatingProxy:
    def __init__(self, upstream_port: int, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port = upstream_port
        self.client_protected = 0
        self.mutated = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        up = threading.Thread(target=self._client_to_server, args=(client, server), daemon=True)
        up.start()
        pending = bytearray()
        try:
            while data := server.recv(65536):
                pending += data
                for record in _records(pending):
                    client.sendall(self._mutate(record))
        except OSError:
            pass
        finally:
            for s in (client, server):
                s.close()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        pending = bytearray()
        try:
            while data := client.recv(65536):
                pending += data
                for record in _records(pending):
                    if record[0] == 23:
                        self.client_protected += 1
                    server.sendall(record)
        except OSError:
            pass

    def _mutate(self, record: bytes) -> bytes:
        if record[0] != 23 or self.client_protected < 2 or self.mutated.is_set():
            return record
        self.mutated.set()
        if self.mode == "tamper":
            flipped = bytearray(record)
            flipped[-20] ^= 0x01
            return bytes(flipped)
        oversized = 2**14 + 257
        return bytes((23, 3, 3)) + oversized.to_bytes(2, "big") + bytes(300)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca("proxy test root")


@pytest.mark.parametrize(("mode", "error"), [("tamper", BadRecordMac),
                                             ("oversize", RecordOverflow)])
def test_mutated_server_record_is_refused_and_no_data_delivered(
        root: Issued, tmp_path: object, mode: str, error: type[Exception]) -> None:
    cafile = f"{tmp_path}/root.pem"
    with open(cafile, "wb") as f:
        f.write(root.pem())
    with OpenSSLServer(make_leaf(root), args=("-www", "-num_tickets", "0")) as server:
        proxy = MutatingProxy(server.port, mode)
        try:
            raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock = tls.wrap(raw, server_hostname="localhost", cafile=cafile)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with pytest.raises(error):
                sock.recv(65536)
            assert proxy.mutated.is_set()
            assert sock.pending() == 0
            sock.close()
        finally:
            proxy.close()
