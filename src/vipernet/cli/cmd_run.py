"""``vipernet run``: run a program with its sockets and name lookups going through netd.

    vipernet run [--socket PATH] [--] COMMAND ARGS...

The command is exec'd with ``VIPERNET_RUN=1``, ``VIPERNET_SOCKET`` and two hooks:

* Python programs: the :mod:`vipernet.runhook` shim first on ``PYTHONPATH``; its
  ``sitecustomize`` swaps ``socket.socket`` (AF_INET/AF_INET6 stream/datagram),
  ``create_connection``, ``getaddrinfo`` and ``gethostbyname`` for vipernet's before the
  program starts, so ``http.client``, ``urllib.request``, ``urllib3``/``requests`` use the
  vipernet stack unchanged.
* Every dynamically linked program (curl, wget, nc, git, ssh...): ``LD_PRELOAD`` of
  ``build/libvipernet_preload.so`` (``src/vipernet/preload/vipernet_preload.c``, built by
  ``make setup``; ``$VIPERNET_PRELOAD`` names another copy), which routes libc's AF_INET
  and AF_INET6 TCP/UDP socket calls and name lookups to netd.  The two never both route
  one socket: the shim's sockets reach netd over AF_UNIX, which the library leaves alone.

Not covered: static binaries and Go programs (no libc calls to interpose: a warning is
printed), raw and ping sockets, setuid/setcap programs (the loader ignores LD_PRELOAD for
them).  The exit status is the program's (127 if it cannot be
started, 1 if the library is not built).

``--netns`` is another mode, with no netd and no hooks (:mod:`vipernet.gateway.netns_run`):

    vipernet run --netns [--dns IP[:PORT]] [--mtu N] [--forward tcp|udp:HOST:PORT]
                 -- COMMAND ARGS...
    vipernet run --netns PID|PATH [--dns IP[:PORT]] [--mtu N]

The first runs COMMAND in new user, network and mount namespaces (no root needed) whose
only interface is a TAP served by vipernet's user-mode gateway, so static binaries, Go
programs and container runtimes get a network too; its exit status is COMMAND's.  The
second gives an existing namespace (a process's, or a path such as /proc/PID/ns/net or an
``ip netns`` name) that TAP, served until the namespace goes away, and runs nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

PRELOAD_NAME = "libvipernet_preload.so"
PRELOAD_ENV = "VIPERNET_PRELOAD"  # another copy of the library (an installed vipernet)
NEW_NAMESPACE = ""  # --netns without a value: make a new namespace for COMMAND


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run a program over netd",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", dest="socket_path", default=None,
                        help="netd's IPC socket ($VIPERNET_SOCKET or /run/vipernet/netd.sock)")
    parser.add_argument("--netns", nargs="?", const=NEW_NAMESPACE, default=None,
                        metavar="PID|PATH",
                        help="no netd: run COMMAND in a new rootless network namespace "
                             "served by the user-mode gateway; with PID|PATH, serve that "
                             "existing namespace instead (and run nothing)")
    parser.add_argument("--dns", default=None, metavar="IP[:PORT]",
                        help="with --netns: where 10.0.2.3's DNS queries go "
                             "(default: the host's resolv.conf)")
    parser.add_argument("--mtu", type=int, default=None,
                        help="with --netns: the MTU of the namespace's TAP (default 1500)")
    parser.add_argument("--forward", action="append", default=[],
                        metavar="tcp|udp:HOSTPORT:PORT",
                        help="with --netns: carry host 127.0.0.1:HOSTPORT to PORT inside the "
                             "namespace (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    parser.set_defaults(func=run)


def preload_library(env: dict[str, str] | None = None) -> Path:
    """Where the LD_PRELOAD library is: ``$VIPERNET_PRELOAD``, else what ``make setup``
    builds in the source tree (``build/`` next to ``src/``)."""
    override = (env if env is not None else os.environ).get(PRELOAD_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "build" / PRELOAD_NAME


def child_environment(env: dict[str, str], socket_path: str | None,
                      preload: str | None = None) -> dict[str, str]:
    """``env`` plus what the hooks need: the shim (and vipernet) first on PYTHONPATH, the
    flag, the socket (absolute: the program may change directory before its first
    socket), and ``preload`` first on LD_PRELOAD."""
    from vipernet.runhook import ENV_FLAG, SHIM_DIR

    package_root = str(Path(__file__).resolve().parents[2])  # the dir holding vipernet/
    out = dict(env)
    paths = [SHIM_DIR, package_root] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and p not in (SHIM_DIR, package_root)]
    out["PYTHONPATH"] = os.pathsep.join(paths)
    out[ENV_FLAG] = "1"
    if socket_path:
        out["VIPERNET_SOCKET"] = os.path.abspath(socket_path)
    if preload:
        # ld.so splits LD_PRELOAD on spaces and colons; ours goes first, others stay.
        others = [p for p in out.get("LD_PRELOAD", "").replace(":", " ").split()
                  if p != preload]
        out["LD_PRELOAD"] = " ".join([preload, *others])
    return out


def bypass_warning(command: str, path_env: str | None) -> str | None:
    """Why ``command`` would not be routed by the library (a static or a Go binary), or
    None.  Only the program started is looked at, not what it runs."""
    path = shutil.which(command, path=path_env)
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None  # a script, or not a 64-bit little-endian ELF: not judged
            phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", head,
                                                                               0x36)
            handle.seek(phoff)
            headers = handle.read(phentsize * phnum)
            dynamic = any(struct.unpack_from("<I", headers, i * phentsize)[0] == 3  # INTERP
                          for i in range(phnum))
            if not dynamic:
                return (f"{path} is statically linked: its sockets do not go through "
                        "libc's dynamic symbols, so vipernet cannot route them (they would "
                        "use the host's network)")
            handle.seek(shoff)
            sections = handle.read(shentsize * shnum)
            if shnum and shstrndx < shnum:
                names_at, names_size = struct.unpack_from("<QQ", sections,
                                                          shstrndx * shentsize + 0x18)
                handle.seek(names_at)
                names = handle.read(min(names_size, 1 << 16))
                if b".go.buildinfo\0" in names:
                    return (f"{path} is a Go program: Go makes its own socket system "
                            "calls, so vipernet cannot route them (they would use the "
                            "host's network)")
    except (OSError, struct.error):
        return None
    return None


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.netns is not None:
        return run_netns(args.netns, command, dns=args.dns, mtu=args.mtu,
                         socket_path=args.socket_path, forwards=args.forward)
    if args.dns is not None or args.mtu is not None or args.forward:
        print("vipernet run: --dns, --mtu and --forward only go with --netns", file=sys.stderr)
        return 2
    if not command:
        print("vipernet run: nothing to run (vipernet run -- curl http://10.0.2.2/)",
              file=sys.stderr)
        return 2
    library = preload_library()
    if not library.is_file():
        print(f"vipernet run: the LD_PRELOAD library for non-Python programs is not built "
              f"({library} is missing): run make setup", file=sys.stderr)
        return 1
    env = child_environment(dict(os.environ), args.socket_path, str(library.resolve()))
    warning = bypass_warning(command[0], env.get("PATH"))
    if warning is not None:
        print(f"vipernet run: warning: {warning}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"vipernet run: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced us


def run_netns(target: str, command: list[str], *, dns: str | None, mtu: int | None,
              socket_path: str | None, forwards: list[str] | None = None) -> int:
    """``--netns``: COMMAND in a new namespace, or (``target`` given) serve that one."""
    def usage(text: str) -> int:
        print(f"vipernet run: {text}", file=sys.stderr)
        return 2

    if socket_path is not None:
        return usage("--socket is for netd; --netns needs no netd")
    if target and command:
        return usage(f"--netns {target} serves an existing namespace and runs nothing; to "
                     "run a command in a new one: vipernet run --netns -- COMMAND")
    if not target and not command:
        return usage("nothing to run (vipernet run --netns -- curl http://10.0.2.2/)")
    if mtu is not None and not 576 <= mtu <= 65521:
        return usage(f"--mtu {mtu}: want 576..65521")

    from vipernet.errors import VipernetError
    from vipernet.gateway.netns_run import NetnsOptions, attach, run_in_new_namespace
    from vipernet.slirp.config import SlirpConfig

    def say(text: str) -> None:
        print(f"vipernet run: {text}", file=sys.stderr, flush=True)

    try:
        upstream = SlirpConfig.from_argument(f"dns={dns}").dns_upstream if dns else None
    except VipernetError as exc:
        return usage(f"--dns: {exc}")
    try:
        parsed = SlirpConfig.from_argument(",".join(f"forward={f}" for f in forwards or ()))
    except VipernetError as exc:
        return usage(f"--forward: {exc}")
    options = NetnsOptions(mtu=mtu or 1500, dns_upstream=upstream, forwards=parsed.forwards)
    try:
        if target:
            return attach(target, options, say)
        return run_in_new_namespace(command, options, lambda text: say(f"warning: {text}"))
    except VipernetError as exc:
        say(str(exc))
        return 1
