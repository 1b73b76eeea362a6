"""The ``vipernet`` command: one subcommand per module in this package.

:data:`COMMANDS` names them, in the order --help lists them, with each one's module and
one-line help.  Each module defines ``register(subparsers) -> None``, which adds its parser
and sets ``func`` (``Callable[[argparse.Namespace], int]``, returning the exit status).

Start-up is kept small by design: :func:`main` imports only the module of the command it
runs (``vipernet --help`` imports none), and a module's top level and ``register`` define
arguments only - what a command needs to do its work (the netd client, HTTP, TLS, SSH,
cryptography) is imported by its ``run``.  ``tests/cli/test_startup.py`` holds the modules
to that; ``benchmarks/startup.py`` times it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from typing import NamedTuple


class Command(NamedTuple):
    name: str
    module: str
    help: str  # the line --help shows: the same text the module's register() passes


COMMANDS = (
    Command("netd", "vipernet.cli.cmd_netd", "run the network daemon on a device"),
    Command("ping", "vipernet.cli.cmd_ping", "send ICMP echo requests through netd"),
    Command("dig", "vipernet.cli.cmd_dig", "resolve a host name through netd"),
    Command("info", "vipernet.cli.cmd_info", "show netd's interface and configuration"),
    Command("stat", "vipernet.cli.cmd_stat", "list netd's sockets, like ss"),
    Command("fetch", "vipernet.cli.cmd_fetch", "fetch URLs over HTTP/1.1 or HTTPS (curl-like)"),
    Command("ssh", "vipernet.cli.cmd_ssh", "SSH client: remote command or interactive shell"),
    Command("sftp", "vipernet.cli.cmd_sftp", "SFTP client (interactive or batch)"),
    Command("run", "vipernet.cli.cmd_run", "run a program over netd"),
    Command("gateway", "vipernet.cli.cmd_gateway",
            "user-mode networking for QEMU guests, TAPs and namespaces"),
    Command("demo", "vipernet.cli.cmd_demo", "run the stack end to end on its default network"),
    Command("load", "vipernet.cli.cmd_load", "open many TCP connections from virtual hosts"),
)


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``vipernet`` parser.

    ``load`` names the subcommands whose modules are imported and registered (default:
    all of them); the others are listed by name and help alone, which is all that
    ``vipernet --help`` and an unknown command's error show of them.
    """
    parser = argparse.ArgumentParser(
        prog="vipernet",
        description="The ViperDOS networking stack: netd and the tools that use it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in COMMANDS:
        if load is None or entry.name in load:
            importlib.import_module(entry.module).register(sub)
        else:
            sub.add_parser(entry.name, help=entry.help)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The word of ``argv`` that argparse takes as COMMAND: the first that is not an option
    (the top-level parser's only option, -h, takes no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    word = command_word(arguments)
    parser = build_parser([word] if word is not None else [])
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        status: int = func(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
