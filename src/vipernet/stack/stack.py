"""The Stack: one sans-IO TCP/IP engine for one Ethernet interface.

Frames and the current time go in (:meth:`Stack.receive`, :meth:`Stack.poll`); frames
(:meth:`Stack.transmit`), socket readiness changes (:meth:`Stack.take_changed`) and the
next deadline (:meth:`Stack.next_deadline`) come out.  The stack never reads a clock,
sleeps or touches a file descriptor; randomness (ephemeral ports, IP identification, TCP
ISNs) comes from the injected ``random.Random``.  Malformed input is a counted drop:
nothing a frame contains can make :meth:`receive` raise.

The layers hang off the stack, each in its own module:
``arp_layer`` (+ ``arp_cache``), ``ipv4_layer`` (+ ``reassembly``), ``icmp_layer``,
``igmp_layer``, ``udp``, ``ping``, and ``tcp/`` (loaded lazily: the stack runs without it).

Hooks for a transport layer (what ``stack/tcp`` uses):
``register_protocol(proto, handler)`` where ``handler.receive(ip_header, payload,
offload, now)``; ``send_ip(dst, proto, payload, *, offload_l4=None, now)``; ``config``,
``capabilities``, ``rng``, ``counters``, ``mark_changed(sock)``, ``route(dst)`` and
``icmp_error_listeners`` (callables ``(IcmpErrorEvent, now)``, given every ICMP error
about a packet we sent — and a local EHOSTUNREACH when ARP gave up — whatever the quoted
protocol; check ``event.quoted.proto``).
"""

from __future__ import annotations

import errno
import importlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Any

from vipernet.errors import UsageError
from vipernet.link.frame import DeviceCapabilities, Frame, Offload
from vipernet.stack.arp_cache import QueuedPacket
from vipernet.stack.arp_layer import ArpLayer
from vipernet.stack.config import StackConfig
from vipernet.stack.counters import Counters
from vipernet.stack.fastpath import answer_echo_fast
from vipernet.stack.icmp_layer import IcmpErrorEvent, IcmpLayer
from vipernet.stack.igmp_layer import IgmpLayer
from vipernet.stack.ipv4_layer import Ipv4Layer, ProtocolHandler
from vipernet.stack.ping import PingLayer, PingSocket
from vipernet.stack.socket_api import AF_INET, AF_INET6
from vipernet.stack.sockets_common import os_error
from vipernet.stack.udp import UdpLayer, UdpSocket
from vipernet.wire.ethernet import BROADCAST_MAC
from vipernet.wire.icmp import IcmpType
from vipernet.wire.igmp import PROTO_IGMP
from vipernet.wire.ipv4 import IpProto

if TYPE_CHECKING:  # loaded by _start_ipv6 only: a stack with IPv6 off never imports them
    from vipernet.stack.icmpv6_layer import Icmpv6Layer
    from vipernet.stack.mld_layer import MldLayer
    from vipernet.stack.ndp_layer import NdLayer
    from vipernet.stack.ping6 import Ping6Layer

log = logging.getLogger(__name__)

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_ARP = 0x0806
_ETHERTYPE_IPV6 = 0x86DD
_IPV4_TYPE_BYTES = b"\x08\x00"
_IPV6_TYPE_BYTES = b"\x86\xdd"

KEEP_GATEWAY: object = object()  # set_address(): leave the gateway as it is

IcmpErrorListener = Callable[[IcmpErrorEvent, float], None]
Icmpv6ErrorListener = Callable[[Any, float], None]  # (Icmpv6ErrorEvent, now)


class Stack:
    """See the module docstring; the API is the one in docs/architecture.md."""

    # The IPv6 layers, made by _start_ipv6 when IPv6 is on.  Declared here so mypy checks
    # the stack against the host protocol each layer declares (typed only in _start_ipv6,
    # they would still be unknown when the layers are constructed there).
    icmp6: Icmpv6Layer
    mld: MldLayer
    nd: NdLayer
    pings6: Ping6Layer

    def __init__(self, config: StackConfig, *, capabilities: DeviceCapabilities | None = None,
                 now: float, rng: random.Random) -> None:
        self.config = config
        self.capabilities = capabilities or DeviceCapabilities(mtu=config.mtu)
        # The device's limit wins over the configured one: a frame it cannot take is lost.
        self.mtu = min(config.mtu, self.capabilities.mtu)
        self.rng = rng
        self.counters = Counters()
        self.icmp_error_listeners: list[IcmpErrorListener] = []
        self._tx: list[Frame] = []
        self._changed: set[Any] = set()
        self._src_and_type = config.mac + _IPV4_TYPE_BYTES
        self._our_ip = config.ip.ip.packed
        self._our_ip_int = int(config.ip.ip)
        self._our_bcast = config.ip.network.broadcast_address.packed
        self.arp = ArpLayer(self)
        self.ipv4 = Ipv4Layer(self)
        self.icmp = IcmpLayer(self, now)
        self.igmp = IgmpLayer(self)
        self.udp = UdpLayer(self)
        self.pings = PingLayer(self)
        self.register_protocol(IpProto.ICMP, self.icmp)
        self.register_protocol(PROTO_IGMP, self.igmp)
        self.register_protocol(IpProto.UDP, self.udp)
        self._tcp: Any = None
        self._tcp_loaded = False
        self._load_tcp()
        self.arp.gratuitous()
        self.icmp6_error_listeners: list[Icmpv6ErrorListener] = []
        self._src_and_type6 = config.mac + _IPV6_TYPE_BYTES
        self.ipv6: Any = None  # vipernet.stack.ipv6_layer.Ipv6Layer when IPv6 is on
        self._v6_stale = True  # see _ipv6_control_deadline
        self._v6_due: float | None = None
        if config.ip6 != "off":
            self._start_ipv6(now)

    def _start_ipv6(self, now: float) -> None:
        # Imported here: a stack with IPv6 off never loads (or pays for) the IPv6 layers.
        from vipernet.stack.icmpv6_layer import Icmpv6Layer
        from vipernet.stack.ipv6_layer import Ipv6Layer
        from vipernet.stack.mld_layer import MldLayer
        from vipernet.stack.ndp_layer import NdLayer
        from vipernet.stack.ping6 import Ping6Layer

        # The order matters: ND's first actions (joining the solicited-node group, the DAD
        # probe) go out through MLD and the IPv6 layer.
        self.ipv6 = Ipv6Layer(self)
        self.icmp6 = Icmpv6Layer(self, now)
        self.mld = MldLayer(self)
        self.pings6 = Ping6Layer(self)
        self.ipv6.handlers[58] = self.icmp6.receive
        # UDP and TCP take IPv6 through their receive6 (one layer, one port space, both
        # families: what lets an AF_INET6 socket also serve IPv4-mapped peers).
        self.ipv6.handlers[17] = self.udp.receive6
        self.icmp6_error_listeners.append(self.udp.icmp6_error)
        if self._tcp is not None:
            self.ipv6.handlers[6] = self._tcp.receive6
            self.ipv6.tcp_fast = self._tcp.receive_segment6
            self.icmp6_error_listeners.append(self._tcp.icmp6_error)
        self.nd = NdLayer(self)
        self.nd.start(now)

    # -- frames in and out ------------------------------------------------------------------

    def receive(self, frame: Frame, now: float) -> None:
        """Process one frame off the wire.  Never raises: bad input is a counted drop."""
        count = self.counters.inc
        self._last_now = now
        try:
            data = frame.data
            if len(data) < 14:
                count("eth.rx.bad_length")
                return
            view = memoryview(data)
            dst = bytes(view[0:6])
            # Multicast MACs only for groups we joined (and 224.0.0.1 / ff02::1): a busy
            # LAN's other groups stop here, not in the IP layer.
            if dst != self.config.mac and dst != BROADCAST_MAC and dst not in self.igmp.macs and (
                    self.ipv6 is None or dst not in self.mld.macs):
                count("eth.rx.not_for_us")
                return
            ethertype = (view[12] << 8) | view[13]
            if ethertype == _ETHERTYPE_IPV4:
                count("eth.rx.ipv4")
                ip = view[14:]
                if not answer_echo_fast(self, ip, frame.offload, self._our_ip, now):
                    self.ipv4.receive(ip, frame.offload, now)
            elif ethertype == _ETHERTYPE_ARP:
                count("eth.rx.arp")
                self.arp.receive(view[14:], now)
            elif ethertype == _ETHERTYPE_IPV6 and self.ipv6 is not None:
                count("eth.rx.ipv6")
                self.ipv6.receive(view[14:], frame.offload, now)
            else:
                count("eth.rx.unknown_ethertype")
        except Exception:  # a bug must not take the daemon down; count it and say where
            count("stack.rx.internal_error")
            log.exception("internal error while processing a received frame")

    def transmit(self) -> list[Frame]:
        """Every frame ready to go out (and packets to ourselves delivered first)."""
        if self.has_local:
            self._run_loopback()
        frames, self._tx = self._tx, []
        return frames

    def _emit(self, frame: Frame) -> None:
        self._tx.append(frame)

    def _emit_ipv4(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None:
        # One join, one copy of the payload: on a 64 KiB TSO segment that copy is the cost.
        self._tx.append(Frame(b"".join((dst_mac, self._src_and_type, header, payload)),
                              offload))
        self.counters.inc("eth.tx.ipv4")

    def _emit_ipv6(self, dst_mac: bytes, header: bytes, payload: bytes | memoryview,
                   offload: Offload | None) -> None:
        self._tx.append(Frame(b"".join((dst_mac, self._src_and_type6, header, payload)),
                              offload))
        self.counters.inc("eth.tx.ipv6")

    def _send_queued(self, mac: bytes, packets: list[QueuedPacket]) -> None:
        for packet, offload in packets:
            self._emit_ipv4(mac, packet, b"", offload)

    # -- timers -------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Fire every timer due at ``now`` (ARP retries, reassembly timeouts, TCP)."""
        self._last_now = now
        try:
            for _ip, packets in self.arp.poll(now):
                for packet, _offload in packets:
                    self.icmp.host_unreachable(packet, now)
            for expired in self.ipv4.reassembler.poll(now):
                if expired.header is not None:
                    self.icmp.send_reassembly_timeout(expired.header, expired.head, now)
            igmp_due = self.igmp.next_deadline()
            if igmp_due is not None and igmp_due <= now:
                self.igmp.poll(now)
            if self.ipv6 is not None and self._ipv6_control_due(now):
                self.ipv6.poll(now)
                self.nd.poll(now)
                self.mld.poll(now)
                self._v6_stale = True
            if self._tcp is not None:
                self._tcp.poll(now)
            if self.has_local:
                self._run_loopback(now)
        except Exception:
            self.counters.inc("stack.poll.internal_error")
            log.exception("internal error while firing timers")

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must next run (None: only when a frame arrives)."""
        if self.has_local:
            return 0.0
        candidates = [self.arp.cache.next_deadline(), self.ipv4.reassembler.next_deadline(),
                      self.igmp.next_deadline()]
        if self.ipv6 is not None:
            candidates.append(self._ipv6_control_deadline())
        deadlines = [d for d in candidates if d is not None]
        if self._tcp is not None:
            tcp = self._tcp.next_deadline()
            if tcp is not None:
                deadlines.append(tcp)
        return min(deadlines) if deadlines else None

    # The IPv6 control plane (reassembly, neighbours, addresses, MLD) changes rarely but
    # would be asked for its deadline on every loop turn: its earliest deadline is kept
    # until something there may have moved it.  That is: its own poll, any IPv6 packet
    # not taken by the TCP fast path (NDP, MLD, ICMPv6, fragments... all go through
    # Ipv6Layer.mark_control), or a neighbour state change (NeighborCache.changed).

    def _ipv6_control_deadline(self) -> float | None:
        neighbors = self.nd.neighbors
        if self._v6_stale or neighbors.changed:
            neighbors.changed = False
            self._v6_stale = False
            times = [t for t in (self.ipv6.next_deadline(), self.nd.next_deadline(),
                                 self.mld.next_deadline()) if t is not None]
            self._v6_due = min(times) if times else None
        return self._v6_due

    def _ipv6_control_due(self, now: float) -> bool:
        due = self._ipv6_control_deadline()
        return due is not None and now >= due

    def ipv6_control_changed(self) -> None:
        """Something may have moved an IPv6 control-plane timer: re-read them."""
        self._v6_stale = True

    @property
    def has_local(self) -> bool:
        """Packets we sent to our own address are waiting for :meth:`deliver_local`."""
        return self.ipv4.has_loopback or (self.ipv6 is not None and self.ipv6.has_loopback)

    def deliver_local(self, now: float) -> None:
        """Deliver the packets we sent to ourselves (``transmit()`` and ``poll()`` do it too).

        A driver that watches ``take_changed()`` calls this before looking, so a datagram
        sent to our own address makes its receiver ready in the same iteration.
        """
        if self.has_local:
            self._run_loopback(now)

    def _run_loopback(self, now: float | None = None) -> None:
        # Loopback delivery has no clock of its own; the last known time is close enough
        # (no timer depends on a looped-back packet's arrival time).
        when = self._last_now if now is None else now
        self.ipv4.run_loopback(when)
        if self.ipv6 is not None:
            self.ipv6.run_loopback(when)

    # -- socket readiness ------------------------------------------------------------------------

    def mark_changed(self, sock: object) -> None:
        self._changed.add(sock)

    def take_changed(self) -> set[Any]:
        """Sockets whose readable/writable/error state may have changed since the last call."""
        changed, self._changed = self._changed, set()
        return changed

    # -- sockets ----------------------------------------------------------------------------

    def udp_socket(self, family: int = AF_INET) -> UdpSocket:
        """A UDP socket; ``AF_INET6`` needs IPv6 on (``config.ip6``), else EAFNOSUPPORT."""
        self._check_family(family)
        return self.udp.open_socket(family)

    def ping_socket(self) -> PingSocket:
        return self.pings.open_socket()

    def tcp_socket(self, family: int = AF_INET) -> Any:
        if self._tcp is None:
            raise os_error(errno.EPROTONOSUPPORT, "TCP is not available in this build")
        self._check_family(family)
        return self._tcp.open_socket(family)

    def _check_family(self, family: int) -> None:
        if family == AF_INET6 and self.ipv6 is None:
            raise os_error(errno.EAFNOSUPPORT, "IPv6 is off in this stack (config.ip6)")
        if family not in (AF_INET, AF_INET6):
            raise os_error(errno.EAFNOSUPPORT, f"address family {family}")

    @property
    def tcp(self) -> Any:
        """The TCP layer (None until vipernet.stack.tcp exists)."""
        return self._tcp

    def _load_tcp(self) -> None:
        # Imported by name, lazily: the stack runs (UDP, ICMP) before and without TCP.
        try:
            module = importlib.import_module("vipernet.stack.tcp.layer")
        except ImportError:
            log.debug("vipernet.stack.tcp.layer not available: TCP disabled")
            return
        listeners_before = len(self.icmp_error_listeners)
        self._tcp = module.TcpLayer(self)
        if IpProto.TCP not in self.ipv4.handlers:
            self.register_protocol(IpProto.TCP, self._tcp)
        tcp_counters = getattr(self._tcp, "counters", None)
        if isinstance(tcp_counters, Mapping):
            # TCP tallies as "tcp_rst_sent"; show it as "tcp.rst_sent" next to ours.
            self.counters.add_source(lambda: {
                name.replace("tcp_", "tcp.", 1): value for name, value in tcp_counters.items()})
        if len(self.icmp_error_listeners) == listeners_before and hasattr(
                self._tcp, "icmp_unreachable"):
            # The TCP layer takes destination-unreachable by 4-tuple rather than listening.
            self.icmp_error_listeners.append(self._tcp_icmp_adapter)

    def _tcp_icmp_adapter(self, event: IcmpErrorEvent, now: float) -> None:
        quote = event.quoted_payload
        if (event.quoted.proto != IpProto.TCP or event.type != IcmpType.DEST_UNREACHABLE
                or len(quote) < 4):
            return
        sport = int.from_bytes(quote[0:2], "big")
        dport = int.from_bytes(quote[2:4], "big")
        self._tcp.icmp_unreachable(int(event.quoted.dst), sport, dport, event.code, now)

    # -- hooks for transport layers -------------------------------------------------------------

    def register_protocol(self, proto: IpProto | int, handler: ProtocolHandler) -> None:
        self.ipv4.handlers[int(proto)] = handler

    def send_ip(self, dst: IPv4Address, proto: IpProto | int, payload: bytes, *,
                offload_l4: Offload | None = None, now: float, ttl: int | None = None,
                tos: int = 0, options: bytes = b"", multicast_loop: bool = False) -> None:
        """Send one transport payload to ``dst`` (routing, ARP, fragmentation inside).

        A broadcast is also delivered to ourselves, and so is a multicast when
        ``multicast_loop`` and we listen to the group (IP_MULTICAST_LOOP).

        Raises OSError ENETUNREACH (off-link without a gateway) or EMSGSIZE (an offloaded
        segment larger than the device takes).  A packet waiting for ARP is queued; if ARP
        gives up, its sender hears EHOSTUNREACH through the ICMP error path.
        """
        self._last_now = now
        self.ipv4.send(dst, proto, payload, offload_l4, now, ttl=ttl, tos=tos,
                       options=options, multicast_loop=multicast_loop)

    def route(self, dst: IPv4Address) -> IPv4Address:
        return self.ipv4.route(dst)

    # -- configuration --------------------------------------------------------------------------

    def set_address(self, ip: IPv4Interface, now: float, *,
                    gateway: IPv4Address | object | None = KEEP_GATEWAY) -> None:
        """Change our address (and, if given, the gateway; None removes it).

        Without ``gateway`` the current one is kept if it is on-link in the new network,
        dropped otherwise.  The change is announced with a gratuitous ARP, and a TCP layer
        offering ``address_changed(ip)`` is told.
        """
        if gateway is KEEP_GATEWAY:
            old = self.config.gateway
            gateway = old if old is not None and old in ip.network else None
        if gateway is not None and not isinstance(gateway, IPv4Address):
            raise UsageError(f"gateway must be an IPv4Address or None, not {gateway!r}")
        self.config = replace(self.config, ip=ip, gateway=gateway)
        self._our_ip = ip.ip.packed
        self._our_ip_int = int(ip.ip)
        self._our_bcast = ip.network.broadcast_address.packed
        self.arp.gratuitous()
        notify = getattr(self._tcp, "address_changed", None)
        if notify is not None:
            notify(ip.ip)

    def arp_entries(self, now: float) -> dict[IPv4Address, bytes]:
        return self.arp.cache.entries(now)

    _last_now = 0.0
