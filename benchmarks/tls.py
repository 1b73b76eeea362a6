"""TLS 1.3 client benchmark: vipernet.tls vs the stdlib ssl module vs tlslite-ng.

Starts one local ``openssl s_server -WWW -tls1_3`` (P-256 certificate from a throwaway CA
built here) and measures, for each client, in the same run:
  - full-handshake latency (TCP connect + TLS 1.3 handshake, no resumption), median of N;
  - bulk receive MB/s of one large file served by s_server over TLS.
Targets (issue 4): handshake <= 2x stdlib, bulk >= 50% of stdlib.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Sibling benchmark scripts (benchmarks/http.py...) must not shadow stdlib modules.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "src"))
import vipernet.tls as vtls  # noqa: E402

HANDSHAKES = int(os.environ.get("TLS_BENCH_HANDSHAKES", "200"))
BULK_MB = int(os.environ.get("TLS_BENCH_MB", "128"))
TLSLITE_MB = 2
TLSLITE_HANDSHAKES = 20


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "leaf.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"


def start_server(directory: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert), "-key", str(key),
         "-tls1_3", "-WWW", "-num_tickets", "0"], cwd=directory, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("openssl s_server did not start")
        match = re.match(rb"ACCEPT .*:(\d+)", line)
        if match:
            return proc, int(match.group(1))


Connect = Callable[[socket.socket], object]


def time_handshakes(port: int, connect: Connect, count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        raw = socket.create_connection(("127.0.0.1", port))
        tls = connect(raw)
        samples.append(time.perf_counter() - start)
        tls.close()  # type: ignore[attr-defined]
    return statistics.median(samples)


def time_bulk(port: int, connect: Connect, path: str, size: int,
              read: Callable[[object, memoryview], int]) -> float:
    raw = socket.create_connection(("127.0.0.1", port))
    tls = connect(raw)
    buffer = memoryview(bytearray(1 << 20))
    start = time.perf_counter()
    tls.sendall(f"GET /{path} HTTP/1.0\r\n\r\n".encode())  # type: ignore[attr-defined]
    total = 0
    while True:
        n = read(tls, buffer)
        if n == 0:
            break
        total += n
    elapsed = time.perf_counter() - start
    tls.close()  # type: ignore[attr-defined]
    if total < size:
        raise RuntimeError(f"short read: {total} of {size}")
    return size / elapsed / 1e6


def main() -> None:
    if shutil.which("openssl") is None:
        sys.exit("openssl is needed")
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-tls-bench-"))
    proc = None
    try:
        ca, cert, key = make_pki(workdir)
        size = BULK_MB * 1024 * 1024
        (workdir / "bulk.bin").write_bytes(os.urandom(size))
        small = TLSLITE_MB * 1024 * 1024
        (workdir / "small.bin").write_bytes(os.urandom(small))
        proc, port = start_server(workdir, cert, key)
        trust = vtls.load_trust_store(str(ca))

        def viper(raw: socket.socket) -> object:
            return vtls.wrap(raw, server_hostname="localhost", trust=trust)

        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_3

        def stdlib(raw: socket.socket) -> object:
            return context.wrap_socket(raw, server_hostname="localhost")

        def read_viper(tls: object, buf: memoryview) -> int:
            return tls.recv_into(buf)  # type: ignore[attr-defined, no-any-return]

        def read_stdlib(tls: object, buf: memoryview) -> int:
            try:
                return tls.recv_into(buf)  # type: ignore[attr-defined, no-any-return]
            except ssl.SSLZeroReturnError:
                return 0

        rows = []
        # Warm up (imports, trust store parse, openssl caches).
        time_handshakes(port, viper, 5)
        time_handshakes(port, stdlib, 5)
        hs_viper = time_handshakes(port, viper, HANDSHAKES)
        hs_stdlib = time_handshakes(port, stdlib, HANDSHAKES)
        bulk_viper = max(time_bulk(port, viper, "bulk.bin", size, read_viper) for _ in range(2))
        bulk_stdlib = max(time_bulk(port, stdlib, "bulk.bin", size, read_stdlib)
                          for _ in range(2))
        rows.append(("vipernet.tls", hs_viper, bulk_viper, f"{BULK_MB} MB"))
        rows.append(("stdlib ssl", hs_stdlib, bulk_stdlib, f"{BULK_MB} MB"))
        try:
            from tlslite.api import HandshakeSettings, TLSConnection

            settings = HandshakeSettings()
            settings.minVersion = (3, 4)
            settings.maxVersion = (3, 4)

            def tlslite(raw: socket.socket) -> object:
                conn = TLSConnection(raw)
                conn.handshakeClientCert(settings=settings, serverName="localhost")
                return conn

            def read_tlslite(tls: object, buf: memoryview) -> int:
                data = tls.recv(len(buf))  # type: ignore[attr-defined]
                buf[: len(data)] = data
                return len(data)

            hs_lite = time_handshakes(port, tlslite, TLSLITE_HANDSHAKES)
            bulk_lite = time_bulk(port, tlslite, "small.bin", small, read_tlslite)
            rows.append(("tlslite-ng", hs_lite, bulk_lite, f"{TLSLITE_MB} MB"))
        except ImportError as exc:
            rows.append(("tlslite-ng", float("nan"), float("nan"), f"not installed ({exc})"))

        print(f"TLS 1.3 client vs openssl s_server on loopback "
              f"(handshakes: median of {HANDSHAKES}; P-256 cert, X25519)")
        print(f"{'client':<14}{'handshake ms':>14}{'bulk MB/s':>12}  bulk size")
        for name, hs, bulk, note in rows:
            print(f"{name:<14}{hs * 1000:>14.3f}{bulk:>12.1f}  {note}")
        print(f"vipernet/stdlib: handshake {hs_viper / hs_stdlib:.2f}x (target <= 2x), "
              f"bulk {100 * bulk_viper / bulk_stdlib:.0f}% (target >= 50%)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
