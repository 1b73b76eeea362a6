"""Reading our captures back with tshark, checksum validation on."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.testbed import require_binary


def tshark_problems(path: Path) -> list[str]:
    """tshark's expert errors and warnings that mean a broken packet (it exits 0 regardless)."""
    tshark = require_binary("tshark")
    out = subprocess.run(
        [tshark, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-z", "expert", "-q"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.strip() for line in out.splitlines()
            if any(word in line for word in ("Malformed", "checksum", "Checksum"))]


def tshark_count(path: Path) -> int:
    tshark = require_binary("tshark")
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.len"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return len(out.split())
