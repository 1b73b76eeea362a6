"""``--link user``: a device whose far end is a user-mode gateway (no root, no TAP).

The stack's frames go to :class:`SlirpDevice`, whose other side is a complete network
made of three parts (all inside the calling process, driven by the caller's loop):

* a **gateway stack**: a second vipernet :class:`~vipernet.stack.Stack` at 10.0.2.2 (MAC
  52:54:00:12:35:02) that answers ARP and ping and terminates the guest's TCP and UDP;
* the **NAT** (:mod:`.nat`) in front of it, which turns a packet to any ``D:port`` into
  one for the gateway's single relay port, remembering ``D:port`` per flow; ARP requests
  for the DNS address 10.0.2.3 are answered with the gateway's MAC here;
* the **relay**: for each flow, a host socket to where :meth:`SlirpConfig.host_target`
  says the destination really is (10.0.2.2 -> 127.0.0.1, 10.0.2.3:53 -> the host's
  resolver, others -> themselves unless ``restrict``), spliced to the gateway's socket.

A guest SYN is held until the host connect finishes, so a refused host port reaches the
guest as an RST (ECONNREFUSED), not as an accepted-then-closed connection.  The device
advertises checksum offload and TSO, so 64 KiB segments cross between the two stacks
unsplit, with partial checksums that the NAT patches incrementally.

All host sockets sit in one epoll set whose fd is :meth:`fileno`, so the runtime's
selector wakes for any of them; :meth:`receive` then services host sockets, runs the
gateway's timers and returns the frames for the guest.

The gateway also answers DHCP (:mod:`.dhcp_server`: 10.0.2.15/24, router 10.0.2.2, DNS
10.0.2.3), so ``--link user --ip dhcp`` works as with QEMU.

Not covered: ICMP to anything but 10.0.2.2 (no unprivileged ICMP relay), IPv6.

The host-socket half lives in :mod:`.hostside` (a base class of :class:`SlirpDevice`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
from collections import deque
from ipaddress import IPv4Address, IPv4Interface
from typing import TypeVar

from vipernet.dhcp.codec import DhcpMessage, MessageType, parse_dhcp
from vipernet.errors import ProtocolError
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.slirp.config import Forward, SlirpConfig
from vipernet.slirp.dhcp_server import answer
from vipernet.slirp.hostside import SWEEP_INTERVAL, HostSide, SlirpCounters
from vipernet.slirp.nat import (
    ETH,
    RELAY_PORT,
    TCP,
    UDP,
    Flow,
    FlowTable,
    Packet,
    inspect,
    to_gateway,
    to_guest,
)
from vipernet.slirp.relay import TcpRelay, UdpRelay
from vipernet.slirp.replies import arp_reply, dhcp_reply_frame, rst_for
from vipernet.stack import Stack, StackConfig
from vipernet.wire.arp import ArpOp, parse_arp
from vipernet.wire.ethernet import EtherType
from vipernet.wire.tcp import TcpFlags

log = logging.getLogger(__name__)

MAX_GSO_FRAME = 65535 + ETH
_SYN, _ACK, _RST = int(TcpFlags.SYN), int(TcpFlags.ACK), int(TcpFlags.RST)
_FRAGMENT_MEMORY = 256  # datagrams whose later fragments we still expect
_K = TypeVar("_K")


class SlirpDevice(HostSide):
    """A :class:`~vipernet.link.frame.Device` with a user-mode gateway behind it.

    The frame side (guest <-> gateway, the NAT) is here; the host-socket side (one socket
    per flow, the splice pump, UDP, the idle sweep, port forwards) is :class:`HostSide`.
    """

    def __init__(self, config: SlirpConfig | None = None, *, mtu: int = 1500, now: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.config = config or SlirpConfig()
        self.name = "user"
        self.capabilities = DeviceCapabilities(mtu=mtu, tx_csum_offload=True, tso=True,
                                               max_frame=MAX_GSO_FRAME)
        self.counters = SlirpCounters()
        cfg = self.config
        self.gateway = Stack(
            StackConfig(mac=cfg.gateway_mac,
                        ip=IPv4Interface(f"{cfg.gateway}/{cfg.network.network.prefixlen}"),
                        gateway=None, dns=(), mtu=mtu),
            capabilities=self.capabilities, now=now, rng=rng or random.Random())
        self._gw_ip = cfg.gateway.packed
        self._dns_ip = cfg.dns.packed
        self._guest_ip = IPv4Address("10.0.2.15").packed  # learned from the guest's frames
        self._guest_mac = b""
        self._listener = self.gateway.tcp_socket()
        self._listener.bind(("", RELAY_PORT))
        self._listener.listen(1024)
        self._udp = self.gateway.udp_socket()
        self._udp.bind(("", RELAY_PORT))
        self.flows = FlowTable()
        self._epoll = select.epoll()
        self._by_fd: dict[int, object] = {}
        self._relays: set[TcpRelay] = set()
        self._local_ports: set[int] = set()  # gateway-side ports of forwarded connections
        self._inbox: deque[Frame] = deque()
        # First fragment seen -> flow, so later fragments (no ports) follow the same way.
        self._frag_out: dict[tuple[bytes, int], Flow] = {}
        self._frag_in: dict[int, Flow] = {}
        self._dirty = False
        self._last_now = now
        self._next_sweep = now + SWEEP_INTERVAL
        self._forward_listeners: dict[int, tuple[socket.socket, Forward]] = {}
        self._closed = False
        try:
            for forward in cfg.forwards:
                self._listen_forward(forward)
        except BaseException:
            self.close()
            raise

    # -- Device -----------------------------------------------------------------------------

    def fileno(self) -> int | None:
        return None if self._closed else self._epoll.fileno()

    def next_deadline(self) -> float | None:
        if self._inbox or self._dirty:
            return self._last_now
        due = [d for d in (self.gateway.next_deadline(),
                           self._next_sweep if len(self.flows) or self._relays else None)
               if d is not None]
        return min(due) if due else None

    def send(self, frame: Frame, now: float) -> None:
        """A frame from the guest stack."""
        self._last_now = now
        try:
            self._from_guest(frame, now)
        except Exception:  # a bug in the gateway must not take the guest's loop down
            self.counters["internal_error"] += 1
            log.exception("slirp: internal error on a guest frame")

    def receive(self, now: float) -> list[Frame]:
        """Service host sockets and the gateway; return the frames for the guest."""
        self._last_now = now
        self._dirty = False
        try:
            for fd, events in self._epoll.poll(0):
                self._on_fd(fd, events, now)
            gw = self.gateway
            due = gw.next_deadline()
            if due is not None and due <= now:
                gw.poll(now)
            gw.take_changed()  # readiness is polled below, not tracked: keep the set empty
            self._accept(now)
            self._udp_from_gateway(now)
            for relay in list(self._relays):
                self._pump(relay, now)
            if now >= self._next_sweep:
                self._sweep(now)
            for out in gw.transmit():
                self._to_guest(out)
        except Exception:
            self.counters["internal_error"] += 1
            log.exception("slirp: internal error in the gateway")
        frames = list(self._inbox)
        self._inbox.clear()
        return frames

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for relay in list(self._relays):
            with contextlib.suppress(OSError):
                relay.host.close()
        for udp in [r for r in self._by_fd.values() if isinstance(r, UdpRelay)]:
            with contextlib.suppress(OSError):
                udp.host.close()
        for sock, _ in self._forward_listeners.values():
            with contextlib.suppress(OSError):
                sock.close()
        self._relays.clear()
        self._by_fd.clear()
        self._epoll.close()

    def forward_address(self, forward: Forward) -> tuple[str, int]:
        """Where a forward listens (its port is chosen by the kernel when 0 was asked)."""
        for sock, fwd in self._forward_listeners.values():
            if fwd is forward:
                host, port = sock.getsockname()[:2]
                return (str(host), int(port))
        raise KeyError(forward)

    # -- guest -> gateway --------------------------------------------------------------------

    def _from_guest(self, frame: Frame, now: float) -> None:
        data = frame.data
        if len(data) < ETH:
            self.counters["guest.runt"] += 1
            return
        ethertype = (data[12] << 8) | data[13]
        if ethertype == EtherType.ARP:
            self._guest_arp(frame, now)
            return
        if ethertype != EtherType.IPV4:
            self.counters["guest.not_ipv4"] += 1
            return
        self._guest_mac = bytes(data[6:12])
        packet = inspect(data)
        if packet is not None and packet.proto == UDP and packet.dport == 67 \
                and not packet.fragment:
            self._dhcp(frame, packet)
            return
        if packet is not None and packet.fragment:
            # A later fragment: only its addresses change, like its first fragment's did.
            flow = self._frag_out.get((packet.src, packet.ident))
            if flow is not None:
                self._translate_in(frame, packet, flow, now)
                return
            packet = None
        if packet is None:
            # ICMP (ping 10.0.2.2) and anything else for the gateway itself goes in untouched.
            if len(data) >= ETH + 20 and bytes(data[ETH + 16:ETH + 20]) == self._gw_ip:
                self._to_gateway(frame, now)
            else:
                self.counters["guest.unrelayed"] += 1
            return
        self._guest_ip = packet.src
        if packet.dst == self._gw_ip and packet.proto == TCP and packet.dport in self._local_ports:
            self._to_gateway(frame, now)  # a forwarded connection's gateway-side end
            return
        flow = self.flows.find(packet)
        if flow is not None and flow.relay is None and packet.proto == TCP and (
                packet.tcp_flags & (_SYN | _ACK | _RST)) == _SYN:
            self.flows.remove(flow)  # the guest reuses the port of a finished connection
            flow = None
        if flow is None:
            flow = self._new_flow(frame, packet, now)
            if flow is None:
                return
        flow.last_used = now
        relay = flow.relay
        if isinstance(relay, TcpRelay) and relay.connecting:
            relay.held_syn = frame  # a retransmitted SYN while the host connect runs
            return
        if packet.more:
            _remember(self._frag_out, (packet.src, packet.ident), flow)
        if isinstance(relay, UdpRelay):
            relay.quote = bytes(data[ETH:packet.l4 + 8])
        self._translate_in(frame, packet, flow, now)

    def _translate_in(self, frame: Frame, packet: Packet, flow: Flow, now: float) -> None:
        data = bytearray(frame.data)
        partial = frame.offload is not None and frame.offload.needs_csum
        to_gateway(data, packet, flow, self._gw_ip, partial=partial)
        self._to_gateway(Frame(data, frame.offload), now)

    def _to_gateway(self, frame: Frame, now: float) -> None:
        self.gateway.receive(frame, now)
        self._dirty = True

    def _guest_arp(self, frame: Frame, now: float) -> None:
        try:
            arp = parse_arp(memoryview(frame.data)[ETH:])
        except Exception:
            self.counters["guest.bad_arp"] += 1
            return
        if arp.op == ArpOp.REQUEST and arp.target_ip == self.config.dns:
            self._inbox.append(arp_reply(arp, self.config.gateway_mac))
            self.counters["arp.dns_answered"] += 1
            return
        self._to_gateway(frame, now)

    def _dhcp(self, frame: Frame, packet: Packet) -> None:
        """Answer the guest's DHCP (see :mod:`.dhcp_server`); replies are broadcast."""
        try:
            request = parse_dhcp(memoryview(frame.data)[packet.l4 + 8:])
        except ProtocolError:
            self.counters["dhcp.malformed"] += 1
            return
        cfg = self.config
        reply = answer(request, address=cfg.guest, server=cfg.gateway, dns=cfg.dns)
        if reply is None:
            self.counters["dhcp.ignored"] += 1
            return
        self._inbox.append(dhcp_reply_frame(reply, cfg.gateway, cfg.gateway_mac))
        self.counters[f"dhcp.{_type_name(reply)}"] += 1

    def _new_flow(self, frame: Frame, packet: Packet, now: float) -> Flow | None:
        if packet.proto == TCP and (packet.tcp_flags & (_SYN | _ACK | _RST)) != _SYN:
            # A segment of a flow we never saw or long forgot: dropped, as a NAT would.
            self.counters["tcp.no_flow"] += 1
            return None
        if len(self.flows) >= self.config.max_flows:
            self.counters["nat.full"] += 1
            return None
        target = self.config.host_target(IPv4Address(packet.dst), packet.dport)
        if target is None:
            self.counters[f"{_pname(packet.proto)}.refused"] += 1
            if packet.proto == TCP:
                self._reset_guest(frame, packet)
            return None
        flow = self.flows.create(packet, now)
        if flow is None:
            self.counters["nat.full"] += 1
            return None
        try:
            if packet.proto == TCP:
                flow.relay = self._connect_host(flow, target, frame)
            else:
                flow.relay = self._open_udp(flow, target)
        except OSError as exc:
            self.flows.remove(flow)
            self.counters[f"{_pname(packet.proto)}.host_error"] += 1
            log.debug("slirp: cannot reach %s: %s", target, exc)
            if packet.proto == TCP:
                self._reset_guest(frame, packet)
            return None
        self.counters[f"{_pname(packet.proto)}.flows"] += 1
        return flow

    # -- gateway -> guest ---------------------------------------------------------------------

    def _to_guest(self, frame: Frame) -> None:
        data = frame.data
        packet = inspect(data)
        if packet is not None and packet.src == self._gw_ip and (
                packet.fragment or packet.sport == RELAY_PORT):
            if packet.fragment:
                flow = self._frag_in.get(packet.ident)
                if flow is None:
                    self._inbox.append(frame)  # the gateway's own (e.g. a big ping reply)
                    return
            else:
                flow = self.flows.by_alias.get((packet.proto, packet.dport))
                if flow is None:
                    self.counters["gateway.no_flow"] += 1
                    return
                if packet.more:
                    _remember(self._frag_in, packet.ident, flow)
            out = bytearray(data)
            partial = frame.offload is not None and frame.offload.needs_csum
            to_guest(out, packet, flow, partial=partial)
            self._inbox.append(Frame(out, frame.offload))
            return
        self._inbox.append(frame)

    def _reset_guest(self, frame: Frame, packet: Packet) -> None:
        """An RST from ``packet``'s destination, as a refusing host would send."""
        self._inbox.append(rst_for(frame, packet, self.config.gateway_mac))
        self.counters["tcp.rst_sent"] += 1


def _remember(table: dict[_K, Flow], key: _K, flow: Flow) -> None:
    table[key] = flow
    if len(table) > _FRAGMENT_MEMORY:
        del table[next(iter(table))]  # the oldest datagram's fragments are long gone


def _type_name(message: DhcpMessage) -> str:
    kind = message.message_type
    return kind.name.lower() if isinstance(kind, MessageType) else "other"


def _pname(proto: int) -> str:
    return "tcp" if proto == TCP else "udp"
