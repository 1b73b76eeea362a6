"""``vipernet gateway``'s options: the layout they make, and one-line refusals (no root)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from vipernet.cli import cmd_gateway
from vipernet.slirp.config import Forward, SlirpConfig, SlirpConfigError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_gateway.register(parser.add_subparsers())
    return parser.parse_args(["gateway", *argv])


def gateway(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vipernet.cli.main", "gateway", *argv],
                          capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})


def test_another_prefix_moves_the_whole_libslirp_layout() -> None:
    config = cmd_gateway._slirp_config(parse("--qemu-stream", "x", "--net", "192.168.77.0/24",
                                             "--restrict", "--forward", "udp:5353:53",
                                             "--dns-upstream", "127.0.0.1:5300"))
    assert (config.gateway, config.dns) == (IPv4Address("192.168.77.2"),
                                            IPv4Address("192.168.77.3"))
    assert config.guest == IPv4Interface("192.168.77.15/24")
    assert config.restrict and config.dns_upstream == ("127.0.0.1", 5300)
    assert config.forwards == (Forward(host_port=5353, guest_port=53, protocol="udp"),)


def test_a_network_too_small_for_the_guest_address_is_refused() -> None:
    with pytest.raises(SlirpConfigError, match="too small"):
        SlirpConfig.for_network(IPv4Network("10.0.2.0/29"))


@pytest.mark.parametrize(("argv", "message"), [
    ((), "give at least one guest port"),
    (("--qemu-stream", "/tmp/x.sock", "--net", "10.0.2.1/24"), "bad --net"),
    (("--qemu-stream", "/tmp/x.sock", "--forward", "sctp:1:2"), "forward must be"),
    (("--qemu-dgram", "/tmp/only-one"), "--qemu-dgram needs LOCAL,REMOTE"),
    (("--qemu-stream", "/tmp/x.sock,sideways"), "unknown mode"),
])
def test_bad_options_are_one_line_and_status_1(argv: tuple[str, ...], message: str) -> None:
    result = gateway(*argv)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_socket_path_in_use_is_refused_not_replaced(tmp_path: Path) -> None:
    taken = tmp_path / "taken.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(taken))
        result = gateway("--qemu-stream", str(taken))
        assert result.returncode == 1 and "cannot listen" in result.stderr, result.stderr
        assert taken.exists()  # still the other program's
