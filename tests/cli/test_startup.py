"""``vipernet`` starts like a small tool: a command imports what it needs when it runs.

``python3 -X importtime`` lists every module a child ``vipernet`` imports; the ones imported
after ``site`` (the interpreter's own start-up, which may already bring certifi through a
.pth file) are the command's.  ``--help`` and the netd commands' help must not pull in the
TLS, HTTP or SSH code, cryptography, certifi, h11 or dnspython - nor, for help alone, the
netd client and the stack.  benchmarks/startup.py has the timings.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netd_rig import PEER, cli_env, memory_netd
from vipernet.cli.main import COMMANDS, build_parser, command_word

# What only fetch, ssh, sftp and demo need (rich: fetch's progress bar).
HEAVY = ("cryptography", "certifi", "h11", "dns", "rich",
         "vipernet.ssh", "vipernet.tls", "vipernet.http", "vipernet.dns")
# What a netd command needs only once it talks to netd.
CLIENT = ("vipernet.netclient", "vipernet.netd", "vipernet.stack", "vipernet.link")


def imported(*argv: str) -> list[str]:
    """The modules a child ``python3 -X importtime ARGV`` imports after ``site``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    names = [line.split("|")[2] for line in proc.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2]
    start = names.index(" site") + 1 if " site" in names else 0
    return [name.strip() for name in names[start:]]


def matching(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("argv", [["--help"], ["ping", "--help"], ["dig", "--help"],
                                  ["info", "--help"], ["stat", "--help"]],
                         ids=" ".join)
def test_help_imports_neither_the_heavy_packages_nor_the_netd_client(argv: list[str]) -> None:
    modules = imported("-m", "vipernet.cli.main", *argv)
    assert "argparse" in modules  # the parse found the lines it looks for
    assert matching(modules, HEAVY + CLIENT) == []


def test_every_command_registers_without_the_heavy_packages() -> None:
    # build_parser() imports every cmd_*.py: their top level and register() stay light.
    # (importtime does not list what importlib.import_module loads, only what that imports.)
    modules = imported("-c", "from vipernet.cli.main import build_parser; build_parser()")
    assert "vipernet.cli.netd_common" in modules and "vipernet.cli.demo_network" in modules
    assert matching(modules, HEAVY + CLIENT) == []


@pytest.fixture
def netd_path(tmp_path: Path) -> Iterator[str]:
    with memory_netd(tmp_path) as path:
        yield path


def test_the_netd_commands_run_without_the_heavy_packages(netd_path: str) -> None:
    # dig asks netd's resolver: the client needs no dnspython (the memory netd has no DNS
    # server, so the lookup fails, after the imports it made).
    for argv in (["info"], ["stat"], ["dig", "example.test"], ["ping", PEER, "-c", "1"]):
        modules = imported("-m", "vipernet.cli.main", *argv, "--socket", netd_path)
        assert "vipernet.netclient.client" in modules, argv
        assert matching(modules, HEAVY) == [], argv


def test_the_light_parser_lists_the_commands_as_the_full_one_does() -> None:
    full = build_parser()
    assert build_parser([]).format_help() == full.format_help()
    assert build_parser(["ping"]).format_help() == full.format_help()
    choices = full._subparsers._group_actions[0]._choices_actions  # type: ignore[union-attr]
    assert [(c.dest, c.help) for c in choices] == [(c.name, c.help) for c in COMMANDS]


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_a_command_loaded_alone_has_the_same_help(name: str) -> None:
    def command_help(parser: object) -> str:
        sub = parser._subparsers._group_actions[0]  # type: ignore[attr-defined]
        return str(sub.choices[name].format_help())

    assert command_help(build_parser([name])) == command_help(build_parser())


def test_the_command_word_is_the_first_that_is_not_an_option() -> None:
    assert command_word(["-h"]) is None
    assert command_word([]) is None
    assert command_word(["ping", "-c", "1", "host"]) == "ping"
    assert command_word(["--", "dig", "x"]) == "dig"
