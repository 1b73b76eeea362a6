"""Interop: the Resolver over stdlib sockets against a real dnsmasq on host loopback.

dnsmasq listens on 127.0.0.1 at a free high port, knows only what its command line and
a temporary hosts file tell it, and answers NXDOMAIN for everything else (``--local=/#/``).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.testbed import require_binary
from vipernet.dns import AAAA, NameNotFound, NoRecords, Resolver

pytestmark = pytest.mark.testbed

BIG_COUNT = 60  # 60 A records do not fit 512 bytes: dnsmasq sets TC over UDP


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))  # dnsmasq serves TCP on the same port
    return port


def _ready(port: int, deadline: float) -> bool:
    query = dns.message.make_query("example.test", "A")
    while time.monotonic() < deadline:
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return True
        except Exception:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[int]:
    binary = require_binary("dnsmasq")
    workdir = Path(tempfile.mkdtemp(prefix="vipernet-dns-"))
    hosts = workdir / "hosts"
    hosts.write_text("".join(f"10.9.0.{i} big.example.test\n" for i in range(1, BIG_COUNT + 1)))
    process: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(3):  # a free port can be taken between the check and the bind
            port = _free_port()
            process = subprocess.Popen(
                [
                    binary,
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    f"--addn-hosts={hosts}",
                    "--pid-file",
                    "--user=root",
                    "--listen-address=127.0.0.1",
                    f"--port={port}",
                    "--bind-interfaces",
                    "--address=/example.test/10.0.2.2",
                    "--host-record=example.test,10.0.2.2",
                    "--cname=alias.example.test,example.test",
                    "--host-record=v6.test,10.0.2.6,fd00::6",
                    "--local-ttl=30",
                    "--local=/#/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if _ready(port, time.monotonic() + 5):
                break
            process.kill()
            process.wait()
            process = None
        if process is None:
            pytest.fail("dnsmasq did not start")
        yield port
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def make_resolver(port: int, *, tcp: bool = True) -> Resolver:
    return Resolver(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        [("127.0.0.1", port)],
        time.monotonic,
        random.Random(),
        tcp_socket_factory=(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        if tcp
        else None,
        timeout=1.0,
        attempts=2,
    )


def test_a_record_from_dnsmasq(dnsmasq: int) -> None:
    resolver = make_resolver(dnsmasq)
    assert resolver.resolve("example.test") == ["10.0.2.2"]
    assert resolver.resolve("www.example.test") == ["10.0.2.2"]
    assert resolver.counters["accepted"] == 2


def test_cname_from_dnsmasq_is_followed_to_its_target(dnsmasq: int) -> None:
    answer = make_resolver(dnsmasq).resolve_answer("alias.example.test")
    assert answer.canonical_name == "example.test"
    assert answer.addresses == ("10.0.2.2",)


def test_unknown_name_is_name_not_found(dnsmasq: int) -> None:
    with pytest.raises(NameNotFound):
        make_resolver(dnsmasq).resolve("nothing.invalid")


def test_truncated_udp_answer_is_retried_over_tcp_and_matches_dnspython(dnsmasq: int) -> None:
    resolver = make_resolver(dnsmasq)
    addresses = resolver.resolve("big.example.test")
    assert resolver.counters["truncated"] == 1 and resolver.counters["queries_tcp"] == 1
    expected = sorted(
        (f"10.9.0.{i}" for i in range(1, BIG_COUNT + 1)), key=lambda a: int(a.split(".")[-1])
    )
    assert addresses == expected
    # The reference: dnspython's own TCP query sees the same set.
    reference = dns.query.tcp(
        dns.message.make_query("big.example.test", "A"), "127.0.0.1", port=dnsmasq, timeout=2
    )
    assert {r.address for r in reference.answer[0]} == set(addresses)


def test_aaaa_record_from_dnsmasq_and_nodata_for_a_v4_only_name(dnsmasq: int) -> None:
    resolver = make_resolver(dnsmasq)
    assert resolver.resolve("v6.test", AAAA) == ["fd00::6"]
    assert resolver.resolve("v6.test") == ["10.0.2.6"]
    with pytest.raises(NoRecords):
        resolver.resolve("big.example.test", AAAA)


def test_second_lookup_is_served_from_the_cache_within_the_ttl(dnsmasq: int) -> None:
    resolver = make_resolver(dnsmasq)
    first = resolver.resolve_answer("v6.test")
    assert 0 < first.ttl <= 30
    assert resolver.resolve("V6.test") == ["10.0.2.6"]
    assert resolver.counters["queries_udp"] == 1 and resolver.counters["cache_hits"] == 1
