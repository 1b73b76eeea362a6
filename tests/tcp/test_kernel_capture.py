"""A pcap of a clean interop run (both directions), read back by tshark: no malformed
packet, no bad checksum (the capture is taken on the stack's side, where partial checksums
are completed), over IPv4 and over IPv6, and TCP analysis finds no spurious retransmission
on the clean link."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.link.tshark import quiet_guess_args
from tests.tcp.kernel_rig import close_rig, open_rig
from tests.tcp.test_kernel_interop import download_and_check, upload_and_check
from tests.testbed import require_binary

pytestmark = pytest.mark.testbed


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_clean_interop_capture_is_clean_for_tshark(tmp_path: Path, ipv6: bool) -> None:
    tshark = require_binary("tshark")
    pcap = tmp_path / "tcp.pcap"
    rig = open_rig("tc6c" if ipv6 else "tcc", pcap=str(pcap), ipv6=ipv6)
    try:
        upload_and_check(rig, 8 << 20)
        download_and_check(rig, 8 << 20)
        assert rig.stack.counters["stack.rx.internal_error"] == 0
    finally:
        close_rig(rig)
    assert pcap.stat().st_size > 16 << 20
    checks = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"]
    expert = subprocess.run(
        [tshark, "-n", "-r", str(pcap), *quiet_guess_args(), *checks, "-q", "-z", "expert,note"],
        capture_output=True, text=True, timeout=300, check=False)
    out = expert.stdout
    assert expert.returncode == 0, expert.stderr
    lower = out.lower()
    assert "malformed" not in lower, out
    assert "bad checksum" not in lower and "checksum is incorrect" not in lower, out
    assert "spurious retransmission" not in lower, out
    family = "ipv6" if ipv6 else "ip"
    frames = subprocess.run([tshark, "-n", "-r", str(pcap), "-Y", f"tcp && {family}"],
                            capture_output=True, text=True, timeout=300,
                            check=False).stdout.count("\n")
    assert frames > 100
