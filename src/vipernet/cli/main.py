"""The ``vipernet`` command: one subcommand per module in this package.

Each subcommand module defines ``register(subparsers) -> None``, which adds its parser and
sets ``func`` (``Callable[[argparse.Namespace], int]``, returning the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in the order --help lists them.
COMMANDS = ("netd", "ping", "dig", "info", "stat", "fetch", "ssh", "sftp", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vipernet",
        description="The ViperDOS networking stack: netd and the tools that use it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vipernet.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"vipernet.cli.cmd_{name}":
                raise
            continue  # not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
