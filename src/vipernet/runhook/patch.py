"""Swap the stdlib socket module's AF_INET entry points for vipernet's (see the package doc).

What changes, in the ``socket`` module itself (so ``http.client``, ``urllib``, ``urllib3``
and everything else that calls ``socket.socket(...)`` or ``socket.create_connection``
picks it up, provided it is imported after us - sitecustomize runs first):

* ``socket.socket(AF_INET or AF_INET6, SOCK_STREAM | SOCK_DGRAM)`` returns a
  :class:`vipernet.socket.socket` (AF_INET6 ones dual-stack, as Linux's; EAFNOSUPPORT
  from netd when its stack runs with ``--ip6 off``).  Raw and other-typed internet
  sockets are refused (ESOCKTNOSUPPORT, as a kernel without them): handing out the
  host's would silently take the program around the stack.  Every other family (AF_UNIX,
  AF_NETLINK...) and every subclass (``ssl.SSLSocket``) is the real stdlib socket,
  untouched; ``isinstance(s, socket.socket)`` stays true for stdlib sockets.
* ``create_connection`` (Happy Eyeballs over both families), ``getaddrinfo``
  (AF_UNSPEC, AF_INET and AF_INET6 answered by netd's resolver, NET_DNS_RESOLVE_ALL),
  ``gethostbyname``, ``gethostbyname_ex``.

TCP and UDP sockets have a real descriptor (netd's fd data plane), so ``select``/
``selectors``/``asyncio`` and ``ssl`` work on them.  Not covered:
``socket.fromfd``/``socketpair`` (stay stdlib).
"""

from __future__ import annotations

import errno
import socket as _std
from typing import Any

_ORIGINAL: dict[str, Any] = {}
_ROUTED_TYPES = (_std.SOCK_STREAM, _std.SOCK_DGRAM)
_ROUTED_FAMILIES = (_std.AF_INET, _std.AF_INET6)
# The stdlib's "no timeout given" marker, so create_connection's defaults match.
_NO_TIMEOUT: Any = getattr(_std, "_GLOBAL_DEFAULT_TIMEOUT", object())


def installed() -> bool:
    return bool(_ORIGINAL)


def install() -> None:
    """Patch the ``socket`` module (idempotent)."""
    if _ORIGINAL:
        return
    import vipernet.socket as vsock

    original_socket = _std.socket

    class RoutedSocket(original_socket):  # type: ignore[misc,valid-type]
        """``socket.socket``: internet stream/datagram sockets come from vipernet."""

        def __new__(cls, family: Any = -1, type: Any = -1, proto: Any = -1,
                    fileno: Any = None) -> Any:
            if cls is RoutedSocket and fileno is None:
                fam = _std.AF_INET if family == -1 else family
                typ = _std.SOCK_STREAM if type == -1 else type
                if fam in _ROUTED_FAMILIES and (int(typ) & 0xF) in _ROUTED_TYPES:
                    return vsock.socket(fam, typ, 0 if proto == -1 else proto)
                if fam in _ROUTED_FAMILIES:
                    raise OSError(errno.ESOCKTNOSUPPORT,
                                  f"vipernet run: {_std.AddressFamily(fam).name} socket type "
                                  f"{int(typ)} is not routed through the stack")
            return super().__new__(cls, family, type, proto, fileno)

    RoutedSocket.__name__ = RoutedSocket.__qualname__ = "socket"
    RoutedSocket.__module__ = "socket"

    def create_connection(address: tuple[str, int], timeout: Any = _NO_TIMEOUT,
                          source_address: tuple[str, int] | None = None,
                          **kwargs: Any) -> Any:
        if timeout is _NO_TIMEOUT:
            return vsock.create_connection(address, source_address=source_address)
        return vsock.create_connection(address, timeout, source_address)

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, ...]]:
        host_text = host.decode() if isinstance(host, bytes) else host
        return [(_std.AddressFamily(f), _std.SocketKind(t), p, c, a)
                for f, t, p, c, a in vsock.getaddrinfo(host_text, port, family, type, proto,
                                                       flags)]

    def gethostbyname(name: str) -> str:
        return vsock.gethostbyname(name)

    def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
        return vsock.gethostbyname_ex(name)

    for name, value in (("socket", RoutedSocket), ("SocketType", _std.SocketType),
                        ("create_connection", create_connection),
                        ("getaddrinfo", getaddrinfo), ("gethostbyname", gethostbyname),
                        ("gethostbyname_ex", gethostbyname_ex)):
        _ORIGINAL[name] = getattr(_std, name)
        setattr(_std, name, value)


def uninstall() -> None:
    """Put the stdlib functions back (tests)."""
    for name, value in _ORIGINAL.items():
        setattr(_std, name, value)
    _ORIGINAL.clear()

