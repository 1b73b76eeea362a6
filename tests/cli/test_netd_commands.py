"""vipernet netd/ping/dig/info/stat: output formats, exit codes and one-line errors.

The commands run in-process (``vipernet.cli.main.main``) against a netd whose device is a
memory link to a peer stack, so no root is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netd_rig import PEER, memory_netd
from vipernet.cli import cmd_info, cmd_ping, cmd_stat
from vipernet.cli.main import main


@pytest.fixture
def netd_path(tmp_path: Path) -> Iterator[str]:
    with memory_netd(tmp_path, name="mem0") as path:
        yield path


def test_rtt_is_formatted_like_iputils() -> None:
    assert [cmd_ping.format_rtt(x) for x in (0.04512, 1.234, 12.34, 123.4)] == [
        "0.045", "1.23", "12.3", "123"]


def test_statistics_with_replies_has_loss_and_rtt_lines() -> None:
    text = cmd_ping.statistics("10.0.2.2", 5, [1.0, 2.0, 3.0, 2.0], 0, 4004.2)
    assert text.splitlines() == [
        "--- 10.0.2.2 ping statistics ---",
        "5 packets transmitted, 4 received, 20% packet loss, time 4004ms",
        "rtt min/avg/max/mdev = 1.000/2.000/3.000/0.707 ms",
    ]


def test_statistics_without_replies_has_no_rtt_line_and_counts_errors() -> None:
    text = cmd_ping.statistics("h", 2, [], 2, 2001)
    assert text.splitlines()[1] == ("2 packets transmitted, 0 received, +2 errors, "
                                    "100% packet loss, time 2001ms")
    assert "rtt" not in text


def test_ping_prints_replies_and_statistics(netd_path: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ping", PEER, "-c", "3", "-i", "0.05", "--socket", netd_path])
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"PING {PEER} ({PEER}) 56(84) bytes of data.\n")
    assert len(re.findall(rf"^64 bytes from {PEER}: icmp_seq=\d ttl=64 time=[\d.]+ ms$", out,
                          re.M)) == 3
    assert "3 packets transmitted, 3 received, 0% packet loss" in out


def test_ping_with_large_payload_reports_its_size(netd_path: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", PEER, "-c", "1", "-s", "8000", "--socket", netd_path]) == 0
    assert f"8008 bytes from {PEER}: icmp_seq=1" in capsys.readouterr().out


def test_ping_of_a_silent_host_exits_one(netd_path: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ping", "10.0.2.77", "-c", "1", "-W", "0.3", "--socket", netd_path])
    assert status == 1
    assert "1 packets transmitted, 0 received" in capsys.readouterr().out


def test_info_json_and_text_show_the_defaults(netd_path: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json", "--socket", netd_path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["ip"], info["prefix"], info["gateway"], info["mac"]) == (
        "10.0.2.15", 24, "10.0.2.2", "52:54:00:12:34:56")
    text = cmd_info.render(info, counters=True)
    assert "ipv4      10.0.2.15/24 (netmask 255.255.255.0)" in text
    assert "counters:" in text


def test_stat_renders_a_table_row_per_socket() -> None:
    report = {"sockets": [{"id": 3, "client": 1, "pid": 42, "kind": "udp",
                           "local": "0.0.0.0:5000", "remote": None, "state": "open",
                           "recv_queue": 0, "send_queue": 0, "waiting": 1}],
              "clients": [{"client": 1}]}
    lines = cmd_stat.render(report).splitlines()
    assert lines[0].split() == ["ID", "CLIENT", "PID", "KIND", "LOCAL", "REMOTE", "STATE",
                                "RECV-Q", "SEND-Q", "PARKED", "STALLED", "FD", "COMMAND"]
    assert lines[1].split() == ["3", "1", "42", "udp", "0.0.0.0:5000", "*", "open", "0", "0",
                                "1", "-", "-", "-"]
    assert lines[-1] == "1 sockets, 1 clients"


def test_stat_i_adds_an_ss_ti_line_under_each_tcp_connection() -> None:
    tcp = {"snd_una": 1000, "snd_nxt": 5000, "snd_wnd": 65535, "cwnd": 14600,
           "ssthresh": 29200, "rcv_wnd": 131072, "out_of_order": 0, "unread": 10,
           "srtt_ms": 0.42, "rto_ms": 200.0, "backoff": 0, "retransmits": 3,
           "in_recovery": True}
    report = {"sockets": [{"id": 4, "kind": "tcp", "state": "ESTAB", "tcp": tcp},
                          {"id": 5, "kind": "udp", "state": "UNCONN"}],
              "clients": []}
    lines = cmd_stat.render(report, info=True).splitlines()
    assert lines[2].split() == ["srtt:0.42ms", "rto:200.0ms", "backoff:0", "cwnd:14600",
                                "ssthresh:29200", "retrans:3", "unacked:4000",
                                "snd_wnd:65535", "rcv_wnd:131072", "ooo:0", "unread:10",
                                "recovery"]
    assert len(lines) == 5  # header, tcp row + its line, udp row (no line), summary
    assert "srtt" not in cmd_stat.render(report)


def test_stat_shows_how_long_a_connection_has_stalled() -> None:
    report = {"sockets": [{"id": 4, "client": 1, "pid": 42, "kind": "tcp",
                           "local": "10.0.2.15:40000", "remote": "10.0.2.2:80",
                           "state": "ESTAB", "recv_queue": 0, "send_queue": 4096,
                           "waiting": 2, "stalled": 12.5, "fd": True,
                           "command": "curl -s http://10.0.2.2/"}],
              "clients": [{"client": 1}]}
    row = cmd_stat.render(report).splitlines()[1].split()
    assert row[-6:] == ["2", "12.5", "fd", "curl", "-s", "http://10.0.2.2/"]


def test_stat_command_runs_against_netd(netd_path: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stat", "--socket", netd_path]) == 0
    assert "RECV-Q" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["ping", "10.0.2.2", "-c", "1"], ["dig", "example.test"],
                                     ["info"], ["stat"]])
def test_commands_say_netd_is_not_running_in_one_line(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main([*command, "--socket", str(tmp_path / "absent.sock")])
    err = capsys.readouterr().err
    assert status == 2
    assert "netd is not running" in err and len(err.strip().splitlines()) == 1


def test_dig_rejects_unknown_plus_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dig", "example.test", "+trace"]) == 2
    assert "unknown option +trace" in capsys.readouterr().err


def test_dig_without_dns_servers_fails_cleanly(netd_path: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dig", "example.test", "--socket", netd_path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vipernet dig: example.test:") and "Traceback" not in err


def test_netd_with_an_unknown_link_kind_fails_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["netd", "--link", "warp:drive", "--socket", str(tmp_path / "s")])
    assert status == 1
    assert "unknown link kind 'warp'" in capsys.readouterr().err


def test_netd_on_a_missing_interface_fails_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["netd", "--link", "tap:vnnosuch0", "--socket", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("vipernet netd: ") and len(err.strip().splitlines()) == 1
    assert "no such interface: vnnosuch0" in err
    assert not (tmp_path / "s").exists()
