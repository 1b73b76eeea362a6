"""The host-socket half of the user-mode gateway: where each relayed flow meets the host.

:class:`~.device.SlirpDevice` translates frames between the guest and the gateway stack;
this base class owns what happens on the host's side of each flow:

* a non-blocking ``connect()`` per TCP flow (the guest's SYN is held until it finishes,
  then let in or answered with an RST), registered in the device's one epoll set;
* the splice pump between the gateway's socket and the host socket (:mod:`.relay`), whose
  epoll interest follows the buffers, so a full buffer stops reading the other side;
* UDP: datagrams from the gateway's relay socket to a connected host socket per flow and
  back; a host "port unreachable" becomes an ICMP (ICMPv6) error to the guest;
* the sweep: handshakes that never finish, lingering TCP translations, idle UDP flows;
* port forwards: a host listener whose connections the gateway opens to the guest.

The host socket's family is the target's (:meth:`SlirpConfig.host_target`), whatever the
guest's: [fec0::2]:P is an AF_INET6 connection to [::1]:P, [fec0::3]:53 may well be an
AF_INET one to an IPv4 resolver.  The gateway has one TCP listener and one UDP socket per
family; both name a flow by its alias port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
from collections import Counter, deque
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from vipernet.link.frame import Frame
from vipernet.slirp.config import Forward, SlirpConfig
from vipernet.slirp.nat import TCP, UDP, Flow, FlowTable, Packet, inspect
from vipernet.slirp.relay import TcpRelay, UdpRelay, splice
from vipernet.slirp.replies import port_unreachable, port_unreachable6
from vipernet.slirp.udp_forward import UdpForward
from vipernet.stack import Stack

log = logging.getLogger("vipernet.slirp.device")  # one logger for the whole gateway

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
SWEEP_INTERVAL = 5.0


class SlirpCounters(Counter[str]):
    """Named tallies of the gateway's accept/drop branches (``vipernet info`` shows them)."""

    def snapshot(self) -> dict[str, int]:
        return dict(self)


class HostSide:
    """Host sockets of a :class:`~.device.SlirpDevice` (state is set up by its __init__)."""

    config: SlirpConfig
    counters: SlirpCounters
    gateway: Stack
    flows: FlowTable
    _epoll: Any  # select.epoll
    _by_fd: dict[int, object]
    _relays: set[TcpRelay]
    _local_ports: set[int]
    _inbox: deque[Frame]
    _forward_listeners: dict[int, tuple[socket.socket, Forward]]
    _udp_forwards: dict[int, UdpForward]  # by host socket fd
    _listener: Any  # the gateway's TCP relay listener
    _udp: Any  # the gateway's UDP relay socket
    _listener6: Any  # their IPv6 twins (None with ipv6=off)
    _udp6: Any
    _dns_ip: bytes
    _dns_ip6: bytes
    _guest_ip: bytes
    _guest_mac: bytes
    _last_now: float
    _next_sweep: float
    _dirty: bool

    # Provided by the device (the frame side).
    def _reset_guest(self, frame: Frame, packet: Packet) -> None:
        raise NotImplementedError

    def _translate_in(self, frame: Frame, packet: Packet, flow: Flow, now: float) -> None:
        raise NotImplementedError

    # -- opening host sockets -----------------------------------------------------------------

    def _connect_host(self, flow: Flow, target: tuple[str, int], syn: Frame) -> TcpRelay:
        sock = socket.socket(_family(target), socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex(target)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect to {target}: {errno.errorcode.get(err, err)}")
        except BaseException:
            sock.close()
            raise
        relay = TcpRelay(flow=flow, host=sock, held_syn=syn, guest_mac=bytes(syn.data[6:12]),
                         created=self._last_now)
        self._register(relay, sock, _OUT)
        self._relays.add(relay)
        return relay

    def _open_udp(self, flow: Flow, target: tuple[str, int]) -> UdpRelay:
        sock = socket.socket(_family(target), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        relay = UdpRelay(flow=flow, host=sock)
        self._by_fd[sock.fileno()] = relay
        self._epoll.register(sock.fileno(), _IN)
        return relay

    # -- host socket events -------------------------------------------------------------------

    def _register(self, relay: TcpRelay, sock: socket.socket, interest: int) -> None:
        self._by_fd[sock.fileno()] = relay
        self._epoll.register(sock.fileno(), interest)
        relay.interest = interest

    def _on_fd(self, fd: int, events: int, now: float) -> None:
        owner = self._by_fd.get(fd)
        if isinstance(owner, UdpRelay):
            self._udp_from_host(owner, now)
        elif isinstance(owner, TcpRelay):
            if owner.connecting and owner.flow is not None:
                self._host_connected(owner, now)
        elif fd in self._forward_listeners:
            self._accept_forward(fd, now)
        elif fd in self._udp_forwards and self._udp_forwards[fd].from_host(self._guest_ip, now):
            self._dirty = True

    def _host_connected(self, relay: TcpRelay, now: float) -> None:
        err = relay.host.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.EINPROGRESS:
            return
        flow = relay.flow
        syn = relay.held_syn
        relay.connecting = False
        relay.held_syn = None
        if flow is None or syn is None:
            return
        packet = inspect(syn.data)
        if err != 0 or packet is None:
            self.counters["tcp.host_refused"] += 1
            if packet is not None:
                self._reset_guest(syn, packet)
            self._drop_relay(relay)
            return
        self._set_interest(relay, _IN)
        self._translate_in(syn, packet, flow, now)

    def _accept(self, now: float) -> None:
        for listener in _relay_sockets(self._listener, self._listener6):
            self._accept_from(listener, now)

    def _accept_from(self, listener: Any, now: float) -> None:
        while True:
            try:
                sock = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("slirp: accept failed: %s", exc)
                return
            try:
                alias = sock.getpeername()[1]  # (G, alias) or (G, alias, flowinfo, scope)
            except OSError:
                sock.close(now)
                continue
            flow = self.flows.by_alias.get((TCP, alias))
            relay = flow.relay if flow is not None else None
            if not isinstance(relay, TcpRelay) or relay.gw is not None:
                self.counters["tcp.accept_without_flow"] += 1
                sock.close(now)
                continue
            relay.gw = sock

    def _pump(self, relay: TcpRelay, now: float) -> None:
        if relay.gw is None or relay.connecting:
            return
        limit = self.config.buffer_limit
        try:
            finished = splice(relay, limit, now)
        except OSError as exc:
            self.counters["tcp.relay_error"] += 1
            log.debug("slirp: relay ended by %s", exc)
            self._drop_relay(relay, now)
            return
        if finished:
            self._drop_relay(relay, now)
            return
        if not relay.guest_eof and len(relay.to_host) < limit and relay.gw.readable:
            # The host took everything and the guest's socket holds more: nothing else
            # would wake us for it (the gateway stack's readiness is polled, not
            # signalled), so ask to be called again at once.
            self._dirty = True
        want = 0
        if not relay.host_eof and len(relay.to_guest) < limit:
            want |= _IN
        if relay.to_host:
            want |= _OUT
        self._set_interest(relay, want)

    def _set_interest(self, relay: TcpRelay, want: int) -> None:
        if want != relay.interest:
            self._epoll.modify(relay.host.fileno(), want)
            relay.interest = want

    def _drop_relay(self, relay: TcpRelay, now: float | None = None) -> None:
        self._relays.discard(relay)
        fd = relay.host.fileno()
        if fd >= 0:
            self._by_fd.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        relay.host.close()
        if relay.gw is not None:
            relay.gw.close(self._last_now if now is None else now)
            relay.gw = None
        if relay.flow is not None:
            # The translation outlives the relay: the gateway's socket still has to deliver
            # what it holds, exchange FINs and hear the last ACKs.  The sweep forgets it.
            relay.flow.relay = None
            relay.flow.last_used = self._last_now if now is None else now
        self._local_ports.discard(relay.local_port)
        self._dirty = True

    # -- UDP ----------------------------------------------------------------------------------

    def _udp_from_gateway(self, now: float) -> None:
        for sock in _relay_sockets(self._udp, self._udp6):
            self._udp_from_relay(sock, now)
        for forward in self._udp_forwards.values():
            forward.from_guest(now)

    def _udp_from_relay(self, sock: Any, now: float) -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error about an earlier datagram: nothing to tell
            alias = peer[1]
            flow = self.flows.by_alias.get((UDP, alias))
            if flow is None or not isinstance(flow.relay, UdpRelay):
                self.counters["udp.no_flow"] += 1
                continue
            flow.last_used = now
            try:
                flow.relay.host.send(data)
                self.counters["udp.to_host"] += 1
            except OSError as exc:
                self.counters["udp.host_error"] += 1
                log.debug("slirp: udp send failed: %s", exc)

    def _udp_from_host(self, relay: UdpRelay, now: float) -> None:
        flow = relay.flow
        for _ in range(64):
            try:
                data = relay.host.recv(65535)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                # The host said "port unreachable": tell the guest the same way.
                self.counters["udp.unreachable_sent"] += 1
                if relay.quote and self._guest_mac:
                    self._inbox.append(self._unreachable(relay))
                continue
            except OSError:
                self.counters["udp.host_error"] += 1
                continue
            flow.last_used = now
            try:
                if flow.ipv6:
                    self._udp6.sendto(data, (str(IPv6Address(flow.guest_ip)), flow.alias), now)
                else:
                    self._udp.sendto(data, (str(IPv4Address(flow.guest_ip)), flow.alias), now)
                self.counters["udp.to_guest"] += 1
            except OSError as exc:
                self.counters["udp.gateway_error"] += 1
                log.debug("slirp: udp to guest failed: %s", exc)

    def _unreachable(self, relay: UdpRelay) -> Frame:
        """Port unreachable from the flow's destination, in the flow's family."""
        flow, mac = relay.flow, self.config.gateway_mac
        if flow.ipv6:
            return port_unreachable6(relay.quote, src=IPv6Address(flow.dest_ip),
                                     dst_mac=self._guest_mac, gateway_mac=mac)
        return port_unreachable(relay.quote, src=IPv4Address(flow.dest_ip),
                                dst_mac=self._guest_mac, gateway_mac=mac)

    # -- the sweep ----------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        for forward in self._udp_forwards.values():
            forward.sweep(now, self.config.udp_idle_timeout)
        for relay in list(self._relays):
            # Host connected and the SYN went in, but the guest never finished the handshake.
            if relay.gw is None and relay.flow is not None and not relay.connecting and \
                    now - relay.created >= self.config.handshake_timeout:
                self.counters["tcp.handshake_timeout"] += 1
                self._drop_relay(relay, now)
        for flow in self.flows.flows():
            relay = flow.relay
            if relay is None and now - flow.last_used >= self.config.tcp_linger:
                self.flows.remove(flow)
                continue
            if not isinstance(relay, UdpRelay):
                continue
            timeout = (self.config.dns_idle_timeout
                       if flow.dest_ip in (self._dns_ip, self._dns_ip6)
                       else self.config.udp_idle_timeout)
            if now - flow.last_used >= timeout:
                self._by_fd.pop(relay.host.fileno(), None)
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(relay.host.fileno())
                relay.host.close()
                self.flows.remove(flow)
                self.counters["udp.expired"] += 1

    # -- port forwarding ----------------------------------------------------------------------

    def _listen_forward(self, forward: Forward) -> None:
        if forward.protocol == "udp":
            udp = UdpForward(forward, self.gateway)
            self._udp_forwards[udp.host.fileno()] = udp
            self._epoll.register(udp.host.fileno(), _IN)
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((forward.host_address, forward.host_port))
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._forward_listeners[sock.fileno()] = (sock, forward)
        self._epoll.register(sock.fileno(), _IN)

    def _accept_forward(self, fd: int, now: float) -> None:
        listener, forward = self._forward_listeners[fd]
        while True:
            try:
                conn, _peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            gw = self.gateway.tcp_socket()
            try:
                gw.connect((str(IPv4Address(self._guest_ip)), forward.guest_port), now)
            except BlockingIOError:
                pass
            except OSError:
                conn.close()
                gw.close(now)
                continue
            relay = TcpRelay(flow=None, host=conn, gw=gw, connecting=False)
            relay.local_port = gw.getsockname()[1]
            self._local_ports.add(relay.local_port)
            self._register(relay, conn, _IN)
            self._relays.add(relay)
            self.counters["tcp.forwarded"] += 1
            self._dirty = True



def _family(target: tuple[str, int]) -> socket.AddressFamily:
    """The host socket family for ``target`` (an IPv6 literal has a colon, IPv4 never)."""
    return socket.AF_INET6 if ":" in target[0] else socket.AF_INET


def _relay_sockets(ipv4: Any, ipv6: Any) -> Iterator[Any]:
    """The gateway's relay socket of each family (no IPv6 one with ``ipv6=off``)."""
    yield ipv4
    if ipv6 is not None:
        yield ipv6
