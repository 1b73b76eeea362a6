"""The fd data plane for UDP: one datagram per message on an ``AF_UNIX`` ``SOCK_SEQPACKET``.

A UDP socket's descriptor (NET_SOCKET_ATTACH_FD) carries datagrams with their boundaries
and addresses: each message is a 6-byte address -- IPv4 (4 bytes) and port (u16), network
order -- then the payload; an ``AF_INET6`` socket's messages start with an 18-byte
``address6`` instead (IPv6 16 bytes, port u16), its "no address" being ``:: port 0``.
From the program it is the destination (``0.0.0.0:0`` = the socket's connected peer); to
the program, the source.  netd reads the descriptor and
sends each datagram from the UDP socket; it reads the UDP socket while the descriptor
takes more (one datagram held at most), so a program that does not read leaves its
datagrams in the stack's bounded queue, where the excess is dropped and counted, as a
kernel socket buffer drops them.

Errors (an ICMP port unreachable on a connected socket, ``EHOSTUNREACH``, ``EMSGSIZE``)
reach the program as an *error message* in the datagram stream: source ``0.0.0.0:0``
(which no datagram can have) and a u16 errno; the Python socket raises it from the next
``recv``, as Linux raises ``ECONNREFUSED`` after a port unreachable.  Each is counted
(``fdlink.udp_errors``).  A message shorter than the
address is dropped and counted (``fdlink.udp_malformed``).  Closing the descriptor (every
copy) closes the socket.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import selectors
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING

from vipernet.netd.fdlink_base import DescriptorLink, LinkPlane
from vipernet.stack.socket_api import AF_INET6, Address

if TYPE_CHECKING:
    from vipernet.netd.service import SocketEntry

log = logging.getLogger("vipernet.netd")

ADDRESS = struct.Struct("!4sH")
ERROR = struct.Struct("!4sHH")  # 0.0.0.0, port 0, errno
ADDRESS6 = struct.Struct("!16sH")
ERROR6 = struct.Struct("!16sHH")  # ::, port 0, errno
MAX_PENDING = 64  # messages for the program held while its descriptor is full
MAX_DATAGRAM = 65535
BATCH = 64  # datagrams per direction per wake-up, so one busy socket cannot hog the loop


class DatagramLink(DescriptorLink):
    """The pump between one UDP socket and netd's end of its seqpacket pair."""

    __slots__ = ("error", "header", "held", "ip_type", "none")

    def __init__(self, plane: LinkPlane, entry: SocketEntry, end: socket.socket) -> None:
        super().__init__(plane, entry, end)
        self.held: deque[bytes] = deque()  # messages for the program the fd had no room for
        # The socket's family fixes the header of every message (see the module text).
        six = entry.family == AF_INET6
        self.header = ADDRESS6 if six else ADDRESS
        self.error = ERROR6 if six else ERROR
        self.ip_type: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = (
            ipaddress.IPv6Address if six else ipaddress.IPv4Address)
        self.none = bytes(16 if six else 4)  # the all-zero address: peer / error marker

    def pump(self, now: float) -> None:
        if self.closed:
            return
        self._from_app(now)
        if not self.closed:
            self._from_net()
        if not self.closed:
            self._interest()

    def _from_app(self, now: float) -> None:
        sock = self.entry.sock
        header = self.header
        for _ in range(BATCH):
            try:
                message = self.end.recv(header.size + MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                self.close(now)
                return
            if not message:  # seqpacket EOF: the program closed the descriptor
                self.close(now)
                return
            if len(message) < header.size:
                self.plane.service.count("fdlink.udp_malformed")
                continue
            raw_ip, port = header.unpack_from(message)
            payload = memoryview(message)[header.size:]
            try:
                if raw_ip == self.none and port == 0:
                    sock.send(payload, now)
                else:
                    sock.sendto(payload, (str(self.ip_type(raw_ip)), port), now)
            except BlockingIOError:
                self.plane.service.count("fdlink.udp_dropped")
            except OSError as exc:
                self._error(exc.errno or errno.EIO)

    def _from_net(self) -> None:
        sock = self.entry.sock
        held = self.held
        for _ in range(BATCH):
            if not held:
                try:
                    data, source = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self._error(exc.errno or errno.EIO)
                    continue
                held.append(self._header(source) + data)
            try:
                self.end.send(held[0])
            except BlockingIOError:
                return
            except OSError:
                self.close(self.plane.clock())
                return
            held.popleft()

    def _header(self, source: Address) -> bytes:
        host = str(source[0]).split("%", 1)[0]
        return self.header.pack(self.ip_type(host).packed, source[1])

    def _error(self, err: int) -> None:
        self.plane.service.count("fdlink.udp_errors")
        if len(self.held) < MAX_PENDING:
            self.held.append(self.error.pack(self.none, 0, err))

    def _interest(self) -> None:
        self.watch(selectors.EVENT_READ | (selectors.EVENT_WRITE if self.held else 0))
