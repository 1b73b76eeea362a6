"""Kernel interop through a FaultInjector on the real TAP: 5% loss, 1% duplication,
reordering, 0.1% corruption and delay jitter, both directions; bytes must arrive sha256-equal
and both connections close cleanly.  The issue's 100 MB each way by default
(``VIPERNET_TCP_FAULT_MB`` sets another size).

Our sender moves ~1.8-2 MB/s through these faults (the kernel's ~8-13 MB/s), so the upload
takes about a minute on this 2-core machine (measured 59 s under load, 9 s down); the
per-test timeout is raised to leave room for a loaded machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.tcp.kernel_rig import Rig, close_rig, open_rig
from tests.tcp.test_kernel_interop import download_and_check, upload_and_check

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(900)]

MB = int(os.environ.get("VIPERNET_TCP_FAULT_MB", "100"))


@pytest.fixture
def lossy_rig() -> Iterator[Rig]:
    from vipernet.link.faults import FaultConfig

    cfg = FaultConfig(drop=0.05, duplicate=0.01, reorder=0.02, corrupt=0.001,
                      delay=(0.0, 0.002), reorder_hold=0.003)
    r = open_rig("tcf", faults=cfg, seed=5)
    try:
        yield r
        assert r.stack.counters["stack.rx.internal_error"] == 0
    finally:
        close_rig(r)


def test_upload_through_faults_arrives_sha256_equal_and_closes(lossy_rig: Rig) -> None:
    elapsed = upload_and_check(lossy_rig, MB << 20)
    print(f"lossy upload {MB} MB: {MB / elapsed:.1f} MB/s")
    tcp = lossy_rig.stack.tcp
    assert lossy_rig.runtime.wait_until(
        lambda: all(c.state.name in ("TIME_WAIT", "CLOSED") for c in tcp.conns.values()), 30)
    assert tcp.counters["tcp_rto"] + tcp.counters["tcp_fast_retransmit"] > 0


def test_download_through_faults_arrives_sha256_equal_and_closes(lossy_rig: Rig) -> None:
    elapsed = download_and_check(lossy_rig, MB << 20)
    print(f"lossy download {MB} MB: {MB / elapsed:.1f} MB/s")
    tcp = lossy_rig.stack.tcp
    assert lossy_rig.runtime.wait_until(
        lambda: all(c.state.name in ("TIME_WAIT", "CLOSED") for c in tcp.conns.values()), 30)
    assert tcp.counters["tcp_out_of_order"] > 0
