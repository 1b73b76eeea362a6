"""`vipernet run` for unmodified Python HTTPS clients: requests, httpx (sync and async),
aiohttp, urllib and `pip download` from a local index -- through netd on the TAP, stdlib ssl over
the fd data plane, against a kernel HTTPS server in the namespace.

Every program prints the sha256 of what it fetched; the test compares it with the file's,
and netd's counters show that each connection went through netd's descriptors.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.link.tshark import tshark_problems
from tests.netd.test_fd_plane import certificate
from tests.netd_rig import cli_env, vipernet_cli
from tests.testbed import GATEWAY, STACK_IP, TestBed, require_binary, wait_for
from vipernet.netclient import client as netclient

pytestmark = pytest.mark.testbed

PORT = 8443
STACK_MAC = "52:54:00:12:34:56"  # netd's default, the spec's
HTTPS_SERVER = """
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("10.0.2.2", int(sys.argv[2])), Quiet)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""


@dataclass
class Site:
    bed: TestBed
    path: str
    env: dict[str, str]
    ca: str
    big_sha256: str
    wheel: str

    def counters(self) -> dict[str, int]:
        with netclient.connect(self.path) as client:
            counters: dict[str, int] = client.info()["netd_counters"]
            return counters

    def run(self, program: str, timeout: float = 120) -> list[str]:
        out = vipernet_cli("run", "--", sys.executable, "-c", program, env=self.env,
                           timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.split()


def _wheel(name: str, version: str) -> bytes:
    """A minimal pure-Python wheel (enough for pip to download and read its metadata)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            .encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: vipernet-test\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", record)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    bed = TestBed("rh")
    try:
        root = bed.workdir / "www"
        (root / "simple" / "vntest").mkdir(parents=True)
        big = os.urandom(8 << 20)
        (root / "big.bin").write_bytes(big)
        wheel_name = "vntest-1.0-py3-none-any.whl"
        wheel = _wheel("vntest", "1.0")
        (root / wheel_name).write_bytes(wheel)
        digest = hashlib.sha256(wheel).hexdigest()
        (root / "simple" / "vntest" / "index.html").write_text(
            f'<html><body><a href="../../{wheel_name}#sha256={digest}">{wheel_name}</a>'
            "</body></html>\n")
        cert, key = certificate(bed.workdir)
        server = bed.start([sys.executable, "-c", HTTPS_SERVER, str(root), str(PORT), cert,
                            key], stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        path = str(bed.workdir / "netd.sock")
        env = cli_env(VIPERNET_SOCKET=path)
        netd = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                          f"tap:{bed.tap}", "--socket", path, "--pcap",
                          str(bed.workdir / "netd.pcap")], env=env)
        wait_for(lambda: os.path.exists(path) or netd.poll() is not None, what="netd socket")
        assert netd.poll() is None
        yield Site(bed, path, env, cert, hashlib.sha256(big).hexdigest(), digest)
    finally:
        bed.close()


URL = f"https://{GATEWAY}:{PORT}"


def _pip_env(site: Site) -> dict[str, str]:
    """The machine's PIP_* settings (a CA bundle, local find-links) would steer pip away
    from the index under test, and pip's requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    override --cert."""
    env = {k: v for k, v in site.env.items() if not k.startswith("PIP_")
           and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_CERT": site.ca}


def test_requests_over_https_through_netd(site: Site) -> None:
    before = site.counters().get("fdlink.attached", 0)
    out = site.run(f"""
import hashlib, requests
r = requests.get("{URL}/big.bin", verify={site.ca!r}, timeout=60)
r.raise_for_status()
print(hashlib.sha256(r.content).hexdigest())
""")
    assert out == [site.big_sha256]
    assert site.counters().get("fdlink.attached", 0) > before


def test_httpx_sync_and_async_over_https_through_netd(site: Site) -> None:
    before = site.counters().get("fdlink.attached", 0)
    out = site.run(f"""
import asyncio, hashlib, httpx
with httpx.Client(verify={site.ca!r}) as client:
    print(hashlib.sha256(client.get("{URL}/big.bin").content).hexdigest())
async def main():
    async with httpx.AsyncClient(verify={site.ca!r}) as client:
        got = await asyncio.gather(*(client.get("{URL}/big.bin") for _ in range(4)))
        print(*{{hashlib.sha256(r.content).hexdigest() for r in got}})
asyncio.run(main())
""")
    assert out == [site.big_sha256, site.big_sha256]
    assert site.counters().get("fdlink.attached", 0) >= before + 2


def test_aiohttp_over_https_through_netd(site: Site) -> None:
    before = site.counters().get("fdlink.attached", 0)
    out = site.run(f"""
import asyncio, hashlib, ssl, aiohttp
async def main():
    context = ssl.create_default_context(cafile={site.ca!r})
    async with aiohttp.ClientSession() as session:
        async with session.get("{URL}/big.bin", ssl=context) as response:
            response.raise_for_status()
            print(hashlib.sha256(await response.read()).hexdigest())
asyncio.run(main())
""")
    assert out == [site.big_sha256]
    assert site.counters().get("fdlink.attached", 0) > before


def test_urllib_https_through_netd(site: Site) -> None:
    out = site.run(f"""
import hashlib, ssl, urllib.request
ctx = ssl.create_default_context(cafile={site.ca!r})
with urllib.request.urlopen("{URL}/big.bin", context=ctx, timeout=60) as r:
    print(hashlib.sha256(r.read()).hexdigest())
""")
    assert out == [site.big_sha256]


def test_pip_download_from_a_local_https_index_through_netd(site: Site,
                                                          tmp_path: Path) -> None:
    before = site.counters().get("fdlink.attached", 0)
    dest = tmp_path / "wheels"
    out = vipernet_cli("run", "--", sys.executable, "-m", "pip", "download", "--no-deps",
                       "--disable-pip-version-check", "--no-cache-dir",
                       "--index-url", f"{URL}/simple/", "--cert", site.ca, "-d", str(dest),
                       "vntest", env=_pip_env(site),
                       timeout=180)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    wheel = dest / "vntest-1.0-py3-none-any.whl"
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == site.wheel
    assert site.counters().get("fdlink.attached", 0) > before


def test_the_capture_shows_the_programs_traffic_came_from_vipernets_stack(site: Site) -> None:
    """Run last in this module: netd's own capture holds the HTTPS connections above,
    from the stack's MAC and IP (not the host's), and tshark finds nothing malformed."""
    pcap = site.bed.workdir / "netd.pcap"
    time.sleep(1.5)  # the capture is flushed every second
    tshark = require_binary("tshark")
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-Y",
         f"eth.src == {STACK_MAC} && ip.src == {STACK_IP} && tcp.dstport == {PORT} "
         "&& tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T", "fields", "-e", "tcp.srcport"],
        capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert len(set(out)) >= 7  # requests, httpx (2+), aiohttp, urllib, pip: a SYN each
    assert tshark_problems(pcap) == []
