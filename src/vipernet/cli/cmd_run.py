"""``vipernet run``: run a Python program with its stdlib sockets going through netd.

    vipernet run [--socket PATH] [--] python app.py ARGS...

The command is exec'd with ``VIPERNET_RUN=1``, ``VIPERNET_SOCKET`` and the
:mod:`vipernet.runhook` shim first on ``PYTHONPATH``: its ``sitecustomize`` swaps
``socket.socket`` (AF_INET stream/datagram), ``create_connection``, ``getaddrinfo`` and
``gethostbyname`` for vipernet's before the program starts, so ``http.client``,
``urllib.request``, ``urllib3``/``requests`` use the vipernet stack unchanged.  Not covered:
``select``/``asyncio`` on those sockets, ``ssl`` (https), IPv6, non-Python programs.
The exit status is the program's (127 if it cannot be started).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run a Python program over netd",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", dest="socket_path", default=None,
                        help="netd's IPC socket ($VIPERNET_SOCKET or /run/vipernet/netd.sock)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    parser.set_defaults(func=run)


def child_environment(env: dict[str, str], socket_path: str | None) -> dict[str, str]:
    """``env`` plus what the shim needs (its directory and vipernet's first on PYTHONPATH)."""
    from vipernet.runhook import ENV_FLAG, SHIM_DIR

    package_root = str(Path(__file__).resolve().parents[2])  # the dir holding vipernet/
    out = dict(env)
    paths = [SHIM_DIR, package_root] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and p not in (SHIM_DIR, package_root)]
    out["PYTHONPATH"] = os.pathsep.join(paths)
    out[ENV_FLAG] = "1"
    if socket_path:
        out["VIPERNET_SOCKET"] = socket_path
    return out


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("vipernet run: nothing to run (vipernet run -- python app.py)", file=sys.stderr)
        return 2
    env = child_environment(dict(os.environ), args.socket_path)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"vipernet run: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced us
