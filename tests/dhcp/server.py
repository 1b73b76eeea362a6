"""A scripted DHCP server for unit tests: the reply frames a real one would send, and a
device whose far end answers every DISCOVER/REQUEST at once."""

from __future__ import annotations

from ipaddress import IPv4Address

from vipernet.dhcp.codec import DhcpMessage, MessageType, Op, OptionCode, build_dhcp, u32
from vipernet.dhcp.frames import CLIENT_PORT, SERVER_PORT, is_arp_frame, parse_frame
from vipernet.link.frame import DeviceCapabilities, Frame
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4
from vipernet.wire.udp import build_udp

SERVER_MAC = bytes.fromhex("02aabbccddee")
SERVER_IP = IPv4Address("10.0.2.2")
CLIENT_MAC = bytes.fromhex("525400123456")
OFFERED = IPv4Address("10.0.2.15")


def request_of(frame: Frame) -> DhcpMessage:
    _mac, _ip, message = parse_frame_as_server(frame)
    return message


def parse_frame_as_server(frame: Frame) -> tuple[bytes, IPv4Address, DhcpMessage]:
    """The client's frames go 68 -> 67; flip the ports so the client-side parser reads them."""
    data = bytearray(frame.data)
    ihl = (data[14] & 0x0F) * 4
    at = 14 + ihl
    data[at:at + 4] = bytes((0, SERVER_PORT, 0, CLIENT_PORT))
    data[at + 6:at + 8] = b"\0\0"  # checksum no longer matches the swapped ports
    return parse_frame(Frame(bytes(data)))


def reply(request: DhcpMessage, kind: MessageType, *, yiaddr: IPv4Address = OFFERED,
          lease: int = 120, t1: int | None = None, t2: int | None = None,
          server_id: IPv4Address = SERVER_IP, xid: int | None = None,
          extra: tuple[tuple[int, bytes], ...] = (),
          mask: bytes = bytes((255, 255, 255, 0)),
          dns: bytes = IPv4Address("10.0.2.3").packed) -> Frame:
    options: list[tuple[int, bytes]] = [(OptionCode.MESSAGE_TYPE, bytes((kind,))),
                                        (OptionCode.SERVER_ID, server_id.packed)]
    if kind != MessageType.NAK:
        options += [(OptionCode.LEASE_TIME, u32(lease)), (OptionCode.SUBNET_MASK, mask),
                    (OptionCode.ROUTER, SERVER_IP.packed),
                    (OptionCode.DNS_SERVERS, dns)]
        if t1 is not None:
            options.append((OptionCode.RENEWAL_TIME, u32(t1)))
        if t2 is not None:
            options.append((OptionCode.REBINDING_TIME, u32(t2)))
    options += list(extra)
    message = DhcpMessage(op=Op.BOOTREPLY, xid=request.xid if xid is None else xid,
                          chaddr=request.chaddr,
                          yiaddr=yiaddr if kind != MessageType.NAK else IPv4Address(0),
                          options=tuple(options))
    dst = yiaddr if kind != MessageType.NAK else IPv4Address("255.255.255.255")
    udp = build_udp(SERVER_PORT, CLIENT_PORT, build_dhcp(message), src=SERVER_IP, dst=dst)
    ip = build_ipv4(IPv4Header(src=SERVER_IP, dst=dst, proto=IpProto.UDP), udp)
    return Frame(build_ethernet(EthernetHeader(dst=request.chaddr, src=SERVER_MAC,
                                               ethertype=EtherType.IPV4), ip))


class ScriptedServerDevice:
    """A device whose far end is a DHCP server answering every DISCOVER/REQUEST at once."""

    capabilities = DeviceCapabilities()
    name = "scripted"

    def __init__(self, *, answer: bool = True, lease: int = 120,
                 yiaddr: str = "10.0.2.15") -> None:
        self.answer = answer
        self.lease = lease
        self.yiaddr = IPv4Address(yiaddr)
        self.dns = IPv4Address("10.0.2.3").packed  # what its ACKs name as DNS servers
        self.inbox: list[Frame] = []
        self.seen: list[MessageType | int | None] = []
        self.closed = False

    def fileno(self) -> int | None:
        return None

    def receive(self, now: float) -> list[Frame]:
        frames, self.inbox = self.inbox, []
        return frames

    def send(self, frame: Frame, now: float) -> None:
        if is_arp_frame(frame.data):  # a probe: nobody else holds the address
            return
        try:
            _, _, message = parse_frame_as_server(frame)
        except Exception:
            self.seen.append(None)
            return
        kind = message.message_type
        self.seen.append(kind)
        if not self.answer:
            return
        answer = {MessageType.DISCOVER: MessageType.OFFER, MessageType.REQUEST: MessageType.ACK}
        if kind in answer:
            self.inbox.append(reply(message, answer[kind], lease=self.lease, yiaddr=self.yiaddr,
                                    dns=self.dns))

    def next_deadline(self) -> float | None:
        return 0.0 if self.inbox else None

    def close(self) -> None:
        self.closed = True
