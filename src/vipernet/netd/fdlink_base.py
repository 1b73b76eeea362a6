"""What the stream and datagram links of the fd data plane share: netd's end of the pair,
its registration on the loop's selector, and closing (see :mod:`.fdlink`)."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vipernet.netd.service import SocketEntry

log = logging.getLogger("vipernet.netd")


class LinkCounters(Protocol):
    def count(self, name: str, n: int = 1) -> None: ...


class LinkPlane(Protocol):
    """What a link needs from the plane that owns it (``fdlink.FdPlane``, which creates the
    links and so sits above this module and :mod:`.fdlink_dgram`)."""

    selector: selectors.BaseSelector
    clock: Callable[[], float]

    @property
    def service(self) -> LinkCounters: ...

    def forget(self, link: DescriptorLink, now: float) -> None: ...


class DescriptorLink:
    """A socket whose bytes flow through a descriptor; subclasses implement :meth:`pump`."""

    __slots__ = ("client_file", "closed", "end", "entry", "events", "plane")

    def __init__(self, plane: LinkPlane, entry: SocketEntry, end: socket.socket) -> None:
        self.plane = plane
        self.entry = entry
        self.end = end
        self.closed = False
        self.events = 0  # the selector events netd's end is registered for
        # (st_dev, st_ino) of the end the client was given: SOCKET_ADOPT's proof.
        self.client_file: tuple[int, int] | None = None

    def pump(self, now: float) -> None:
        raise NotImplementedError

    def check_hangup(self, now: float) -> None:
        """Look for a close the selector cannot show (see FdLink); a no-op by default."""

    def take_error(self) -> int | None:
        """The pending error GET_ERROR reports (None: none kept here)."""
        return None

    def on_event(self, mask: int) -> None:
        self.pump(self.plane.clock())

    def watch(self, wanted: int) -> None:
        """Register netd's end for ``wanted`` selector events (0: none)."""
        if self.closed or wanted == self.events:
            return
        selector = self.plane.selector
        try:
            if not wanted:
                selector.unregister(self.end)
            elif not self.events:
                selector.register(self.end, wanted, self.on_event)
            else:
                selector.modify(self.end, wanted, self.on_event)
        except (KeyError, ValueError, OSError) as exc:
            log.debug("fd link %d: selector: %s", self.entry.sock_id, exc)
        self.events = wanted

    def close(self, now: float) -> None:
        """The descriptor is gone (or the socket is released): close the socket with it."""
        if self.closed:
            return
        self.closed = True
        if self.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.plane.selector.unregister(self.end)
            self.events = 0
        self.end.close()
        self.plane.forget(self, now)
