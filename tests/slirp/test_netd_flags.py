"""``vipernet netd --restrict --forward tcp:HOST:GUEST``: the issue's flags for the user link.

The flags map onto the link options (``--link user:restrict,forward=...``), which keep
working; netd with no ``--link`` at all is on the user link (no root, no TAP).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.slirp.netd_proc import cli, info, start_netd_on_a_free_port
from tests.slirp.rig import HostServer
from tests.slirp.test_cli_user import assert_forward_reaches_a_guest_listener
from tests.testbed import stop_process
from vipernet.cli import cmd_netd
from vipernet.slirp import SlirpConfig
from vipernet.slirp.config import Forward, SlirpConfigError


def netd_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vipernet")
    cmd_netd.register(parser.add_subparsers())
    return parser.parse_args(["netd", *argv])


def link_of(*argv: str) -> str:
    return str(cmd_netd._config(netd_args(*argv)).link)


def test_no_link_given_means_the_user_link() -> None:
    assert link_of() == "user"


def test_restrict_and_repeated_forwards_become_user_link_options() -> None:
    link = link_of("--restrict", "--forward", "tcp:8080:80", "--forward", "tcp:2222:22")
    assert link == "user:restrict,forward=tcp:8080:80,forward=tcp:2222:22"
    config = SlirpConfig.from_argument(link.partition(":")[2])
    assert config.restrict
    assert config.forwards == (Forward(host_port=8080, guest_port=80),
                               Forward(host_port=2222, guest_port=22))


def test_flags_add_to_options_already_on_the_link() -> None:
    link = link_of("--link", "user:dns=127.0.0.1:5353", "--forward", "tcp:1:2")
    assert link == "user:dns=127.0.0.1:5353,forward=tcp:1:2"
    assert link_of("--link", "user:restrict") == "user:restrict"


def test_restrict_on_another_link_kind_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="need --link user"):
        cmd_netd._config(netd_args("--link", "tap:vt0", "--restrict"))


@pytest.mark.parametrize("bad", ["sctp:53:53", "tcp:x:80", "tcp:80", "tcp:80:0"])
def test_a_malformed_forward_is_reported(bad: str) -> None:
    with pytest.raises(SlirpConfigError, match="forward"):
        cmd_netd._config(netd_args("--forward", bad))


def test_netd_exits_with_one_line_for_a_bad_forward(tmp_path: Path) -> None:
    result = cli("netd", "--forward", "sctp:1:2", "--socket", str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.startswith("vipernet netd: forward must be tcp:HOSTPORT:GUESTPORT or udp:")
    assert "Traceback" not in result.stderr


def test_netd_with_the_flags_forwards_a_host_port_and_restricts_the_guest(
        tmp_path: Path) -> None:
    from vipernet.netclient import client as netclient
    from vipernet.netclient.sockets import socket as vsocket

    sock = str(tmp_path / "netd.sock")
    server = HostServer(lambda conn: conn.sendall(b"loopback still reachable"))
    proc, host_port = start_netd_on_a_free_port(
        sock, lambda port: ["--restrict", "--forward", f"tcp:{port}:8080"])
    try:
        assert info(sock)["link"] == f"user:restrict,forward=tcp:{host_port}:8080"
        with netclient.connect(sock) as nc:
            assert_forward_reaches_a_guest_listener(nc, host_port, 8080)  # --forward
            # --restrict: host loopback (10.0.2.2) is reachable, anything else is refused
            with vsocket(client=nc) as ok:
                ok.settimeout(20)
                ok.connect(("10.0.2.2", server.port))
                assert ok.recv(100) == b"loopback still reachable"
            with vsocket(client=nc) as refused:
                refused.settimeout(20)
                with pytest.raises(ConnectionRefusedError):
                    refused.connect(("192.0.2.1", 80))  # TEST-NET: never leaves the gateway
    finally:
        stop_process(proc)
        server.close()
