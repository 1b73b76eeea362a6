"""``vipernet demo``: netd on its default network, then a narrated end-to-end session.

By default netd runs on the built-in user-mode network (``--link user``, no root): real
servers it starts on host loopback appear at the gateway 10.0.2.2, and DNS at 10.0.2.3 goes
to a dnsmasq it starts on host loopback.  ``--link tap`` builds the same SLiRP layout on a
TAP in a throw-away namespace instead (root), with the kernel's own TCP/IP as the peer.
Either way it drives the real CLI against real servers: ping the gateway, resolve a name,
fetch a page over HTTP and HTTPS (a local test CA), show the socket table and the
interface, and ends with a summary of what worked and how long it took.  Everything it
made is removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vipernet.cli.demo_network import (
    GATEWAY,
    DemoNetwork,
    DemoSetupError,
    TapNetwork,
    UserModeNetwork,
    find_binary,
)

PAGE = b"<html><body><h1>Hello from 10.0.2.2, through vipernet</h1></body></html>\n"


@dataclass
class StepResult:
    title: str
    ok: bool
    seconds: float
    detail: str


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run the stack end to end on its default network",
                            description=__doc__)
    parser.add_argument("--link", choices=("user", "tap"), default="user",
                        help="user: built-in user-mode networking, no root (default); "
                             "tap: a TAP in a throw-away namespace (root)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every step even after one fails")
    parser.set_defaults(func=run)


def _vipernet(*args: str) -> list[str]:
    return [sys.executable, "-m", "vipernet.cli.main", *args]


def _step(title: str, argv: list[str], env: dict[str, str], expect: bytes | None = None,
          timeout: float = 60.0) -> StepResult:
    print(f"\n\033[1m==> {title}\033[0m\n$ vipernet {' '.join(argv[3:])}", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return StepResult(title, False, time.monotonic() - start, f"timed out after {timeout}s")
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    sys.stdout.write(out.decode(errors="replace"))
    ok = proc.returncode == 0 and (expect is None or expect in out)
    detail = "ok" if ok else f"exit status {proc.returncode}"
    if proc.returncode == 0 and not ok:
        detail = f"output lacked {expect!r}"
    return StepResult(title, ok, elapsed, detail)


def _url(scheme: str, port: int) -> str:
    default = 80 if scheme == "http" else 443
    where = "example.test" if port == default else f"example.test:{port}"
    return f"{scheme}://{where}/index.html"


def _start_servers(net: DemoNetwork) -> Path:
    from vipernet.cli.demo_certs import make_demo_pki  # cryptography: only when it runs

    webroot = net.workdir / "www"
    webroot.mkdir()
    (webroot / "index.html").write_bytes(PAGE)
    dns_ip, dns_port = net.dns_listen
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    net.start([find_binary("dnsmasq"), "--keep-in-foreground", "--conf-file=/dev/null",
               "--no-resolv", "--no-hosts", f"--listen-address={dns_ip}", f"--port={dns_port}",
               "--bind-interfaces", *as_root, f"--pid-file={net.workdir / 'dnsmasq.pid'}",
               "--address=/example.test/10.0.2.2", "--local=/example.test/", "--local=/#/"],
              log="dnsmasq.log")
    net.start([sys.executable, "-m", "http.server", "--bind", net.server_ip, "--directory",
               str(webroot), str(net.http_port)], log="http.log")
    ca, cert, key = make_demo_pki(net.workdir, "example.test", GATEWAY)
    net.start([find_binary("openssl"), "s_server", "-accept", f"{net.server_ip}:{net.https_port}",
               "-cert", str(cert), "-key", str(key), "-tls1_3", "-WWW", "-quiet"],
              log="openssl.log", cwd=webroot)  # -WWW serves files relative to its cwd
    net.wait_listening("udp", dns_ip, dns_port, "dnsmasq")
    net.wait_listening("tcp", net.server_ip, net.http_port, "the HTTP server")
    net.wait_listening("tcp", net.server_ip, net.https_port, "openssl s_server")
    return ca


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        net: DemoNetwork = UserModeNetwork() if args.link == "user" else TapNetwork()
    except DemoSetupError as exc:
        print(f"vipernet demo: {exc}", file=sys.stderr)
        return 1
    results: list[StepResult] = []
    try:
        print(f"The demo network: {net.description}; the stack is 10.0.2.15/24")
        try:
            ca = _start_servers(net)
        except DemoSetupError as exc:
            print(f"vipernet demo: {exc}", file=sys.stderr)
            return 1
        sock = net.workdir / "netd.sock"
        pcap = net.workdir / "netd.pcap"
        env = dict(os.environ, VIPERNET_SOCKET=str(sock))
        netd = net.start(_vipernet("netd", "--link", net.link, "--socket", str(sock),
                                   "--pcap", str(pcap)), log="netd.log")
        deadline = time.monotonic() + 10
        while not sock.exists() and netd.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not sock.exists():
            print("vipernet demo: netd did not start:\n"
                  + (net.workdir / "netd.log").read_text(errors="replace"), file=sys.stderr)
            return 1
        print(f"netd is up (pid {netd.pid}) on --link {net.link}, IPC at {sock}")
        steps: list[tuple[str, list[str], bytes | None]] = [
            ("Ping the gateway", _vipernet("ping", GATEWAY, "-c", "3", "-i", "0.2"),
             b"3 received"),
            ("Resolve a name through dnsmasq", _vipernet("dig", "example.test"), b"10.0.2.2"),
            ("Fetch a page over HTTP", _vipernet("fetch", _url("http", net.http_port)),
             b"Hello from 10.0.2.2"),
            ("Fetch over HTTPS (local test CA)",
             _vipernet("fetch", "--cacert", str(ca), _url("https", net.https_port)),
             b"Hello from 10.0.2.2"),
            ("The socket table", _vipernet("stat"), None),
            ("The interface", _vipernet("info"), b"10.0.2.15"),
        ]
        for title, argv, expect in steps:
            result = _step(title, argv, env, expect)
            results.append(result)
            if not result.ok and not args.keep_going and title.startswith("Ping"):
                break
    finally:
        net.close()
    print("\n\033[1mSummary\033[0m")
    for r in results:
        mark = "PASS" if r.ok else "FAIL"
        print(f"  [{mark}] {r.title:<36} {r.seconds * 1000:8.1f} ms  {r.detail}")
    passed = sum(r.ok for r in results)
    print(f"{passed} passed, {len(results) - passed} failed "
          f"(total {time.monotonic() - started:.1f} s; everything it made is removed)")
    return 0 if results and passed == len(results) else 1
