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

IPv6 is libslirp's layout, built the same way: the gateway stack also holds fec0::2/64
(and its link-local address from the MAC) and listens on the relay port over IPv6; the
NAT sends every guest TCP/UDP packet to fec0::2; fec0::2:P is relayed to the host's
[::1]:P, fec0::3:53 to the same resolver as 10.0.2.3, other global addresses to
themselves over host AF_INET6 sockets.  What a router does on the link is done here, as
ARP for 10.0.2.3 is: Router Advertisements (:mod:`.router_adv`; fec0::/64 for SLAAC,
fec0::3 by RDNSS), periodic and in answer to Router Solicitations, and the Neighbor
Advertisements for fec0::2, fec0::3 and the link-local address (with the Router flag).

Not covered: ICMP to anything but 10.0.2.2 / fec0::2 (no unprivileged ICMP relay).

The host-socket half lives in :mod:`.hostside` (a base class of :class:`SlirpDevice`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
from collections import deque
from ipaddress import IPv4Interface, IPv6Interface, ip_address
from typing import Any, TypeVar

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
from vipernet.slirp.replies import (
    arp_reply,
    dhcp_reply_frame,
    neighbor_advertisement,
    router_advertisement,
    rst_for,
)
from vipernet.slirp.router_adv import Advertiser, advertisement
from vipernet.slirp.udp_forward import UdpForward
from vipernet.stack import Stack, StackConfig
from vipernet.stack.socket_api import AF_INET6
from vipernet.wire.arp import ArpOp, parse_arp
from vipernet.wire.errors import WireError
from vipernet.wire.ethernet import EtherType
from vipernet.wire.icmpv6 import Icmpv6Other, Icmpv6Type, parse_icmpv6
from vipernet.wire.ipv6 import ALL_NODES, link_local_from_mac, multicast_mac, parse_ipv6
from vipernet.wire.ndp import (
    NeighborSolicitation,
    RouterSolicitation,
    ndp_message_valid,
    parse_ndp,
)
from vipernet.wire.ndp_options import SourceLinkLayerAddress, first_option
from vipernet.wire.tcp import TcpFlags

log = logging.getLogger(__name__)

MAX_GSO_FRAME = 65535 + ETH
_SYN, _ACK, _RST = int(TcpFlags.SYN), int(TcpFlags.ACK), int(TcpFlags.RST)
_FRAGMENT_MEMORY = 256  # datagrams whose later fragments we still expect
_K = TypeVar("_K")
_ICMPV6 = 58
# NDP types a router answers or owns: the guest's RS and NS are answered here; an RA or a
# Redirect from the guest is dropped (we are the link's only router, and the gateway
# stack, an IPv6 host, would otherwise take its routes and prefixes from the guest).
_RS, _RA, _NS, _REDIRECT = (int(Icmpv6Type.ROUTER_SOLICITATION),
                            int(Icmpv6Type.ROUTER_ADVERTISEMENT),
                            int(Icmpv6Type.NEIGHBOR_SOLICITATION), int(Icmpv6Type.REDIRECT))


class SlirpDevice(HostSide):
    """A :class:`~vipernet.link.frame.Device` with a user-mode gateway behind it.

    The frame side (guest <-> gateway, the NAT) is here; the host-socket side (one socket
    per flow, the splice pump, UDP, the idle sweep, port forwards) is :class:`HostSide`.
    """

    def __init__(self, config: SlirpConfig | None = None, *, mtu: int = 1500, now: float = 0.0,
                 rng: random.Random | None = None, offloads: bool = True) -> None:
        """``offloads``: the guest takes (and sends) 64 KiB TSO frames with partial
        checksums.  A guest on a wire that cannot carry them (QEMU's stream and datagram
        backends) gets False, so the gateway stack itself cuts MSS-sized segments."""
        self.config = config or SlirpConfig()
        self.name = "user"
        self.capabilities = DeviceCapabilities(
            mtu=mtu, tx_csum_offload=offloads, tso=offloads,
            max_frame=MAX_GSO_FRAME if offloads else mtu + ETH)
        self.counters = SlirpCounters()
        cfg = self.config
        rng = rng or random.Random()
        self.gateway = Stack(
            StackConfig(mac=cfg.gateway_mac,
                        ip=IPv4Interface(f"{cfg.gateway}/{cfg.network.network.prefixlen}"),
                        gateway=None, dns=(), mtu=mtu, **_gateway_ip6(cfg)),
            capabilities=self.capabilities, now=now, rng=rng)
        self._gw_ip = cfg.gateway.packed
        self._dns_ip = cfg.dns.packed
        self._gw_ip6 = cfg.gateway6.packed
        self._dns_ip6 = cfg.dns6.packed
        self._gw_link_local = link_local_from_mac(cfg.gateway_mac)
        # Where the gateway stack's relay sockets send from: replies to translate back.
        self._gw_sources = {self._gw_ip, self._gw_ip6, self._gw_link_local.packed}
        self._guest_ip = cfg.guest.ip.packed  # learned from the guest's frames
        self._guest_mac = b""
        self._listener = self.gateway.tcp_socket()
        self._listener.bind(("", RELAY_PORT))
        self._listener.listen(1024)
        self._udp = self.gateway.udp_socket()
        self._udp.bind(("", RELAY_PORT))
        self._listener6: Any = None
        self._udp6: Any = None
        self._advertiser: Advertiser | None = None
        if cfg.ipv6:
            self._open_relay6()
            self._advertiser = Advertiser(now, rng)
            self._ra_frame = router_advertisement(
                advertisement(prefix=cfg.network6, dns=cfg.dns6, mac=cfg.gateway_mac,
                              mtu=mtu),
                src=self._gw_link_local, gateway_mac=cfg.gateway_mac)
        self.flows = FlowTable()
        self._epoll = select.epoll()
        self._by_fd: dict[int, object] = {}
        self._relays: set[TcpRelay] = set()
        self._local_ports: set[int] = set()  # gateway-side ports of forwarded connections
        self._inbox: deque[Frame] = deque()
        # First fragment seen -> flow, so later fragments (no ports) follow the same way.
        self._frag_out: dict[tuple[bytes, int], Flow] = {}
        self._frag_in: dict[tuple[bytes, int], Flow] = {}  # (gateway address, ident)
        self._dirty = False
        self._last_now = now
        self._next_sweep = now + SWEEP_INTERVAL
        self._forward_listeners: dict[int, tuple[socket.socket, Forward]] = {}
        self._udp_forwards: dict[int, UdpForward] = {}
        self._closed = False
        try:
            for forward in cfg.forwards:
                self._listen_forward(forward)
        except BaseException:
            self.close()
            raise

    def _open_relay6(self) -> None:
        """The gateway's IPv6 relay sockets: the same port as IPv4's, IPv6 only (V6ONLY),
        so the two families' sockets share it as on Linux."""
        self._listener6 = self.gateway.tcp_socket(AF_INET6)
        self._listener6.setsockopt("IPV6_V6ONLY", 1)
        self._listener6.bind(("::", RELAY_PORT))
        self._listener6.listen(1024)
        self._udp6 = self.gateway.udp_socket(AF_INET6)
        self._udp6.setsockopt("IPV6_V6ONLY", 1)
        self._udp6.bind(("::", RELAY_PORT))

    # -- Device -----------------------------------------------------------------------------

    def fileno(self) -> int | None:
        return None if self._closed else self._epoll.fileno()

    def next_deadline(self) -> float | None:
        if self._inbox or self._dirty:
            return self._last_now
        due = [d for d in (self.gateway.next_deadline(),
                           self._next_sweep if len(self.flows) or self._relays else None,
                           self._advertiser.due if self._advertiser is not None else None)
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
            if self._advertiser is not None and self._advertiser.take(now):
                self._inbox.append(self._ra_frame)
                self.counters["ndp.ra_sent"] += 1
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
        for udp_forward in self._udp_forwards.values():
            with contextlib.suppress(OSError):
                udp_forward.close(self._last_now)
        self._relays.clear()
        self._by_fd.clear()
        self._epoll.close()

    def forward_address(self, forward: Forward) -> tuple[str, int]:
        """Where a forward listens (its port is chosen by the kernel when 0 was asked)."""
        listening = [sock for sock, fwd in self._forward_listeners.values() if fwd is forward]
        listening += [f.host for f in self._udp_forwards.values() if f.forward is forward]
        for sock in listening:
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
        if ethertype == EtherType.IPV6:
            if self._advertiser is None:
                self.counters["guest.ipv6_off"] += 1
                return
            if self._guest_ndp(frame, now):
                return
        elif ethertype != EtherType.IPV4:
            self.counters["guest.not_ip"] += 1
            return
        self._guest_mac = bytes(data[6:12])
        packet = inspect(data)
        if packet is not None and packet.proto == UDP and packet.dport == 67 \
                and not packet.fragment and not packet.ipv6:
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
            if self._for_gateway_itself(data):
                self._to_gateway(frame, now)
            else:
                self.counters["guest.unrelayed"] += 1
            return
        if not packet.ipv6:
            self._guest_ip = packet.src
        if packet.dst == self._gw_ip and self._gateway_side_port(packet):
            self._to_gateway(frame, now)  # a forward's own gateway-side end
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

    def _gateway_side_port(self, packet: Packet) -> bool:
        """A port of the gateway's own end of a forward (TCP connection or UDP peer)."""
        if packet.proto == TCP:
            return packet.dport in self._local_ports
        return any(packet.dport in f.gateway_ports() for f in self._udp_forwards.values())

    def _translate_in(self, frame: Frame, packet: Packet, flow: Flow, now: float) -> None:
        data = bytearray(frame.data)
        partial = frame.offload is not None and frame.offload.needs_csum
        to_gateway(data, packet, flow, self._gw_ip6 if packet.ipv6 else self._gw_ip,
                   partial=partial)
        self._to_gateway(Frame(data, frame.offload), now)

    def _for_gateway_itself(self, data: bytes | bytearray | memoryview) -> bool:
        """A packet the gateway stack takes as it is: to 10.0.2.2, or over IPv6 to one of
        its addresses or to a group (its own stack drops groups it is not in)."""
        if data[12] == 0x86:
            if len(data) < ETH + 40:
                return False
            dst = bytes(data[ETH + 24:ETH + 40])
            return dst[0] == 0xFF or dst in self._gw_sources
        return len(data) >= ETH + 20 and bytes(data[ETH + 16:ETH + 20]) == self._gw_ip

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

    def _guest_ndp(self, frame: Frame, now: float) -> bool:
        """The guest's Router and Neighbor Solicitations for the gateway: answered here
        (True: consumed).  Other IPv6 goes on to the NAT and the gateway stack."""
        data = frame.data
        if len(data) < ETH + 44 or data[ETH + 6] != _ICMPV6 or \
                data[ETH + 40] not in (_RS, _RA, _NS, _REDIRECT):
            return False
        try:
            header, payload = parse_ipv6(memoryview(data)[ETH:])
            message = parse_icmpv6(payload, header.src, header.dst)
            if not isinstance(message, Icmpv6Other) or not ndp_message_valid(
                    header.hop_limit, message.code):
                raise WireError("ndp", "hop_limit", header.hop_limit, "255, code 0")
            ndp = parse_ndp(int(message.type), message.body, header.src, header.dst)
        except (WireError, ValueError):
            self.counters["ndp.malformed"] += 1  # RFC 4861: silently discarded
            return True
        if not isinstance(ndp, NeighborSolicitation):
            if isinstance(ndp, RouterSolicitation):
                if self._advertiser is not None:
                    self._advertiser.solicited(now)
                self.counters["ndp.rs"] += 1
            else:
                self.counters["ndp.guest_router_message"] += 1  # an RA or a Redirect
            return True
        target = ndp.target
        if target not in (self.config.gateway6, self.config.dns6, self._gw_link_local):
            return False  # e.g. the guest's own DAD probe: the gateway stack's business
        if header.src.is_unspecified:  # DAD for one of ours: tell everyone it is taken
            dst, dst_mac = ALL_NODES, multicast_mac(ALL_NODES)
        else:
            slla = first_option(ndp.options, SourceLinkLayerAddress)
            dst, dst_mac = header.src, slla.address if slla else bytes(data[6:12])
        self._inbox.append(neighbor_advertisement(
            target, dst=dst, dst_mac=dst_mac, gateway_mac=self.config.gateway_mac,
            router=target != self.config.dns6))
        self.counters["ndp.na_sent"] += 1
        return True

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
        target = self.config.host_target(ip_address(packet.dst), packet.dport)
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
        if packet is not None and packet.src in self._gw_sources and (
                packet.fragment or packet.sport == RELAY_PORT):
            if packet.fragment:
                flow = self._frag_in.get((packet.src, packet.ident))
                if flow is None:
                    self._inbox.append(frame)  # the gateway's own (e.g. a big ping reply)
                    return
            else:
                flow = self.flows.by_alias.get((packet.proto, packet.dport))
                if flow is None:
                    self.counters["gateway.no_flow"] += 1
                    return
                if packet.more:
                    _remember(self._frag_in, (packet.src, packet.ident), flow)
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


def _gateway_ip6(config: SlirpConfig) -> dict[str, Any]:
    """The gateway stack's IPv6: fec0::2 at once (no DAD: nobody else is on this link but
    the guest, whose own DAD would find it), and no Router Solicitations (it is the
    router)."""
    if not config.ipv6:
        return {}
    return {"ip6": "static", "ip6_dad_transmits": 0, "ip6_max_rtr_solicitations": 0,
            "ip6_address": IPv6Interface((config.gateway6, config.network6.prefixlen))}


def _remember(table: dict[_K, Flow], key: _K, flow: Flow) -> None:
    table[key] = flow
    if len(table) > _FRAGMENT_MEMORY:
        del table[next(iter(table))]  # the oldest datagram's fragments are long gone


def _type_name(message: DhcpMessage) -> str:
    kind = message.message_type
    return kind.name.lower() if isinstance(kind, MessageType) else "other"


def _pname(proto: int) -> str:
    return "tcp" if proto == TCP else "udp"
