"""``vipernet sftp``: an interactive or batch SFTP client.

    vipernet sftp [-P PORT] [-i KEY] [-o Option=value] [-b BATCHFILE] user@host

Commands: get REMOTE [LOCAL], put LOCAL [REMOTE], reget / reput (resume), ls [-l] [PATH],
cd PATH, pwd, lcd PATH, lpwd, mkdir PATH, rmdir PATH, rm PATH, rename OLD NEW,
ln -s TARGET LINK, chmod MODE PATH, help, exit/quit/bye.  In batch mode (``-b FILE``,
``-`` for stdin) the first failing command ends the session with status 1, as OpenSSH's
sftp does, unless the line starts with ``-``.  On a TTY, transfers show a progress bar.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from vipernet.cli.cmd_ssh import add_common_options, open_client_or_report

if TYPE_CHECKING:  # imported where used: vipernet.ssh brings cryptography (see main.py)
    from vipernet.ssh.sftp.client import SFTPClient

HELP = """get REMOTE [LOCAL]   download (reget: resume)
put LOCAL [REMOTE]   upload (reput: resume)
ls [-l] [PATH]       list a directory
cd PATH | pwd        change / show the remote directory
lcd PATH | lpwd      change / show the local directory
mkdir PATH | rmdir PATH | rm PATH | rename OLD NEW | ln -s TARGET LINK | chmod MODE PATH
exit | quit | bye"""


def register(sub: Any) -> None:
    parser = sub.add_parser("sftp", help="SFTP client (interactive or batch)")
    add_common_options(parser, "-P")
    parser.add_argument("-b", dest="batch", help="batch file of commands ('-' for stdin)")
    parser.add_argument("destination", help="[user@]host")
    parser.set_defaults(func=run)


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        pct = 100 * done / total if total else 100.0
        rate = done / max(now - self.start, 1e-6) / 1e6
        width = 30
        fill = int(width * pct / 100)
        sys.stderr.write(f"\r{self.name[:30]:30} [{'#' * fill}{'.' * (width - fill)}] "
                         f"{pct:5.1f}% {done / 1e6:9.1f} MB {rate:7.1f} MB/s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


class Shell:
    def __init__(self, sftp: SFTPClient, out: TextIO) -> None:
        self.sftp = sftp
        self.out = out
        self.progress = sys.stderr.isatty()
        sftp.getcwd()

    def remote(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.sftp.getcwd(), path)

    def run_line(self, line: str) -> bool:
        """Run one command; returns False on 'exit'.  Raises on failure."""
        words = shlex.split(line)
        if not words:
            return True
        cmd, args = words[0], words[1:]
        s = self.sftp
        if cmd in ("exit", "quit", "bye"):
            return False
        if cmd in ("get", "reget"):
            src = self.remote(args[0])
            dst = args[1] if len(args) > 1 else posixpath.basename(src)
            if os.path.isdir(dst):
                dst = os.path.join(dst, posixpath.basename(src))
            bar = Progress(posixpath.basename(src), self.progress)
            s.get(src, dst, resume=cmd == "reget", progress=bar)
            bar.finish()
        elif cmd in ("put", "reput"):
            src = args[0]
            dst = self.remote(args[1] if len(args) > 1 else os.path.basename(src))
            if s.isdir(dst):
                dst = posixpath.join(dst, os.path.basename(src))
            bar = Progress(os.path.basename(src), self.progress)
            s.put(src, dst, resume=cmd == "reput", progress=bar)
            bar.finish()
        elif cmd in ("ls", "dir"):
            long = "-l" in args
            paths = [a for a in args if not a.startswith("-")] or ["."]
            for entry in s.listdir_attr(self.remote(paths[0])):
                print(entry.longname if long and entry.longname else entry.filename,
                      file=self.out)
        elif cmd == "cd":
            s.chdir(self.remote(args[0] if args else "."))
        elif cmd == "pwd":
            print(f"Remote working directory: {s.getcwd()}", file=self.out)
        elif cmd == "lcd":
            os.chdir(os.path.expanduser(args[0] if args else "~"))
        elif cmd == "lpwd":
            print(f"Local working directory: {os.getcwd()}", file=self.out)
        elif cmd == "mkdir":
            s.mkdir(self.remote(args[0]))
        elif cmd == "rmdir":
            s.rmdir(self.remote(args[0]))
        elif cmd in ("rm", "del"):
            s.remove(self.remote(args[0]))
        elif cmd in ("rename", "mv"):
            s.rename(self.remote(args[0]), self.remote(args[1]))
        elif cmd in ("ln", "symlink"):
            rest = [a for a in args if a != "-s"]
            s.symlink(rest[0], self.remote(rest[1]))
        elif cmd == "chmod":
            s.chmod(self.remote(args[1]), int(args[0], 8))
        elif cmd in ("help", "?"):
            print(HELP, file=self.out)
        else:
            raise ValueError(f"unknown command {cmd!r} (try help)")
        return True


def run(args: argparse.Namespace) -> int:
    from vipernet.cli.netd_common import NETD_LOST, netd_gone, plain
    from vipernet.ssh.errors import SSHError
    from vipernet.ssh.sftp.protocol import SFTPError

    client = open_client_or_report(args, "sftp")
    if client is None:
        return 255
    try:
        with client.open_sftp() as sftp:
            shell = Shell(sftp, sys.stdout)
            batch = args.batch is not None
            source: TextIO = sys.stdin
            if batch and args.batch != "-":
                source = open(args.batch)  # noqa: SIM115
            interactive = not batch and sys.stdin.isatty()
            try:
                while True:
                    if interactive:
                        sys.stdout.write("sftp> ")
                        sys.stdout.flush()
                    line = source.readline()
                    if not line:
                        break
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    tolerate = line.startswith("-")
                    if tolerate:
                        line = line[1:]
                    if batch:
                        print(f"sftp> {line}", file=sys.stdout)
                    try:
                        if not shell.run_line(line):
                            break
                    except (SFTPError, OSError, ValueError, IndexError) as exc:
                        msg = exc if not isinstance(exc, IndexError) else "missing argument"
                        print(f"vipernet sftp: {line.split()[0]}: {msg}", file=sys.stderr)
                        if batch and not tolerate:
                            return 1
            finally:
                if source is not sys.stdin:
                    source.close()
        return 0
    except SSHError as exc:  # the connection (or netd) lost mid-session
        print(f"vipernet sftp: {NETD_LOST if netd_gone() else plain(str(exc))}",
              file=sys.stderr)
        return 255
    finally:
        client.close()

