"""Rootless namespaces with a TAP inside, and the TAP's fd handed out to the gateway.

What ``vipernet run --netns`` needs from the kernel, in the process that does it (a forked
child of the gateway's process; single-threaded, as ``setns`` into a user namespace
requires):

* :func:`enter_new_namespaces` - ``unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)``
  and the one-line maps ``0 UID 1`` / ``0 GID 1`` (``setgroups`` denied first, which an
  unprivileged ``gid_map`` requires).  The caller is then root of a user namespace it
  owns, with ``CAP_NET_ADMIN`` over a network namespace of its own: enough to make a TAP.
* :func:`join_namespaces` - the same position in a namespace someone else made
  (``--netns PID|PATH``): ``setns`` into its user namespace, then its network namespace.
* :func:`create_tap` - a TAP made *there* (a tun fd belongs to the namespace it was opened
  in), with the virtio-net header and checksum/TSO offloads, so the kernel inside hands
  the gateway 64 KiB TCP frames; then ``ip -batch`` brings ``lo`` and the TAP up with the
  libslirp guest address and a default route via the gateway.
* :func:`send_tap` / :func:`receive_tap` - the fd crosses to the (unprivileged, outside)
  gateway process as ``SCM_RIGHTS`` over a socketpair, with a status line: the error
  text of a failed set-up reaches the parent, which the child's exit status alone would
  not carry.
* :func:`bind_resolv_conf` - a private ``/etc/resolv.conf`` naming the gateway's DNS,
  bind-mounted in the new mount namespace only.

Nothing here needs privilege outside: the only host-wide requirements are unprivileged
user namespaces and a ``/dev/net/tun`` that anyone may open (mode 0666, as udev makes it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from vipernet.errors import VipernetError
from vipernet.link.netns import namespace_path
from vipernet.link.tap import (
    IFF_NO_PI,
    IFF_TAP,
    IFF_VNET_HDR,
    IFREQ,
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    TUN_PATH,
    TUNSETIFF,
    TUNSETOFFLOAD,
    TUNSETVNETHDRSZ,
    wait_running,
)
from vipernet.link.virtio import VNET_HDR_LEN
from vipernet.slirp.config import GATEWAY, GUEST

# <linux/sched.h>, <linux/nsfs.h>, <sys/mount.h>, <linux/prctl.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NS_GET_USERNS = 0xB701
MS_BIND = 0x1000
PR_SET_PDEATHSIG = 1
_SCOPE_GLOBAL, _SCOPE_SITE, _TENTATIVE = 0x00, 0x40, 0x40  # /proc/net/if_inet6 fields

TAP_NAME = "tap0"
GUEST_MAC = "52:54:00:12:34:56"  # QEMU's first NIC: the address libslirp's guests have
RESOLV_CONF = "/etc/resolv.conf"
SETUP_TIMEOUT = 30.0  # seconds for the child to make and configure the TAP
_MESSAGE_LIMIT = 4096
_OK, _FAILED = b"ok", b"error"

_libc: ctypes.CDLL | None = None


class NamespaceError(VipernetError):
    """A namespace or its TAP could not be made, joined or handed over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TapSetup:
    """How the TAP inside looks: libslirp's guest, so the gateway's defaults fit it."""

    name: str = TAP_NAME
    mac: str = GUEST_MAC
    mtu: int = 1500
    address: IPv4Interface = GUEST
    gateway: IPv4Address = GATEWAY
    ipv6: bool = True  # SLAAC from the gateway's Router Advertisements


def _call(name: str, *args: object) -> int:
    """A libc call that reports failure as OSError (Python 3.11 has no os.unshare/setns)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    result = int(getattr(_libc, name)(*args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


# -- getting there ---------------------------------------------------------------------------

def enter_new_namespaces(uid: int, gid: int) -> None:
    """Make the calling (single-threaded) process root of new user, network and mount
    namespaces, mapped to ``uid``/``gid`` outside (what it was before)."""
    try:
        _call("unshare", CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)
    except OSError as exc:
        hint = ""
        if exc.errno in (errno.EPERM, errno.ENOSPC, errno.EINVAL):
            hint = (" (unprivileged user namespaces are off here: see "
                    "/proc/sys/user/max_user_namespaces, kernel.unprivileged_userns_clone, "
                    "or an AppArmor restriction)")
        raise NamespaceError(f"cannot create a user namespace: {exc.strerror}{hint}") from None
    # An unprivileged gid_map is only accepted once setgroups(2) is denied for good: it
    # would otherwise let the process drop a group that was denying it access.
    for path, text in (("/proc/self/uid_map", f"0 {uid} 1"), ("/proc/self/setgroups", "deny"),
                       ("/proc/self/gid_map", f"0 {gid} 1")):
        try:
            Path(path).write_text(text)
        except OSError as exc:
            raise NamespaceError(f"cannot write {path}: {exc.strerror}") from None


def join_namespaces(target: str) -> str:
    """Enter the network namespace named by ``target`` (a PID, a path, or an ``ip netns``
    name) and, first, the user namespace that gives us power over it; returns a label.

    For a PID the user namespace is the process's (as ``nsenter -t PID -U -n``); for a
    path it is the network namespace's owner (``NS_GET_USERNS``).  Neither is entered if
    it is the one we are in already (root attaching to ``ip netns add``'s namespaces):
    ``setns`` to one's own user namespace fails.
    """
    if target.isdigit():
        label = f"the namespace of PID {target}"
        net_path, user_path = f"/proc/{target}/ns/net", f"/proc/{target}/ns/user"
    else:
        net_path, user_path = namespace_path(target), None
        label = f"network namespace {net_path}"
    net_fd = _open_namespace(net_path, label)
    try:
        if user_path is not None:
            user_fd = _open_namespace(user_path, label)
        else:
            try:
                user_fd = fcntl.ioctl(net_fd, NS_GET_USERNS)
            except OSError as exc:
                raise NamespaceError(
                    f"cannot find the owner of {label}: {exc.strerror}") from None
        try:
            if os.fstat(user_fd).st_ino != os.stat("/proc/self/ns/user").st_ino:
                _setns(user_fd, CLONE_NEWUSER, label)
        finally:
            os.close(user_fd)
        _setns(net_fd, CLONE_NEWNET, label)
    finally:
        os.close(net_fd)
    return label


def _open_namespace(path: str, label: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"no such namespace: {label} ({path} is missing)") from None
    except OSError as exc:
        raise NamespaceError(f"cannot open {path}: {exc.strerror}") from None


def _setns(fd: int, nstype: int, label: str) -> None:
    kind = "user" if nstype == CLONE_NEWUSER else "network"
    try:
        _call("setns", fd, nstype)
    except OSError as exc:
        why = " (it belongs to another user)" if exc.errno == errno.EPERM else ""
        raise NamespaceError(f"cannot enter the {kind} namespace of {label}: "
                             f"{exc.strerror}{why}") from None


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` dies (if it already has: now)."""
    _call("prctl", PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
          ctypes.c_ulong(0), ctypes.c_ulong(0))
    if os.getppid() != parent:
        os._exit(1)


# -- the TAP ---------------------------------------------------------------------------------

def create_tap(setup: TapSetup) -> int:
    """Make and configure the TAP in the current network namespace; returns its fd
    (non-blocking, close-on-exec, virtio-net header of ``VNET_HDR_LEN`` bytes)."""
    name = setup.name
    try:
        socket.if_nametoindex(name)
    except OSError:
        pass  # good: no such interface yet
    else:
        # TUNSETIFF would attach to a persistent TAP of that name instead of failing.
        raise NamespaceError(f"{name} already exists in that namespace")
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NamespaceError(f"{TUN_PATH} is missing: no TUN/TAP support here") from None
    except PermissionError:
        raise NamespaceError(
            f"cannot open {TUN_PATH}: permission denied (an unprivileged user needs it "
            "mode 0666, as udev makes it: chmod 0666 /dev/net/tun)") from None
    try:
        try:
            fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(name.encode(),
                                                   IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        except OSError as exc:
            raise NamespaceError(f"cannot make TAP {name}: {exc.strerror}") from None
        _configure(setup)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with probe:
            wait_running(probe, name, 2.0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _configure(setup: TapSetup) -> None:
    name = setup.name
    conf = Path("/proc/sys/net/ipv6/conf") / name
    if conf.is_dir():
        # The gateway is the link's only other node: duplicate address detection would
        # only hold IPv6 back by a second.  accept_ra is the kernel's default, set anyway:
        # SLAAC from the gateway's RAs is how the namespace gets fec0::/64 and its route.
        settings = {"disable_ipv6": "0", "accept_dad": "0", "accept_ra": "1"}
        if not setup.ipv6:
            settings = {"disable_ipv6": "1"}
        for key, value in settings.items():
            try:
                (conf / key).write_text(value)
            except OSError as exc:
                raise NamespaceError(f"cannot set {conf / key}: {exc.strerror}") from None
    commands = [
        "link set lo up",
        f"link set {name} address {setup.mac} mtu {setup.mtu}",
        f"addr add {setup.address} dev {name}",
        f"link set {name} up",
        f"route add default via {setup.gateway} dev {name}",
    ]
    run_ip(commands)


def run_ip(commands: Sequence[str]) -> None:
    """Run iproute2 commands in one ``ip -batch`` (one exec for the lot)."""
    ip = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.path.exists(p)), None)
    if ip is None:
        raise NamespaceError("ip (iproute2) is not installed: it configures the TAP")
    try:
        proc = subprocess.run([ip, "-batch", "-"], input="\n".join(commands) + "\n",
                              capture_output=True, text=True, timeout=SETUP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"ip failed: {exc}") from None
    if proc.returncode != 0:
        raise NamespaceError(f"ip failed: {proc.stderr.strip() or proc.stdout.strip()}")


def wait_for_ipv6(name: str, timeout: float) -> bool:
    """Wait (bounded) until ``name`` has a usable non-link-local IPv6 address: SLAAC
    from the gateway's answer to our Router Solicitation, which needs the gateway to be
    serving.  A program started before would find IPv6 missing for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/if_inet6").read_text().splitlines():
                fields = line.split()
                # address ifindex prefixlen scope flags name; scope 0x20 is link-local
                if len(fields) == 6 and fields[5] == name and int(fields[3], 16) in (
                        _SCOPE_GLOBAL, _SCOPE_SITE) and not int(fields[4], 16) & _TENTATIVE:
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


# -- handing the fd over ---------------------------------------------------------------------

def send_tap(sock: socket.socket, fd: int, note: str = "") -> None:
    """Give the TAP to the parent; ``note`` is a warning it should print."""
    socket.send_fds(sock, [_OK + b"\n" + note.encode()], [fd])


def send_failure(sock: socket.socket, reason: str) -> None:
    with contextlib.suppress(OSError):
        sock.send(_FAILED + b"\n" + reason.encode()[:_MESSAGE_LIMIT - 16])


def receive_tap(sock: socket.socket, timeout: float = SETUP_TIMEOUT) -> tuple[int, str]:
    """The TAP fd and the child's note; NamespaceError with the child's reason if the
    set-up failed or the child went away before saying."""
    sock.settimeout(timeout)
    try:
        message, fds, _flags, _addr = socket.recv_fds(sock, _MESSAGE_LIMIT, 1)
    except TimeoutError:
        raise NamespaceError(f"the namespace was not set up within {timeout:.0f} s") from None
    except OSError as exc:
        raise NamespaceError(f"lost the namespace helper: {exc.strerror}") from None
    status, _, text = message.partition(b"\n")
    if status == _OK and len(fds) == 1:
        return fds[0], text.decode(errors="replace")
    for extra in fds:
        os.close(extra)
    if status == _FAILED:
        raise NamespaceError(text.decode(errors="replace"))
    raise NamespaceError("the namespace helper exited before handing over the TAP")


# -- names -----------------------------------------------------------------------------------

def resolv_conf_text(host_resolv_conf: str = RESOLV_CONF, dns: str = "10.0.2.3") -> str:
    """A resolv.conf naming the gateway's DNS, with the host's search domains and
    options kept (short names then resolve as they do outside)."""
    keep: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path(host_resolv_conf).read_text(errors="replace").splitlines():
            if line.split()[:1] in (["search"], ["domain"], ["options"]):
                keep.append(line.strip())
    return "\n".join(["# vipernet run --netns: the gateway's DNS relay",
                      f"nameserver {dns}", *keep]) + "\n"


def bind_resolv_conf(text: str, target: str = RESOLV_CONF) -> str:
    """Bind-mount a file holding ``text`` over ``target`` in this mount namespace;
    returns "" or a warning (no resolv.conf to cover, or the mount refused).

    The temporary file is unlinked at once: the mount keeps it alive, and nothing is
    left in the temporary directory, whatever happens to us later.  The copied mounts
    stay slaves of the host's (the kernel made them so for a less privileged namespace),
    so this mount does not propagate out and later host mounts still come in.
    """
    if not os.path.exists(target):  # mount(2) follows a symlink; a dangling one fails
        return f"{target} does not exist: names resolve only where the command looks itself"
    handle, path = tempfile.mkstemp(prefix="vipernet-resolv-", suffix=".conf")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(path, 0o644)
        try:
            _call("mount", path.encode(), target.encode(), None, ctypes.c_ulong(MS_BIND), None)
        except OSError as exc:
            return f"cannot bind-mount a resolv.conf over {target}: {exc.strerror}"
    finally:
        os.unlink(path)
    return ""
