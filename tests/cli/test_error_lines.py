"""Every netd-facing command fails with one clear line and a non-zero status, never a traceback.

Covers the three failures the issue names - netd not running (see test_netd_commands),
no such interface, not permitted - plus bad arguments and host names DNS cannot carry.
"Not permitted" is made real: as root, the command runs under ``setpriv`` without the
capability that would let root override the refusal.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netd_rig import cli_env, memory_netd
from tests.testbed import TestBed, wait_for
from vipernet.cli.main import main
from vipernet.netclient.client import dns_name


@pytest.fixture
def netd_path(tmp_path: Path) -> Iterator[str]:
    with memory_netd(tmp_path) as path:
        yield path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def without(*capabilities: str) -> list[str]:
    """argv prefix that runs a command as root minus ``capabilities`` (nothing if not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is missing")
    return [setpriv, "--bounding-set=" + ",".join(f"-{c}" for c in capabilities)]


@pytest.mark.parametrize(("argv", "expected"), [
    (["ping", "10.0.2.2", "-c", "0"], "vipernet ping: invalid -c 0: must be at least 1"),
    (["ping", "10.0.2.2", "-s", "70000"], "vipernet ping: invalid -s 70000: out of range"),
    (["ping", "10.0.2.2", "-i", "-1"], "vipernet ping: -i must not be negative"),
    (["ping", "a" * 260, "-c", "1"], "invalid host name (length not in 1..253)"),
    (["dig", ""], "vipernet dig: '': invalid host name (length not in 1..253)"),
    (["dig", "x" * 64 + ".test"], "invalid host name (label empty or too long)"),
    (["dig", "a..test"], "invalid host name (label empty or too long)"),
    (["dig", "ü" * 70 + ".test"], "invalid host name (not encodable as IDNA)"),
    (["dig", "one.test", "two.test"], "vipernet dig: give exactly one NAME"),
])
def test_bad_arguments_and_names_are_one_line_with_status_two(
        argv: list[str], expected: str, netd_path: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    status = main([*argv, "--socket", netd_path])
    line = one_line(capsys.readouterr().err)
    assert status == 2
    assert expected in line


def test_non_ascii_names_go_out_as_idna_like_getaddrinfo() -> None:
    assert dns_name("bücher.test") == "xn--bcher-kva.test"
    assert dns_name("example.test.") == "example.test."


def test_a_non_ascii_name_reaches_netd_and_fails_there_in_one_line(
        netd_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The memory netd has no DNS server: the name got through encoding to netd's answer.
    assert main(["ping", "bücher.test", "-c", "1", "--socket", netd_path]) == 2
    assert one_line(capsys.readouterr().err) == (
        "vipernet ping: bücher.test: no DNS server configured")


@pytest.mark.parametrize("command", [["info"], ["stat"], ["dig", "example.test"],
                                     ["ping", "10.0.2.2", "-c", "1"]])
def test_a_socket_we_may_not_use_is_not_permitted_in_one_line(command: list[str],
                                                               tmp_path: Path) -> None:
    path = str(tmp_path / "netd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    os.chmod(path, 0)
    try:
        result = subprocess.run(
            [*without("dac_override", "dac_read_search"), sys.executable, "-m",
             "vipernet.cli.main", *command, "--socket", path],
            env=cli_env(), capture_output=True, text=True, timeout=60)
    finally:
        listener.close()
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert line.startswith(f"vipernet {command[0]}: not permitted: ")
    assert path in line


@pytest.mark.testbed
def test_netd_on_a_tap_it_may_not_attach_is_not_permitted_in_one_line() -> None:
    with TestBed("np") as bed:
        tap = f"{bed.tap}x"[-15:]
        bed.ns(["ip", "tuntap", "add", "dev", tap, "mode", "tap", "user", "4242"])
        sock = str(bed.workdir / "netd.sock")
        result = subprocess.run(
            bed.ns_argv([*without("net_admin"), sys.executable, "-m", "vipernet.cli.main",
                         "netd", "--link", f"tap:{tap}", "--socket", sock]),
            env=cli_env(), capture_output=True, text=True, timeout=60)
        line = one_line(result.stderr)
        assert result.returncode == 1
        assert line.startswith(f"vipernet netd: cannot attach to {tap}: permission denied")
        assert not os.path.exists(sock)


@pytest.mark.testbed
def test_netd_on_a_missing_tap_in_a_namespace_names_both(tmp_path: Path) -> None:
    with TestBed("ni") as bed:
        result = subprocess.run(
            [sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
             f"tap:vnabsent0@{bed.name}", "--socket", str(tmp_path / "s")],
            env=cli_env(), capture_output=True, text=True, timeout=60)
        line = one_line(result.stderr)
        assert result.returncode == 1
        assert "no such interface: vnabsent0" in line and bed.name in line


@pytest.mark.parametrize(("option", "value"), [
    ("--ip", "10.0.2.300/24"), ("--ip", "10.0.2.15/33"), ("--gateway", "abc"),
    ("--dns", "10.0.2.3,1.2.3"), ("--mac", "52:54:00"),
])
def test_netd_names_the_bad_option_in_one_line(option: str, value: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["netd", "--link", "user", "--socket", str(tmp_path / "s"), option, value])
    line = one_line(capsys.readouterr().err)
    assert status == 1
    assert line.startswith(f"vipernet netd: bad {option} {value!r}")
    assert not (tmp_path / "s").exists()


@pytest.mark.testbed
def test_netd_whose_tap_vanishes_stops_at_once_in_one_line() -> None:
    with TestBed("vt") as bed:
        sock = bed.workdir / "netd.sock"
        err = bed.workdir / "netd.err"
        with open(err, "wb") as stderr:
            proc = bed.start([sys.executable, "-m", "vipernet.cli.main", "netd", "--link",
                              f"tap:{bed.tap}", "--socket", str(sock)], env=cli_env(),
                             stderr=stderr)
        wait_for(lambda: sock.exists() or proc.poll() is not None, what="netd serving")
        bed.ns(["ip", "link", "del", bed.tap])
        assert proc.wait(timeout=20) == 1
        text = err.read_text()
        assert text.strip().splitlines()[-1].startswith(
            f"vipernet netd: the link went away: {bed.tap}: "), text
        assert "Traceback" not in text
        assert not sock.exists()
