"""Reading our captures back with tshark, checksum validation on.

Our tests send random payloads between ephemeral ports.  tshark guesses at such payloads:
heuristic dissectors (RTCP above all: any datagram whose first bytes read 0x80-0xbf then
200-204 "is" RTCP, about 1 in 200 random datagrams) and dissectors registered on ports in
the ephemeral range (EtherNet/IP on 44818, PROFINET on 34962, ...) then report our random
bytes as a "Malformed Packet".  That says nothing about the Ethernet, IP, ICMP, UDP or TCP we
wrote, yet it failed capture checks now and then.  :func:`quiet_guess_args` turns those
guessers off, keeping every protocol the stack itself speaks, so the checks stay as strict
about our headers and checksums as before and stop depending on the dice.
"""

from __future__ import annotations

import functools
import struct
import subprocess
from pathlib import Path

from tests.testbed import require_binary

# Protocols the stack or its peers really put on the wire: never switched off.
OUR_PROTOCOLS = frozenset({"eth", "arp", "ip", "icmp", "ipv6", "icmpv6", "udp", "tcp", "dns",
                           "bootp", "dhcp",
                           "ntp", "tls", "ssh", "http"})
EPHEMERAL_LOW = 32768  # the lowest port the kernel or the stack picks for itself


@functools.cache
def quiet_guess_args() -> tuple[str, ...]:
    """``--disable-protocol`` options for every UDP heuristic dissector and every dissector
    bound to a UDP/TCP port in the ephemeral range (asked of this tshark, so a newer one
    with more guessers is covered too), except :data:`OUR_PROTOCOLS`."""
    tshark = require_binary("tshark")
    heuristics = subprocess.run([tshark, "-G", "heuristic-decodes"], capture_output=True,
                                text=True, timeout=120, check=True).stdout
    decodes = subprocess.run([tshark, "-G", "decodes"], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    names: set[str] = set()
    for line in heuristics.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] == "udp" and fields[2] == "T":
            names.add(fields[1])
    for line in decodes.splitlines():
        fields = line.split("\t")
        if (len(fields) == 3 and fields[0] in ("udp.port", "tcp.port") and fields[1].isdigit()
                and int(fields[1]) >= EPHEMERAL_LOW):
            names.add(fields[2])
    args: list[str] = []
    for name in sorted(names - OUR_PROTOCOLS):
        args += ["--disable-protocol", name]
    return tuple(args)


def tshark_problems(path: Path) -> list[str]:
    """tshark's expert errors and warnings that mean a broken packet (it exits 0 regardless)."""
    tshark = require_binary("tshark")
    out = subprocess.run(
        [tshark, *quiet_guess_args(), "-r", str(path), "-o", "ip.check_checksum:TRUE",
         "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-z", "expert", "-q"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.strip() for line in out.splitlines()
            if any(word in line for word in ("Malformed", "checksum", "Checksum"))]


def tshark_count(path: Path) -> int:
    tshark = require_binary("tshark")
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.len"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return len(out.split())


def write_pcap(path: Path, frames: list[bytes]) -> None:
    """A classic pcap (Ethernet, microsecond stamps) of ``frames``, one per second, bytes as
    given: for checking that tshark reads what our builders made, untouched."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for index, raw in enumerate(frames):
            out.write(struct.pack("<IIII", index, 0, len(raw), len(raw)) + raw)
