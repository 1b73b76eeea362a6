"""vipernet.tls over a vipernet TCP socket: netd on a TAP, openssl s_server in the namespace.

The client process reaches 10.0.2.2:4433 through netd (our Ethernet/ARP/IPv4/TCP), so the
TLS records cross our whole stack; the download is checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from tests.testbed import GATEWAY, TestBed, require_binary, wait_for
from tests.tls.netd_bed import start_netd
from tests.tls.pki import make_ca, make_leaf, write_server_files

pytestmark = pytest.mark.testbed
SIZE = 16 * 1024 * 1024

CLIENT = r"""
import hashlib, sys
import vipernet.socket as vsocket
import vipernet.tls as tls
raw = vsocket.create_connection((sys.argv[1], 4433), timeout=60)
sock = tls.wrap(raw, server_hostname=sys.argv[1], cafile=sys.argv[2], alpn=["http/1.1"])
sock.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
data = bytearray()
while chunk := sock.recv(1 << 20):
    data += chunk
sock.close()
head, _, body = bytes(data).partition(b"\r\n\r\n")
print(sock.version(), sock.cipher()[0], len(body), hashlib.sha256(body).hexdigest())
"""


def test_download_over_netd_tcp_to_openssl_in_namespace_is_sha256_equal() -> None:
    openssl = require_binary("openssl")
    with TestBed("tls") as bed:
        root = make_ca("over-stack root")
        cert, key = write_server_files(bed.workdir, "server", make_leaf(root, names=(GATEWAY,)))
        cafile = bed.workdir / "root.pem"
        cafile.write_bytes(root.pem())
        www = bed.workdir / "www"
        www.mkdir()
        payload = os.urandom(SIZE)
        (www / "big.bin").write_bytes(payload)
        bed.start([openssl, "s_server", "-accept", f"{GATEWAY}:4433", "-cert", str(cert),
                   "-key", str(key), "-tls1_3", "-WWW"], cwd=str(www),
                  stdin=subprocess.DEVNULL)
        wait_for(lambda: bed.tcp_port_open(GATEWAY, 4433), what="openssl s_server")
        env = start_netd(bed)
        proc = subprocess.run([sys.executable, "-c", CLIENT, GATEWAY, str(cafile)], env=env,
                              capture_output=True, timeout=240)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        version, suite, length, digest = proc.stdout.decode().split()
        assert version == "TLSv1.3" and suite.startswith("TLS_")
        assert int(length) == SIZE
        assert digest == hashlib.sha256(payload).hexdigest()
