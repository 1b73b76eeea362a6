"""``vipernet run --netns``: a program in a namespace of its own, networked by the gateway.

Two forms, as slirp4netns and pasta have:

* :func:`run_in_new_namespace` (``vipernet run --netns -- CMD``): a forked child becomes
  root of new user, network and mount namespaces (:mod:`.userns`), makes ``tap0`` there
  (10.0.2.15/24, default route via 10.0.2.2, IPv6 by SLAAC), bind-mounts a resolv.conf
  naming 10.0.2.3, and hands the TAP's fd back to us over a socketpair.  We serve it with
  a :class:`~vipernet.gateway.Gateway` while the child, told to go once the gateway is
  ready, execs CMD.  CMD's exit status is ours.
* :func:`attach` (``vipernet run --netns PID|PATH``): a short-lived helper joins an
  existing namespace (a container runtime's), makes the TAP there and hands it back; we
  serve it until that process exits or that path stops naming that namespace.

The gateway runs in this (unprivileged, outside) process, so its host sockets are the
host's: 10.0.2.2:P reaches the host's 127.0.0.1:P, other addresses themselves.  Nothing
the namespace sees needs root, and no netd is involved: every program inside - static
binaries, Go programs, a whole container runtime - has an ordinary kernel network.

When CMD exits its namespace lives on as long as we hold the TAP, so what its kernel
still has to send (an orphaned connection's last data) is served for a moment (until the
wire is quiet, at most ``DRAIN_LIMIT``) before the gateway closes its host sockets.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

from vipernet.gateway.server import MAX_WAIT, Gateway, GatewayConfig
from vipernet.gateway.userns import (
    TAP_NAME,
    NamespaceError,
    TapSetup,
    bind_resolv_conf,
    create_tap,
    die_with_parent,
    enter_new_namespaces,
    join_namespaces,
    receive_tap,
    resolv_conf_text,
    send_failure,
    send_tap,
    wait_for_ipv6,
)
from vipernet.link.tap import TapDevice
from vipernet.link.virtio import VNET_HDR_LEN
from vipernet.slirp.config import DNS, GATEWAY, GUEST, Forward, SlirpConfig

DRAIN_QUIET = 0.05  # seconds without a frame or a host-socket event: the wire is done
DRAIN_LIMIT = 3.0  # seconds served at most after CMD exits
IPV6_WAIT = 1.0  # seconds CMD's start waits for SLAAC at most (it takes milliseconds)
# Signals we pass on to CMD.  A terminal sends SIGINT and SIGQUIT to its whole foreground
# process group, CMD included, so those two are only passed on when we are not in it.
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
KEYBOARD = (signal.SIGINT, signal.SIGQUIT)
_GO = b"go"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsOptions:
    mtu: int = 1500
    dns_upstream: tuple[str, int] | None = None  # None: the host's resolv.conf
    ipv6: bool = True
    forwards: tuple[Forward, ...] = ()  # host ports carried into the namespace


def run_in_new_namespace(command: Sequence[str], options: NetnsOptions,
                         warn: Callable[[str], None]) -> int:
    """Run ``command`` in new namespaces served by the gateway; its exit status."""
    if not command:
        raise NamespaceError("nothing to run")
    setup = TapSetup(mtu=options.mtu, ipv6=options.ipv6)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        ours.close()
        _command_child(list(command), setup, theirs, parent)
    theirs.close()
    with ours:
        try:
            fd, note = receive_tap(ours)
            if note:
                warn(note)
            gateway = _gateway(fd, options)
        except BaseException:
            _kill_and_reap(pid)
            raise
        try:
            with _forwarding_signals(pid):
                ours.send(_GO)
                status = _serve_until_exit(gateway, pid)
        finally:
            gateway.close()
    return status


def _command_child(command: list[str], setup: TapSetup, sock: socket.socket,
                   parent: int) -> None:  # pragma: no cover - runs in the forked child
    """Make the namespaces and the TAP, wait for the gateway, exec the command."""
    code = 1
    try:
        try:
            enter_new_namespaces(os.geteuid(), os.getegid())
            fd = create_tap(setup)
            note = bind_resolv_conf(resolv_conf_text(dns=str(DNS)))
            send_tap(sock, fd, note)
            os.close(fd)
        except NamespaceError as exc:
            send_failure(sock, str(exc))
            return
        if sock.recv(len(_GO)) != _GO:
            return  # the parent gave up (or died) before serving the TAP
        sock.close()
        die_with_parent(parent)
        if setup.ipv6:
            wait_for_ipv6(setup.name, IPV6_WAIT)
        # Python ignores SIGPIPE and SIGXFSZ for itself; a program exec'd from here
        # would inherit that (``CMD | head`` would then see EPIPE instead of dying).
        for number in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(number, signal.SIG_DFL)
        program = command[0] if "/" in command[0] else shutil.which(command[0])
        if program is None:
            # What a shell says; execvp would report the last PATH entry's error instead
            # (EACCES for a directory this user cannot search, say).
            print(f"vipernet run: {command[0]}: command not found", file=sys.stderr)
            code = 127
            return
        try:
            os.execv(program, command)
        except OSError as exc:
            print(f"vipernet run: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
            code = 126 if isinstance(exc, PermissionError) else 127
    except BaseException:
        with contextlib.suppress(Exception):
            send_failure(sock, "namespace set-up crashed: " + traceback.format_exc())
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def attach(target: str, options: NetnsOptions, announce: Callable[[str], None]) -> int:
    """Serve a TAP made in the existing namespace ``target`` (PID, path or ``ip netns``
    name) until it is gone or we are told to stop (SIGINT, SIGTERM, SIGHUP): 0."""
    setup = TapSetup(mtu=options.mtu, ipv6=options.ipv6)
    with _Watch(target) as watch:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper exits
            ours.close()
            _attach_helper(target, setup, theirs)
        theirs.close()
        with ours:
            try:
                fd, _note = receive_tap(ours)
            finally:
                _kill_and_reap(pid)
        gateway = _gateway(fd, options)
        stopping: list[int] = []
        try:
            with _handling(signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                           handler=lambda signum: stopping.append(signum)):
                announce(f"serving {setup.name} in {watch.label} ({GUEST}, gateway "
                         f"{GATEWAY}, DNS {DNS})")
                while not stopping and watch.alive():
                    gateway.run_once(MAX_WAIT)
        finally:
            gateway.close()
    return 0


def _attach_helper(target: str, setup: TapSetup,
                   sock: socket.socket) -> None:  # pragma: no cover - forked child
    code = 1
    try:
        join_namespaces(target)
        fd = create_tap(setup)
        send_tap(sock, fd)
        code = 0
    except NamespaceError as exc:
        send_failure(sock, str(exc))
    except BaseException:
        with contextlib.suppress(Exception):
            send_failure(sock, "namespace set-up crashed: " + traceback.format_exc())
    finally:
        os._exit(code)


# -- serving ---------------------------------------------------------------------------------

def _gateway(fd: int, options: NetnsOptions) -> Gateway:
    """A gateway serving the TAP ``fd`` (closed on failure)."""
    try:
        os.set_blocking(fd, False)
        device = TapDevice(fd, TAP_NAME, netns=None, vnet_hdr_len=VNET_HDR_LEN,
                           mtu=options.mtu)
    except BaseException:
        os.close(fd)
        raise
    slirp = SlirpConfig(dns_upstream=options.dns_upstream, ipv6=options.ipv6,
                        forwards=options.forwards)
    gateway = Gateway(GatewayConfig(slirp=slirp, mtu=options.mtu))
    try:
        gateway.add_device(device)  # closes the device if it fails
    except BaseException:
        gateway.close()
        raise
    return gateway


def _serve_until_exit(gateway: Gateway, pid: int) -> int:
    """Serve until the child ``pid`` exits, then drain; its exit status, shell-style."""
    status: int | None = None
    exited = os.pidfd_open(pid)  # readable once the child exits: no polling delay
    gateway.add_waker(exited)
    try:
        while status is None:
            gateway.run_once(MAX_WAIT)
            status = _exit_status(pid, block=False)
    finally:
        gateway.remove_waker(exited)
        os.close(exited)
    deadline = time.monotonic() + DRAIN_LIMIT
    seen = _activity(gateway)
    while time.monotonic() < deadline:
        gateway.run_once(DRAIN_QUIET)
        now = _activity(gateway)
        if now == seen:
            break
        seen = now
    return status


def _activity(gateway: Gateway) -> int:
    """A number that changes whenever the gateway moved anything."""
    return sum(sum(counters.values()) for counters in gateway.snapshot().values())


def _exit_status(pid: int, *, block: bool) -> int | None:
    """The child's status as a shell reports it (128+N for signal N), None if running."""
    while True:
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 1  # reaped elsewhere: nothing better to say
        if done == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _exit_status(pid, block=True)


# -- signals and the namespace's end ---------------------------------------------------------

@contextlib.contextmanager
def _handling(*signals: signal.Signals, handler: Callable[[int], None]) -> Iterator[None]:
    """Run ``handler(signum)`` for ``signals`` during the block; the old ones after."""
    def call(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    previous = {number: signal.signal(number, call) for number in signals}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _forwarding_signals(pid: int) -> contextlib.AbstractContextManager[None]:
    """Pass termination signals on to CMD (it decides; we end when it does)."""
    try:
        keyboard_reaches_cmd = os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        keyboard_reaches_cmd = False

    def forward(signum: int) -> None:
        # Caught, never fatal here: we must not die on Ctrl-C while CMD (a shell, say)
        # chooses to live on - it would lose its network.
        if signum in KEYBOARD and keyboard_reaches_cmd:
            return  # the terminal sent it to CMD as well
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    return _handling(*FORWARDED, *KEYBOARD, handler=forward)


class _Watch:
    """Whether the namespace we attached to is still there: the process given by PID
    has not exited (a pidfd), or the path still names the same namespace."""

    def __init__(self, target: str) -> None:
        self._pidfd: int | None = None
        self._identity: tuple[int, int] | None = None
        if target.isdigit():
            self.label = f"the namespace of PID {target}"
            try:
                self._pidfd = os.pidfd_open(int(target))
            except OSError as exc:
                raise NamespaceError(f"no process {target}: {exc.strerror}") from None
        else:
            from vipernet.link.netns import namespace_path

            self._path = namespace_path(target)
            self.label = f"network namespace {self._path}"
            self._identity = self._stat()
            if self._identity is None:
                raise NamespaceError(f"no such namespace: {self._path}")

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def alive(self) -> bool:
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            return not readable  # a pidfd becomes readable when its process exits
        return self._stat() == self._identity

    def __enter__(self) -> _Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
