"""A UDP port forward: datagrams to a host port carried to the guest's port, and back.

One host socket listens at ``host_address:host_port``.  Each host peer (address, port)
that sends to it gets a gateway UDP socket of its own on an ephemeral port, which sends
the peer's datagrams to the guest's ``guest_port`` from 10.0.2.2; what the guest sends
back to that port goes to that peer from the forward's host port.  So the guest sees one
distinct source per host peer, as with QEMU's ``hostfwd=udp:...``, and answers reach the
right peer.  A peer silent for the gateway's UDP idle timeout is forgotten.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from vipernet.slirp.config import Forward

MAX_PEERS = 256  # host peers remembered per forward: the oldest is dropped beyond this
MAX_DATAGRAMS = 64  # per socket per call, so one busy peer cannot hold the loop


@dataclass(slots=True, eq=False)
class _Peer:
    address: tuple[str, int]
    gw: Any  # the gateway stack's UdpSocket for this peer
    last_used: float


class UdpForward:
    """One ``forward=udp:HOSTPORT:GUESTPORT`` (see the module docstring)."""

    def __init__(self, forward: Forward, gateway: Any) -> None:
        self.forward = forward
        self._gateway = gateway  # the gateway Stack: its udp_socket() makes peer sockets
        self.host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.host.bind((forward.host_address, forward.host_port))
            self.host.setblocking(False)
        except BaseException:
            self.host.close()
            raise
        self._peers: dict[tuple[str, int], _Peer] = {}

    def gateway_ports(self) -> set[int]:
        """The gateway-side ports of live peers (their frames are not translated)."""
        return {peer.gw.getsockname()[1] for peer in self._peers.values()}

    def from_host(self, guest_ip: bytes, now: float) -> int:
        """Carry what host peers sent to the guest; the number of datagrams carried."""
        carried = 0
        for _ in range(MAX_DATAGRAMS):
            try:
                data, address = self.host.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # an ICMP error about an earlier reply: nothing to tell
            peer = self._peers.get(address)
            if peer is None:
                peer = self._new_peer(address, now)
            peer.last_used = now
            with contextlib.suppress(OSError):
                peer.gw.sendto(data, (str(IPv4Address(guest_ip)), self.forward.guest_port), now)
                carried += 1
        return carried

    def from_guest(self, now: float) -> int:
        """Carry the guest's replies back to their host peers."""
        carried = 0
        for peer in self._peers.values():
            for _ in range(MAX_DATAGRAMS):
                try:
                    data, _source = peer.gw.recvfrom(65535)
                except BlockingIOError:
                    break
                except OSError:
                    continue  # the guest's port unreachable: the peer will time out
                peer.last_used = now
                with contextlib.suppress(OSError):
                    self.host.sendto(data, peer.address)
                    carried += 1
        return carried

    def sweep(self, now: float, idle: float) -> None:
        for address, peer in list(self._peers.items()):
            if now - peer.last_used >= idle:
                self._drop(address, now)

    def close(self, now: float) -> None:
        for address in list(self._peers):
            self._drop(address, now)
        self.host.close()

    def _new_peer(self, address: tuple[str, int], now: float) -> _Peer:
        if len(self._peers) >= MAX_PEERS:
            self._drop(next(iter(self._peers)), now)
        gw = self._gateway.udp_socket()
        gw.bind(("", 0))
        peer = _Peer(address=address, gw=gw, last_used=now)
        self._peers[address] = peer
        return peer

    def _drop(self, address: tuple[str, int], now: float) -> None:
        peer = self._peers.pop(address)
        peer.gw.close(now)
