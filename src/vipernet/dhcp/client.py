"""The DHCP client state machine (RFC 2131 section 4.4), sans-IO.

Frames and the current time go in (:meth:`DhcpClient.receive`, :meth:`DhcpClient.poll`);
frames to send (:meth:`DhcpClient.transmit`), lease events (:meth:`DhcpClient.take_events`)
and the next deadline (:meth:`DhcpClient.next_deadline`) come out.  No clock, no sockets:
the transaction ids and the retransmission jitter come from the injected ``random.Random``.

States and what moves between them (all in :meth:`DhcpClient._set_state`)::

    INIT -start-> SELECTING -OFFER-> REQUESTING -ACK-> [CHECKING] -> BOUND -T1-> RENEWING
      ^              (DISCOVER resent 4, 8, .. 64 s +-1)       |               -T2-> REBINDING
      +-- NAK in REQUESTING/RENEWING/REBINDING, lease expired --+-- conflict: DECLINE, wait

* SELECTING takes the first acceptable OFFER (right xid and chaddr, an address, a server
  id) and broadcasts a REQUEST naming that server (options 50 and 54).
* RENEWING unicasts the REQUEST (``ciaddr`` set, no 50/54) to the server that granted the
  lease, to the MAC the ACK came from; REBINDING broadcasts it.  Both resend after half the
  time left until T2 (resp. expiry), never sooner than ``config.min_renew_retransmit``.
* A lease's times count from the moment the REQUEST that obtained it was first sent
  (RFC 2131 4.4.1), so a slow answer never stretches a lease.
* With ``config.arp_probes > 0`` a new address is checked before it is used (RFC 2131
  3.1.5 SHOULD, the probe of RFC 5227 2.1.1): CHECKING sends that many ARP probes, then
  waits ``probe_wait``; the caller hands it ARP frames (:meth:`DhcpClient.receive_arp`).
  Another host's ARP from the address, or its probe for it, is a conflict: the client
  broadcasts DHCPDECLINE, reports ``LeaseLost(reason="declined")`` and starts over after
  ``decline_backoff`` (RFC 2131: at least ten seconds).  Renewals are not probed.

Not done: INIT-REBOOT, option overload.  A reply that is malformed or not ours is a
counted drop, never an exception.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from vipernet.dhcp.codec import (
    DhcpError,
    DhcpMessage,
    MessageType,
    Op,
    Option,
    OptionCode,
)
from vipernet.dhcp.frames import (
    BROADCAST_IP,
    ZERO_IP,
    build_arp_probe,
    build_frame,
    parse_arp_frame,
    parse_frame,
)
from vipernet.errors import ProtocolError, UsageError
from vipernet.link.frame import Frame
from vipernet.wire.arp import ArpOp
from vipernet.wire.ethernet import BROADCAST_MAC

log = logging.getLogger(__name__)

REQUESTED_PARAMETERS = bytes((
    OptionCode.SUBNET_MASK, OptionCode.ROUTER, OptionCode.DNS_SERVERS,
    OptionCode.DOMAIN_NAME, OptionCode.INTERFACE_MTU, OptionCode.LEASE_TIME,
    OptionCode.RENEWAL_TIME, OptionCode.REBINDING_TIME,
))


class State(enum.Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    CHECKING = "checking"  # ACKed, probing the address with ARP before using it
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class DhcpConfig:
    """Retransmission knobs (RFC 2131 4.1 and 4.4.5 defaults)."""

    first_retransmit: float = 4.0  # then doubled up to max_retransmit
    max_retransmit: float = 64.0
    jitter: float = 1.0  # +- uniform, "randomized by the value of a uniform number"
    request_attempts: int = 4  # REQUESTs sent in REQUESTING before starting over
    min_renew_retransmit: float = 60.0
    hostname: str | None = None
    max_message_size: int = 1500
    # Address conflict detection (off by default; netd turns it on).  RFC 5227 asks for
    # 3 probes 1-2 s apart and a 2 s wait; shorter values trade certainty for start-up time.
    arp_probes: int = 0
    probe_interval: float = 1.0
    probe_wait: float = 2.0  # after the last probe
    decline_backoff: float = 10.0  # RFC 2131 3.1.5: wait at least ten seconds

    def __post_init__(self) -> None:
        if not 0 < self.first_retransmit <= self.max_retransmit:
            raise UsageError("need 0 < first_retransmit <= max_retransmit")
        if not 0 <= self.jitter < self.first_retransmit:
            raise UsageError("need 0 <= jitter < first_retransmit")
        if self.request_attempts < 1 or self.min_renew_retransmit <= 0:
            raise UsageError("request_attempts >= 1 and min_renew_retransmit > 0")
        if self.arp_probes < 0 or self.probe_interval <= 0 or self.probe_wait <= 0:
            raise UsageError("arp_probes >= 0, probe_interval > 0 and probe_wait > 0")
        if self.decline_backoff < 0:
            raise UsageError("decline_backoff >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """What an ACK granted; times are on the caller's clock."""

    address: IPv4Interface
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    server_id: IPv4Address
    server_mac: bytes
    lease_time: float
    t1: float
    t2: float
    obtained_at: float
    mtu: int | None = None
    domain: str | None = None

    @property
    def renew_at(self) -> float:
        return self.obtained_at + self.t1

    @property
    def rebind_at(self) -> float:
        return self.obtained_at + self.t2

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lease_time


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseObtained:
    lease: Lease


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRenewed:
    lease: Lease
    previous: Lease


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseLost:
    lease: Lease | None
    reason: str  # "nak", "expired", "released", "declined"


Event = LeaseObtained | LeaseRenewed | LeaseLost


class DhcpClient:
    """See the module docstring."""

    def __init__(self, *, mac: bytes, rng: random.Random,
                 config: DhcpConfig | None = None) -> None:
        if len(mac) != 6:
            raise UsageError(f"mac must be 6 bytes, got {len(mac)}")
        self.mac = mac
        self.rng = rng
        self.config = config or DhcpConfig()
        self.counters: Counter[str] = Counter()
        self.state = State.INIT
        self.lease: Lease | None = None
        self._tx: list[Frame] = []
        self._events: list[Event] = []
        self._xid = 0
        self._started_at = 0.0  # of this exchange, for the secs field
        self._first_sent_at = 0.0  # of the current REQUEST: a lease counts from here
        self._deadline: float | None = None
        self._interval = self.config.first_retransmit
        self._attempts = 0
        self._offer: DhcpMessage | None = None
        self._offer_mac = BROADCAST_MAC
        self._candidate: Lease | None = None  # ACKed, being probed (CHECKING)
        self._probes_sent = 0

    # -- the API ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin (or restart) acquisition: broadcast a DISCOVER."""
        self._set_state(State.SELECTING, "start")
        self._begin_exchange(now)
        self._send_discover(now)

    def release(self, now: float) -> None:
        """Give the lease back (DHCPRELEASE, unicast) and stop."""
        lease = self.lease
        if lease is not None and self.state in (State.BOUND, State.RENEWING, State.REBINDING):
            self._xid = self.rng.getrandbits(32)
            message = self._message(MessageType.RELEASE, now, ciaddr=lease.address.ip,
                                    extra=((OptionCode.SERVER_ID, lease.server_id.packed),))
            self._emit(message, dst_mac=lease.server_mac, src_ip=lease.address.ip,
                       dst_ip=lease.server_id)
            self._events.append(LeaseLost(lease=lease, reason="released"))
        self.lease = None
        self._deadline = None
        self._set_state(State.STOPPED, "release")

    def receive(self, frame: Frame, now: float) -> None:
        """One frame to UDP port 68.  Never raises: a bad or foreign reply is a counted drop."""
        try:
            src_mac, _src_ip, message = parse_frame(frame)
        except (ProtocolError, ValueError) as exc:
            self.counters["rx.malformed"] += 1
            log.debug("dhcp: dropped a malformed reply: %s", exc)
            return
        if message.op != Op.BOOTREPLY or message.xid != self._xid or message.chaddr != self.mac:
            self.counters["rx.not_ours"] += 1
            return
        kind = message.message_type
        handler = _HANDLERS.get((self.state, kind)) if isinstance(kind, MessageType) else None
        if handler is None:
            self.counters[f"rx.unexpected.{_name(kind)}"] += 1
            return
        self.counters[f"rx.{_name(kind)}"] += 1
        handler(self, message, src_mac, now)

    @property
    def probing(self) -> bool:
        """Whether ARP frames should be handed to :meth:`receive_arp` now."""
        return self.state is State.CHECKING

    def receive_arp(self, frame: Frame, now: float) -> None:
        """One ARP frame while :attr:`probing`; a conflict declines the address."""
        candidate = self._candidate
        if self.state is not State.CHECKING or candidate is None:
            return
        try:
            packet = parse_arp_frame(frame)
        except (ProtocolError, ValueError):
            self.counters["rx.arp.malformed"] += 1
            return
        address = candidate.address.ip
        if packet.sender_mac == self.mac:
            return  # our own probe, looped back by a hub-like link
        claimed = packet.sender_ip == address  # someone uses it (reply or request)
        probed = (packet.sender_ip == ZERO_IP and packet.target_ip == address
                  and packet.op == ArpOp.REQUEST)  # someone else is probing for it too
        if claimed or probed:
            self.counters["arp.conflict"] += 1
            log.warning("dhcp: %s is in use by %s; declining it", address,
                        packet.sender_mac.hex(":"))
            self._decline(candidate, now)

    def poll(self, now: float) -> None:
        """Run the timer if it is due (retransmission, T1, T2, expiry)."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        state = self.state
        if state is State.INIT:  # the wait after a DECLINE is over
            self.start(now)
        elif state is State.CHECKING:
            candidate = self._candidate
            if candidate is None:
                self.start(now)
            elif self._probes_sent < self.config.arp_probes:
                self._send_probe(candidate, now)
            else:
                self._bind(candidate, None, now)
        elif state is State.SELECTING:
            self._send_discover(now)
        elif state is State.REQUESTING:
            if self._attempts >= self.config.request_attempts:
                self.counters["request.gave_up"] += 1
                self.start(now)
            else:
                self._send_select_request(now)
        elif state is State.BOUND:
            self._set_state(State.RENEWING, "T1")
            self._begin_exchange(now)
            self._send_renew_request(now)
        elif state in (State.RENEWING, State.REBINDING):
            self._lease_timer(now)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must next run (None for an infinite lease or when stopped)."""
        if self._deadline is None or self._deadline == float("inf"):
            return None
        return self._deadline

    def transmit(self) -> list[Frame]:
        frames, self._tx = self._tx, []
        return frames

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- sending ----------------------------------------------------------------------------

    def _begin_exchange(self, now: float) -> None:
        self._xid = self.rng.getrandbits(32)
        self._started_at = now
        self._interval = self.config.first_retransmit
        self._attempts = 0

    def _retransmit_after(self, now: float) -> None:
        jitter = self.rng.uniform(-self.config.jitter, self.config.jitter)
        self._deadline = now + self._interval + jitter
        self._interval = min(self._interval * 2, self.config.max_retransmit)

    def _send_discover(self, now: float) -> None:
        self.counters["tx.discover"] += 1
        self._emit(self._message(MessageType.DISCOVER, now))
        self._retransmit_after(now)

    def _send_select_request(self, now: float) -> None:
        offer = self._offer
        if offer is None:  # cannot happen: REQUESTING is entered with an offer
            raise DhcpError("REQUESTING without an offer")
        server_id = offer.option(OptionCode.SERVER_ID) or b""
        extra: tuple[Option, ...] = ((OptionCode.REQUESTED_IP, offer.yiaddr.packed),
                                     (OptionCode.SERVER_ID, server_id))
        if self._attempts == 0:
            self._first_sent_at = now
        self._attempts += 1
        self.counters["tx.request"] += 1
        self._emit(self._message(MessageType.REQUEST, now, extra=extra))
        self._retransmit_after(now)

    def _send_renew_request(self, now: float) -> None:
        lease = self.lease
        if lease is None:
            raise DhcpError("renewing without a lease")
        if self._attempts == 0:
            self._first_sent_at = now
        self._attempts += 1
        message = self._message(MessageType.REQUEST, now, ciaddr=lease.address.ip)
        if self.state is State.RENEWING:
            self.counters["tx.renew"] += 1
            self._emit(message, dst_mac=lease.server_mac, src_ip=lease.address.ip,
                       dst_ip=lease.server_id)
            until = lease.rebind_at
        else:
            self.counters["tx.rebind"] += 1
            self._emit(message, src_ip=lease.address.ip)
            until = lease.expires_at
        # RFC 2131 4.4.5: wait half the time remaining, but at least a minute.
        wait = max((until - now) / 2, self.config.min_renew_retransmit)
        self._deadline = min(now + wait, until)

    def _send_probe(self, candidate: Lease, now: float) -> None:
        self._probes_sent += 1
        self.counters["tx.arp_probe"] += 1
        self._tx.append(Frame(build_arp_probe(mac=self.mac, address=candidate.address.ip)))
        last = self._probes_sent >= self.config.arp_probes
        self._deadline = now + (self.config.probe_wait if last else self.config.probe_interval)

    def _decline(self, candidate: Lease, now: float) -> None:
        """DHCPDECLINE (RFC 2131 table 5: options 50 and 54, ciaddr 0, broadcast), then wait."""
        self.counters["tx.decline"] += 1
        self._emit(self._message(MessageType.DECLINE, now, extra=(
            (OptionCode.REQUESTED_IP, candidate.address.ip.packed),
            (OptionCode.SERVER_ID, candidate.server_id.packed))))
        self._candidate = None
        self._offer = None
        self._events.append(LeaseLost(lease=candidate, reason="declined"))
        self._set_state(State.INIT, "declined")
        self._deadline = now + self.config.decline_backoff

    def _lease_timer(self, now: float) -> None:
        lease = self.lease
        if lease is None:
            self.start(now)
            return
        if now >= lease.expires_at:
            self.counters["lease.expired"] += 1
            self._lose("expired", now)
        elif now >= lease.rebind_at and self.state is State.RENEWING:
            self._set_state(State.REBINDING, "T2")
            self._send_renew_request(now)
        else:
            self._send_renew_request(now)

    def _message(self, kind: MessageType, now: float, *, ciaddr: IPv4Address = ZERO_IP,
                 extra: tuple[Option, ...] = ()) -> DhcpMessage:
        options: list[Option] = [(OptionCode.MESSAGE_TYPE, bytes((kind,))),
                                 (OptionCode.CLIENT_ID, b"\x01" + self.mac)]
        options.extend(extra)
        if kind in (MessageType.DISCOVER, MessageType.REQUEST):
            options.append((OptionCode.PARAMETER_REQUEST_LIST, REQUESTED_PARAMETERS))
            options.append((OptionCode.MAX_MESSAGE_SIZE,
                            self.config.max_message_size.to_bytes(2, "big")))
            if self.config.hostname:
                options.append((OptionCode.HOSTNAME, self.config.hostname.encode()[:63]))
        secs = min(0xFFFF, max(0, int(now - self._started_at)))
        return DhcpMessage(op=Op.BOOTREQUEST, xid=self._xid, chaddr=self.mac, secs=secs,
                           ciaddr=ciaddr, options=tuple(options))

    def _emit(self, message: DhcpMessage, *, dst_mac: bytes = BROADCAST_MAC,
              src_ip: IPv4Address = ZERO_IP, dst_ip: IPv4Address = BROADCAST_IP) -> None:
        self._tx.append(Frame(build_frame(message, src_mac=self.mac, dst_mac=dst_mac,
                                          src_ip=src_ip, dst_ip=dst_ip)))

    # -- receiving ----------------------------------------------------------------------------

    def _on_offer(self, message: DhcpMessage, src_mac: bytes, now: float) -> None:
        if message.yiaddr == ZERO_IP or message.address_option(OptionCode.SERVER_ID) is None:
            self.counters["rx.offer.unusable"] += 1
            return
        self._offer = message
        self._offer_mac = src_mac
        self._set_state(State.REQUESTING, "offer")
        self._interval = self.config.first_retransmit
        self._attempts = 0
        self._send_select_request(now)

    def _on_ack(self, message: DhcpMessage, src_mac: bytes, now: float) -> None:
        expected = (self._offer.option(OptionCode.SERVER_ID) if self.state is State.REQUESTING
                    and self._offer is not None else None)
        if expected is not None and message.option(OptionCode.SERVER_ID) != expected:
            self.counters["rx.ack.other_server"] += 1
            return
        try:
            lease = lease_from_ack(message, src_mac, self._first_sent_at)
        except DhcpError as exc:
            self.counters["rx.ack.unusable"] += 1
            log.debug("dhcp: unusable ACK: %s", exc)
            return
        previous = self.lease
        if self.state is State.REQUESTING or previous is None:
            if self.config.arp_probes > 0:  # check the new address before using it
                self._candidate = lease
                self._probes_sent = 0
                self._set_state(State.CHECKING, "ack")
                self._send_probe(lease, now)
                return
            previous = None
        self._bind(lease, previous, now)

    def _bind(self, lease: Lease, previous: Lease | None, now: float) -> None:
        self._candidate = None
        self.lease = lease
        self._deadline = lease.renew_at
        self._set_state(State.BOUND, "bound")
        if previous is None:
            self._events.append(LeaseObtained(lease=lease))
        else:
            self._events.append(LeaseRenewed(lease=lease, previous=previous))

    def _on_nak(self, message: DhcpMessage, src_mac: bytes, now: float) -> None:
        if (self.state is State.REQUESTING and self._offer is not None
                and message.option(OptionCode.SERVER_ID) not in (
                    None, self._offer.option(OptionCode.SERVER_ID))):
            self.counters["rx.nak.other_server"] += 1
            return
        self._lose("nak", now)

    def _lose(self, reason: str, now: float) -> None:
        lease = self.lease
        self.lease = None
        self._offer = None
        self._events.append(LeaseLost(lease=lease, reason=reason))
        self.start(now)

    def _set_state(self, state: State, why: str) -> None:
        if state is not self.state:
            log.debug("dhcp: %s -> %s (%s)", self.state.value, state.value, why)
            self.state = state


def lease_from_ack(message: DhcpMessage, server_mac: bytes, obtained_at: float) -> Lease:
    """The lease an ACK grants; :class:`DhcpError` if it lacks what a lease needs."""
    if message.yiaddr == ZERO_IP:
        raise DhcpError("ACK without an address (yiaddr 0.0.0.0)")
    lease_time = message.seconds_option(OptionCode.LEASE_TIME)
    if lease_time is None or lease_time == 0:
        raise DhcpError("ACK without a lease time (option 51)")
    server_id = message.address_option(OptionCode.SERVER_ID)
    if server_id is None:
        raise DhcpError("ACK without a server identifier (option 54)")
    mask = message.address_option(OptionCode.SUBNET_MASK)
    prefix = _prefix_of(mask) if mask is not None else _classful_prefix(message.yiaddr)
    address = IPv4Interface(f"{message.yiaddr}/{prefix}")
    router = next((r for r in message.address_list_option(OptionCode.ROUTER)
                   if r in address.network and r != address.ip), None)
    infinite = lease_time == 0xFFFFFFFF
    seconds = float(lease_time) if not infinite else float("inf")
    t1 = message.seconds_option(OptionCode.RENEWAL_TIME)
    t2 = message.seconds_option(OptionCode.REBINDING_TIME)
    t1f = float(t1) if t1 is not None else seconds * 0.5
    t2f = float(t2) if t2 is not None else seconds * 0.875
    if not 0 < t1f <= t2f <= seconds:  # inconsistent: fall back to RFC 2131's defaults
        t1f, t2f = seconds * 0.5, seconds * 0.875
    mtu_raw = message.option(OptionCode.INTERFACE_MTU)
    mtu = int.from_bytes(mtu_raw, "big") if mtu_raw is not None and len(mtu_raw) == 2 else None
    if mtu is not None and not 68 <= mtu <= 65535:
        mtu = None
    domain_raw = message.option(OptionCode.DOMAIN_NAME)
    domain = domain_raw.rstrip(b"\0").decode("ascii", "replace") if domain_raw else None
    return Lease(address=address, router=router,
                 dns=message.address_list_option(OptionCode.DNS_SERVERS), server_id=server_id,
                 server_mac=server_mac, lease_time=seconds, t1=t1f, t2=t2f,
                 obtained_at=obtained_at, mtu=mtu, domain=domain)


def _prefix_of(mask: IPv4Address) -> int:
    try:
        return IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        raise DhcpError(f"subnet mask {mask} is not contiguous") from None


def _classful_prefix(address: IPv4Address) -> int:
    first = address.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def _name(kind: MessageType | int | None) -> str:
    if isinstance(kind, MessageType):
        return kind.name.lower()
    return "none" if kind is None else f"type{kind}"


_HANDLERS: dict[tuple[State, MessageType], Callable[[DhcpClient, DhcpMessage, bytes, float],
                                                   None]] = {
    (State.SELECTING, MessageType.OFFER): DhcpClient._on_offer,
    (State.REQUESTING, MessageType.ACK): DhcpClient._on_ack,
    (State.REQUESTING, MessageType.NAK): DhcpClient._on_nak,
    (State.RENEWING, MessageType.ACK): DhcpClient._on_ack,
    (State.RENEWING, MessageType.NAK): DhcpClient._on_nak,
    (State.REBINDING, MessageType.ACK): DhcpClient._on_ack,
    (State.REBINDING, MessageType.NAK): DhcpClient._on_nak,
}
