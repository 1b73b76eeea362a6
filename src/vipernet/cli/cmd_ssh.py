"""``vipernet ssh``: run a remote command (exit status passed through) or an interactive shell.

    vipernet ssh [-p PORT] [-i KEY] [-o StrictHostKeyChecking=ask|yes|accept-new|no]
                 [-o UserKnownHostsFile=PATH] [-t] user@host [command ...]

The connection goes through netd (``vipernet.netclient.transport.connect``) unless
``VIPERNET_TRANSPORT=os``.  Without a command: a shell on a pty, the local terminal in raw
mode, window size changes forwarded on SIGWINCH.  Exit status: the remote command's, 255
on connection or authentication errors (as OpenSSH).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import select
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: vipernet.ssh brings cryptography (see main.py)
    from vipernet.ssh.client import SSHClient

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


def add_common_options(parser: argparse.ArgumentParser, port_flag: str) -> None:
    parser.add_argument(port_flag, dest="port", type=int, default=22, help="server port")
    parser.add_argument("-i", dest="identity", action="append", default=[],
                        help="private key file (repeatable)")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        help="Option=value (StrictHostKeyChecking, UserKnownHostsFile, "
                             "ConnectTimeout, ServerAliveInterval, PasswordAuthentication)")


def register(sub: Any) -> None:
    parser = sub.add_parser("ssh", help="SSH client: remote command or interactive shell")
    add_common_options(parser, "-p")
    parser.add_argument("-t", dest="force_tty", action="store_true",
                        help="request a pty even with a command")
    parser.add_argument("destination", help="[user@]host")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="remote command")
    parser.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            key, _, value = item.partition(" ")
        out[key.strip().lower()] = value.strip()
    return out


def _ask(question: str) -> bool:
    """Ask on the controlling terminal (not stdin, which may carry data or a batch)."""
    try:
        # Unbuffered binary: a tty is not seekable, which text mode "r+" would require.
        with open("/dev/tty", "r+b", buffering=0) as tty_file:
            tty_file.write(question.encode())
            answer = tty_file.readline()
    except OSError:
        return False
    return answer.strip().lower() in (b"yes", b"y")


def destination(args: argparse.Namespace) -> tuple[str, str]:
    """(user, host) of ``[user@]host``; the user defaults to ours, as OpenSSH's does."""
    user, _, host = args.destination.rpartition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [fd0a:2::2], as OpenSSH also takes an IPv6 address
    return user or getpass.getuser(), host


def connect_failure(host: str, port: int, exc: OSError) -> str:
    """A connection that could not be made, in OpenSSH's words (``connect to host H port P:
    Connection refused``, ``Could not resolve hostname H: ...``); netd's own failures (not
    running, lost) as netd_common says them."""
    import socket

    from vipernet.cli.netd_common import plain

    text = plain(exc.strerror or str(exc))
    if "netd" in text:
        return text
    if isinstance(exc, socket.gaierror):
        return f"Could not resolve hostname {host}: {text}"
    if isinstance(exc, TimeoutError):
        text = "Connection timed out"
    return f"connect to host {host} port {port}: {text}"


def open_client(args: argparse.Namespace) -> SSHClient:
    """Connect and authenticate as the options say; raises SSHError."""
    from vipernet.netclient.transport import connect as transport_connect
    from vipernet.ssh.client import SSHClient
    from vipernet.ssh.keys import PassphraseRequired, load_private_key

    user, host = destination(args)
    opts = parse_options(args.options)
    ssh_dir = os.path.expanduser("~/.ssh")
    known = opts.get("userknownhostsfile", os.path.join(ssh_dir, "known_hosts"))
    policy = opts.get("stricthostkeychecking", "ask")
    timeout = float(opts.get("connecttimeout", "30"))
    alive = float(opts["serveraliveinterval"]) if "serveraliveinterval" in opts else None
    identities = args.identity or [os.path.join(ssh_dir, n) for n in DEFAULT_KEYS
                                   if os.path.exists(os.path.join(ssh_dir, n))]
    keys = []
    for path in identities:
        try:
            keys.append(load_private_key(path))
        except PassphraseRequired:
            keys.append(load_private_key(path, getpass.getpass(f"Enter passphrase for key "
                                                               f"'{path}': ")))
    use_password = opts.get("passwordauthentication", "yes").lower() != "no"
    interactive = sys.stdin.isatty()

    def password_prompt() -> str | None:
        if not (use_password and interactive):
            return None
        return getpass.getpass(f"{user}@{host}'s password: ")

    client = SSHClient.connect(
        host, args.port, username=user, keys=keys, known_hosts=known, policy=policy,
        ask=_ask, timeout=timeout, keepalive_interval=alive,
        password_prompt=password_prompt if use_password else None,
        connect=lambda h, p, t: transport_connect(h, p, timeout=t))
    if client.conn.auth.banner:  # the server's pre-login banner, shown as OpenSSH does
        sys.stderr.write(client.conn.auth.banner)
    return client


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSADRAIN)  # keep what was typed ahead
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def interact(client: SSHClient, command: str | None, want_pty: bool) -> int:
    """Run a session: forward stdin, print stdout/stderr, return the exit status."""
    ch = client.open_channel()
    stdin_fd = sys.stdin.fileno()
    if want_pty:
        size = shutil.get_terminal_size()
        client.request(ch, lambda: ch.request_pty(os.environ.get("TERM", "xterm"),
                                                   size.columns, size.lines), "pty-req")
    if command is None:
        client.request(ch, ch.shell, "shell")
    else:
        client.request(ch, lambda: ch.exec(command), "exec")
    resized = [False]

    def on_winch(signum: int, frame: object) -> None:
        resized[0] = True

    old = signal.signal(signal.SIGWINCH, on_winch) if want_pty else None
    try:
        sock_fd = client.sock.fileno()
    except (AttributeError, OSError):
        sock_fd = -1
    stdin_open = True
    try:
        with raw_terminal(stdin_fd) if want_pty else contextlib.nullcontext():
            while not ch.closed:
                client.flush()
                watch = [stdin_fd] if stdin_open else []
                if sock_fd >= 0:
                    watch.append(sock_fd)
                try:
                    ready, _, _ = select.select(watch, [], [], 0.5 if sock_fd >= 0 else 0.02)
                except InterruptedError:
                    ready = []
                if resized[0]:
                    # Before forwarding input: keystrokes typed after a resize must reach a
                    # shell that already knows the new size.
                    resized[0] = False
                    size = shutil.get_terminal_size()
                    ch.window_change(size.columns, size.lines)
                if stdin_open and stdin_fd in ready:
                    data = os.read(stdin_fd, 65536)
                    if data:
                        ch.write(data)
                    else:
                        stdin_open = False
                        ch.send_eof()
                client.step(0 if sock_fd in ready else (0.0 if sock_fd >= 0 else 0.02))
                if ch.stdout:
                    os.write(sys.stdout.fileno(), ch.read())
                if ch.stderr:
                    os.write(sys.stderr.fileno(), ch.read(stderr=True))
    finally:
        if old is not None:
            signal.signal(signal.SIGWINCH, old)
    if ch.exit_status is not None:
        return ch.exit_status
    return 255


def open_client_or_report(args: argparse.Namespace, command: str) -> SSHClient | None:
    """:func:`open_client`, or None after printing why it failed (exit status 255)."""
    from vipernet.cli.netd_common import plain
    from vipernet.ssh.errors import SSHError

    try:
        return open_client(args)
    except SSHError as exc:  # before OSError: SSHTimeout is a TimeoutError too
        print(f"vipernet {command}: {plain(str(exc))}", file=sys.stderr)
    except OSError as exc:
        print(f"vipernet {command}: {connect_failure(destination(args)[1], args.port, exc)}",
              file=sys.stderr)
    except ValueError as exc:
        print(f"vipernet {command}: {exc}", file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> int:
    from vipernet.cli.netd_common import NETD_LOST, netd_gone, plain
    from vipernet.ssh.errors import SSHError

    client = open_client_or_report(args, "ssh")
    if client is None:
        return 255
    try:
        command = " ".join(args.command) if args.command else None
        want_pty = (command is None and sys.stdin.isatty()) or args.force_tty
        return interact(client, command, bool(want_pty))
    except (SSHError, OSError) as exc:  # the connection (or netd) lost mid-session
        print(f"vipernet ssh: {NETD_LOST if netd_gone() else plain(str(exc))}",
              file=sys.stderr)
        return 255
    finally:
        client.close()
