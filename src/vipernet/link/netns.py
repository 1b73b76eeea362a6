"""Entering a named network namespace (``ip netns add NAME``) for the span of a ``with`` block.

Python 3.11 has no ``os.setns``, so this calls libc's ``setns(fd, CLONE_NEWNET)`` through
ctypes.  ``setns`` moves only the calling *thread*; the namespace we came from is saved as an
fd on ``/proc/thread-self/ns/net`` first and restored on the way out, whatever happened
inside.  Sockets and TAP fds opened inside stay bound to the namespace they were opened in,
which is the whole point: open there, use from here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from vipernet.link.errors import LinkError, NoSuchInterface, PermissionDenied

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def namespace_path(name: str) -> str:
    """Where ``ip netns`` keeps the namespace called ``name``; refuses path tricks.

    An absolute path (``/proc/PID/ns/net``, a bind mount elsewhere) is taken as is.
    """
    if name.startswith("/"):
        return name
    if not name or "/" in name or name in (".", ".."):
        raise NoSuchInterface(f"invalid network namespace name: {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block inside network namespace ``name`` (``None``: stay where we are)."""
    if name is None:
        yield
        return
    path = namespace_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoSuchInterface(f"no such network namespace: {name}") from None
    except PermissionError:
        raise PermissionDenied(f"cannot open network namespace {name}: permission denied") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        try:
            _setns(target, CLONE_NEWNET)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise PermissionDenied(
                    f"cannot enter network namespace {name}: needs CAP_SYS_ADMIN (root)") from None
            raise LinkError(f"cannot enter network namespace {name}: {exc.strerror}") from None
        try:
            yield
        finally:
            # Failing to come back would leave this thread in the wrong namespace for good.
            _setns(home, CLONE_NEWNET)
    finally:
        os.close(home)
        os.close(target)
