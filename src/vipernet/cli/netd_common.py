"""Helpers shared by the commands that talk to netd (ping, dig, info, stat).

Every one of them takes ``--socket PATH`` (default ``$VIPERNET_SOCKET`` or
``/run/vipernet/netd.sock``) and turns the usual failures into one line on stderr:
netd not running, permission denied, netd went away.  :func:`plain` is the wording the
other commands (fetch, ssh, sftp) use for those failures too.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import sys
from collections.abc import Callable
from typing import Any

EXIT_ERROR = 2  # iputils' status for "could not even try"

# What the netd client says when netd's end of the IPC socket goes away mid-operation.
_NETD_LOST_TEXTS = ("lost netd", "netd closed the channel")
NETD_LOST = "lost the connection to netd (stopped or killed?); start it again with 'vipernet netd'"
_ERRNO_TAG = re.compile(r"\[Errno -?\d+\] ")


def netd_lost(text: str) -> bool:
    return any(mark in text for mark in _NETD_LOST_TEXTS)


def plain(text: str) -> str:
    """``text`` for a person: without Python's ``[Errno N]`` tags (str() of an OSError, which
    the layers below embed in their messages), and a lost netd said as such with what to do
    rather than as the broken pipe or reset it showed up as."""
    if netd_lost(text):
        return NETD_LOST
    return _ERRNO_TAG.sub("", text)


def netd_gone(socket_path: str | None = None) -> bool:
    """True when the netd the command used no longer answers on its socket.

    A connection over netd's fd data plane ends in a plain EOF whether the server closed
    it or netd died; asking netd's socket tells the two apart, so the user hears that
    netd is gone rather than that the server hung up."""
    import os

    from vipernet.netclient import client, default

    if os.environ.get("VIPERNET_TRANSPORT", "netd") == "os" or (
            socket_path is None and default.kernel_mode()):
        return False
    try:
        probe = client.connect(socket_path)
    except OSError:
        return True
    probe.close_channel()
    return False


def add_socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", dest="socket_path", default=None,
                        help="netd's IPC socket ($VIPERNET_SOCKET or /run/vipernet/netd.sock)")


def open_client(args: argparse.Namespace) -> Any:
    """A NetClient for the configured netd (or the in-process stack in kernel mode)."""
    from vipernet.netclient import client, default

    if args.socket_path is None and default.kernel_mode():
        return default.default_client()
    return client.connect(args.socket_path)


def describe(exc: BaseException) -> str:
    """One line for an error a netd command hit."""
    if isinstance(exc, PermissionError):
        return f"not permitted: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) and "netd" not in text:
            text = f"netd is not running ({text})"
        return plain(text)
    return plain(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__


def fail(prog: str, exc: BaseException) -> int:
    print(f"{prog}: {describe(exc)}", file=sys.stderr)
    return EXIT_ERROR


def print_report(args: argparse.Namespace, prog: str, fetch: Callable[[Any], dict[str, Any]],
                 render: Callable[[dict[str, Any]], str]) -> int:
    """Fetch a JSON report from netd and print it: raw with ``--json``, else rendered."""
    try:
        report = fetch(open_client(args))
    except OSError as exc:
        return fail(prog, exc)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render(report))
    return 0
