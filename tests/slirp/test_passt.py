"""``--link passt``: netd starts Debian's passt, takes its address by DHCP, fetches through it."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from ipaddress import IPv4Address, IPv4Interface

import pytest

from tests.slirp.nsrig import Namespace
from tests.testbed import require_binary, wait_for
from vipernet.netd.links import LinkSpec, parse_link
from vipernet.slirp.passt import PasstError, passt_argv


def test_the_passt_command_line_is_ipv4_one_client_foreground() -> None:
    argv = passt_argv("/usr/bin/passt", "/tmp/s", address=IPv4Interface("10.0.2.20/24"),
                      gateway=IPv4Address("10.0.2.2"), dns=IPv4Address("10.0.2.3"),
                      as_root=True)
    assert argv == ["/usr/bin/passt", "-f", "-e", "-4", "-1", "--runas", "0:0", "-s", "/tmp/s",
                    "-a", "10.0.2.20", "-n", "24", "-g", "10.0.2.2", "-D", "10.0.2.3"]
    assert "--runas" not in passt_argv("passt", "/tmp/s", as_root=False)


def test_link_passt_parses_with_or_without_an_address() -> None:
    assert parse_link("passt") == LinkSpec(kind="passt", argument="")
    assert parse_link("passt:10.0.2.20/24") == LinkSpec(kind="passt", argument="10.0.2.20/24")


def test_a_passt_that_exits_at_once_is_a_typed_error() -> None:
    from vipernet.slirp.passt import PasstDevice

    with pytest.raises(PasstError, match=r"passt exited with status 1"):
        PasstDevice.start(binary="/bin/false", timeout=2.0)


@pytest.mark.testbed
def test_netd_on_passt_takes_its_address_by_dhcp_and_fetches_from_host_loopback() -> None:
    require_binary("passt")
    with Namespace("pst") as ns:
        blob = os.urandom(3 * 1024 * 1024)
        (ns.workdir / "blob").write_bytes(blob)
        ns.start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                  str(ns.workdir), "8080"])
        sock = str(ns.workdir / "netd.sock")
        ns.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                  "passt:10.0.2.20/24", "--ip", "dhcp", "--socket", sock], env=ns.env())
        wait_for(lambda: os.path.exists(sock), timeout=30, what="netd's socket")
        wait_for(lambda: ns.run(["ss", "-Hltn", "sport = :8080"]).stdout.strip() != "",
                 what="http.server")
        info = ns.vipernet("info", "--json", "--socket", sock)
        assert info.returncode == 0, info.stderr
        report = json.loads(info.stdout)
        assert report["ip"] == "10.0.2.20" and report["prefix"] == 24  # from passt's DHCP
        assert report["gateway"] == "10.0.2.2" and report["dns"] == ["10.0.2.3"]
        out = ns.workdir / "out"
        fetched = ns.vipernet("fetch", "-s", "-o", str(out), "http://10.0.2.2:8080/blob",
                              env=ns.env(VIPERNET_SOCKET=sock))
        assert fetched.returncode == 0, fetched.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()


@pytest.mark.testbed
def test_netd_attaches_to_a_running_passt_by_its_socket_path() -> None:
    passt = require_binary("passt")
    with Namespace("psq") as ns:
        blob = os.urandom(1024 * 1024)
        (ns.workdir / "blob").write_bytes(blob)
        ns.start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                  str(ns.workdir), "8080"])
        passt_sock = ns.workdir / "passt.sock"
        ns.start(passt_argv(passt, str(passt_sock), address=IPv4Interface("10.0.2.30/24")))
        wait_for(passt_sock.exists, timeout=30, what="passt's socket")
        sock = str(ns.workdir / "netd.sock")
        ns.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                  f"qemu-stream:{passt_sock}", "--ip", "dhcp", "--socket", sock], env=ns.env())
        wait_for(lambda: os.path.exists(sock), timeout=30, what="netd's socket")
        wait_for(lambda: ns.run(["ss", "-Hltn", "sport = :8080"]).stdout.strip() != "",
                 what="http.server")
        info = ns.vipernet("info", "--json", "--socket", sock)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["ip"] == "10.0.2.30"  # from that passt's DHCP
        out = ns.workdir / "out"
        fetched = ns.vipernet("fetch", "-s", "-o", str(out), "http://10.0.2.2:8080/blob",
                              env=ns.env(VIPERNET_SOCKET=sock))
        assert fetched.returncode == 0, fetched.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
