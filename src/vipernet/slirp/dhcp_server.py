"""The user-mode gateway's DHCP server: one guest, one address (QEMU SLiRP's 10.0.2.15).

Pure: :func:`answer` turns a client's DISCOVER/REQUEST into the OFFER/ACK (or NAK for a
request naming another address or server), using :mod:`vipernet.dhcp.codec`.  Replies are
broadcast (the guest has no address yet), from 10.0.2.2:67.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from vipernet.dhcp.codec import DhcpMessage, MessageType, Op, OptionCode, u32

LEASE_SECONDS = 86400


def answer(request: DhcpMessage, *, address: IPv4Interface, server: IPv4Address,
           dns: IPv4Address, lease: int = LEASE_SECONDS) -> DhcpMessage | None:
    """The reply to ``request`` (None: not a request we answer)."""
    if request.op != Op.BOOTREQUEST:
        return None
    kind = request.message_type
    if kind == MessageType.DISCOVER:
        reply = MessageType.OFFER
    elif kind == MessageType.REQUEST:
        wanted = request.address_option(OptionCode.REQUESTED_IP) or request.ciaddr
        named = request.address_option(OptionCode.SERVER_ID)
        ok = wanted == address.ip and named in (None, server)
        reply = MessageType.ACK if ok else MessageType.NAK
    else:
        return None  # RELEASE, DECLINE, INFORM: nothing to keep track of for one guest
    options: list[tuple[int, bytes]] = [(OptionCode.MESSAGE_TYPE, bytes((reply,))),
                                        (OptionCode.SERVER_ID, server.packed)]
    if reply != MessageType.NAK:
        options += [(OptionCode.LEASE_TIME, u32(lease)),
                    (OptionCode.SUBNET_MASK, address.netmask.packed),
                    (OptionCode.ROUTER, server.packed),
                    (OptionCode.DNS_SERVERS, dns.packed)]
    return DhcpMessage(op=Op.BOOTREPLY, xid=request.xid, chaddr=request.chaddr,
                       flags=request.flags,
                       yiaddr=address.ip if reply != MessageType.NAK else IPv4Address(0),
                       siaddr=server, options=tuple(options))
