"""TCP over IPv6 against the Linux kernel on a real TAP: the issue's 100 MB each way
(``VIPERNET_TCP_INTEROP_MB``), sha256-equal on both sides, with half-close; a refused
port; a dual-stack listener taking an IPv4 and an IPv6 kernel client; and 100 MB each way
again through the fault injector (5% loss, duplication, reordering, corruption;
``VIPERNET_TCP_FAULT_MB``).  The stack holds fd0a:2::15/64 (static, DAD-checked), the
kernel fd0a:2::2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.tcp.kernel_rig import CLIENT, STACK_IP6, Rig, close_rig, open_rig
from tests.tcp.test_kernel_interop import download_and_check, upload_and_check
from tests.testbed import DNS_SERVER6, GATEWAY6, STACK_IP

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(900)]

MB = int(os.environ.get("VIPERNET_TCP_INTEROP_MB", "100"))
FAULT_MB = int(os.environ.get("VIPERNET_TCP_FAULT_MB", "100"))


@pytest.fixture(scope="module")
def rig6() -> Iterator[Rig]:
    r = open_rig("tc6", ipv6=True)
    try:
        yield r
        assert r.stack.counters["stack.rx.internal_error"] == 0
        assert r.stack.counters["stack.poll.internal_error"] == 0
    finally:
        close_rig(r)


def test_upload_over_ipv6_arrives_sha256_equal_with_half_close(rig6: Rig) -> None:
    sent_before = rig6.stack.counters["ipv6.tx.packets"]
    elapsed = upload_and_check(rig6, MB << 20)
    print(f"IPv6 upload {MB} MB: {MB / elapsed:.0f} MB/s")
    # Over IPv6, in TSO6 segments of up to 64 KiB (fewer packets than that means the
    # bytes went some other way).
    assert rig6.stack.counters["ipv6.tx.packets"] - sent_before >= (MB << 20) // 65536


def test_download_over_ipv6_arrives_sha256_equal(rig6: Rig) -> None:
    elapsed = download_and_check(rig6, MB << 20)
    print(f"IPv6 download {MB} MB: {MB / elapsed:.0f} MB/s")


def test_a_closed_ipv6_port_is_refused(rig6: Rig) -> None:
    with pytest.raises(ConnectionRefusedError):
        rig6.connect(GATEWAY6, 9)


def test_a_dual_stack_listener_serves_kernel_clients_of_both_families(rig6: Rig) -> None:
    lst = rig6.call(lambda: rig6.stack.tcp_socket(10))
    rig6.call(lambda: lst.bind(("::", 5002)))
    rig6.call(lambda: lst.listen(8))
    try:
        # The kernel picks either of its two IPv6 addresses as the source.
        for host, peers in ((STACK_IP6, (GATEWAY6, DNS_SERVER6)),
                            (STACK_IP, ("::ffff:10.0.2.2",))):
            env = {**os.environ, "RIG_HOST": host}
            proc = rig6.bed.start([sys.executable, "-c", CLIENT, "5002", "300000", "3"],
                                  stdout=subprocess.PIPE, env=env)
            sock = rig6.accept(lst)
            assert rig6.call(sock.getpeername)[0] in peers
            got = bytearray()
            rig6.recv_all(sock, got.extend)
            rig6.close(sock)
            assert proc.stdout is not None
            assert hashlib.sha256(got).hexdigest() == proc.stdout.readline().decode().strip()
    finally:
        rig6.close(lst)


@pytest.fixture
def lossy_rig6() -> Iterator[Rig]:
    from vipernet.link.faults import FaultConfig

    cfg = FaultConfig(drop=0.05, duplicate=0.01, reorder=0.02, corrupt=0.001,
                      delay=(0.0, 0.002), reorder_hold=0.003)
    r = open_rig("tf6", faults=cfg, seed=6, ipv6=True)
    try:
        yield r
        assert r.stack.counters["stack.rx.internal_error"] == 0
    finally:
        close_rig(r)


def test_ipv6_through_faults_both_ways_arrives_sha256_equal(lossy_rig6: Rig) -> None:
    up = upload_and_check(lossy_rig6, FAULT_MB << 20)
    down = download_and_check(lossy_rig6, FAULT_MB << 20)
    print(f"lossy IPv6 {FAULT_MB} MB: up {FAULT_MB / up:.1f} MB/s, down {FAULT_MB / down:.1f}")
    tcp = lossy_rig6.stack.tcp
    assert tcp.counters["tcp_rto"] + tcp.counters["tcp_fast_retransmit"] > 0
    assert tcp.counters["tcp_out_of_order"] > 0
