"""The Resolver over vipernet's own sockets (kernel mode) against dnsmasq in a namespace.

The datagrams cross our whole stack: vipernet.socket -> in-process stack -> TAP -> the
namespace's kernel -> dnsmasq at 10.0.2.3, and back; the truncated answer is retried over
vipernet TCP.  The child process prints what it resolved as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed import TestBed

pytestmark = pytest.mark.testbed
SRC = str(Path(__file__).resolve().parents[2] / "src")
BIG_COUNT = 60

CHILD = """
import json
from vipernet import socket as vs
from vipernet.dns import NameNotFound, Resolver

resolver = Resolver(
    lambda: vs.socket(vs.AF_INET, vs.SOCK_DGRAM),
    ["10.0.2.3"],
    tcp_socket_factory=lambda: vs.socket(vs.AF_INET, vs.SOCK_STREAM),
    timeout=2.0,
    attempts=3,
    lifetime=20.0,
)
out = {
    "a": resolver.resolve("example.test"),
    "alias": resolver.resolve_answer("alias.example.test").canonical_name,
    "big": resolver.resolve("big.example.test"),
}
try:
    resolver.resolve("nothing.invalid")
    out["nxdomain"] = False
except NameNotFound:
    out["nxdomain"] = True
out["counters"] = dict(resolver.counters)
print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def bed() -> Iterator[TestBed]:
    with TestBed("dns") as bed:
        hosts = bed.workdir / "hosts"
        hosts.write_text("".join(f"10.9.0.{i} big.example.test\n" for i in range(1, BIG_COUNT + 1)))
        bed.start_dnsmasq(
            f"--addn-hosts={hosts}",
            "--host-record=example.test,10.0.2.2",
            "--cname=alias.example.test,example.test",
        )
        yield bed


def test_resolver_over_vipernet_sockets_through_the_stack(bed: TestBed) -> None:
    env = {**os.environ, "PYTHONPATH": SRC, "VIPER_KERNEL_ENABLE_NET": "1"}
    env["VIPERNET_LINK"] = f"tap:{bed.tap}"
    env.pop("VIPERNET_TRANSPORT", None)
    proc = subprocess.run(
        bed.ns_argv([sys.executable, "-c", CHILD]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["a"] == ["10.0.2.2"]
    assert out["alias"] == "example.test"
    assert sorted(out["big"]) == sorted(f"10.9.0.{i}" for i in range(1, BIG_COUNT + 1))
    assert out["nxdomain"] is True
    assert out["counters"]["truncated"] == 1 and out["counters"]["queries_tcp"] == 1
