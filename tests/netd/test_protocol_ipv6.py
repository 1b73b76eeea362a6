"""netd's AF_INET6 sockets and NET_DNS_RESOLVE_ALL, as unit tests (no network).

The codec (the CREATE kind bit, ``address6`` and the ``*6`` twins, RESOLVE_ALL's bodies),
the service driven with the in-memory FakeStack (BIND/CONNECT/SENDTO/ACCEPT/RECVFROM/names
of an AF_INET6 socket, IPV6_V6ONLY), the DNS handler's RESOLVE_ALL checks and reply, and
the 18-byte datagram header of an AF_INET6 UDP socket's descriptor (a local socketpair).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import random
import selectors
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.netd.fakes import FakeSocket, FakeStack
from vipernet.dns.cache import Answer
from vipernet.dns.errors import DnsTimeout, MalformedReply, NameNotFound, NoRecords
from vipernet.dns.query import AAAA, A
from vipernet.netd import protocol as p
from vipernet.netd.dns_op import DnsHandler, Outcome
from vipernet.netd.fdlink import FdPlane
from vipernet.netd.protocol import Code, Message
from vipernet.netd.service import NetService, Session
from vipernet.stack.socket_api import AF_INET, AF_INET6, SocketKind

_ids = itertools.count(1)


def ip6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


class Client:
    """One IPC channel on a NetService, replies collected in order."""

    def __init__(self, service: NetService) -> None:
        self.service = service
        self.replies: list[Message] = []
        self.session: Session = service.open_session(self.replies.append, peer="test", pid=1)

    def send(self, code: int, body: p.Body | bytes = b"", now: float = 0.0) -> int:
        rid = next(_ids)
        raw = body if isinstance(body, bytes) else body.encode()
        self.service.handle(self.session, Message(code=code, request_id=rid, body=raw), now)
        return rid

    def reply(self, rid: int) -> Message | None:
        return next((m for m in self.replies if m.request_id == rid), None)

    def call(self, code: int, body: p.Body | bytes = b"", now: float = 0.0) -> Message:
        reply = self.reply(self.send(code, body, now))
        assert reply is not None, "expected an immediate reply"
        return reply

    def create(self, kind_byte: int) -> int:
        reply = self.call(Code.SOCKET_CREATE, bytes([kind_byte]))
        assert reply.status == 0, p.error_text(reply)
        return p.SocketRef.decode(reply.body).sock


def setup() -> tuple[FakeStack, NetService, Client]:
    stack = FakeStack()
    service = NetService(stack)
    return stack, service, Client(service)


# --------------------------------------------------------------------------------------------
# SOCKET_CREATE's kind byte


@pytest.mark.parametrize(("kind", "family", "wire"), [
    (SocketKind.TCP, AF_INET, b"\x01"),
    (SocketKind.UDP, AF_INET, b"\x02"),
    (SocketKind.ICMP, AF_INET, b"\x03"),
    (SocketKind.TCP, AF_INET6, b"\x11"),
    (SocketKind.UDP, AF_INET6, b"\x12"),
    (SocketKind.ICMP, AF_INET6, b"\x13"),
])
def test_create_kind_byte_is_the_kind_with_0x10_for_af_inet6(
        kind: SocketKind, family: int, wire: bytes) -> None:
    body = p.CreateRequest(kind=kind, family=family)
    assert body.encode() == wire
    assert p.CreateRequest.decode(wire) == body


def test_create_defaults_to_af_inet_so_ipv4_bytes_are_unchanged() -> None:
    assert p.CreateRequest(kind=SocketKind.UDP).encode() == b"\x02"
    assert p.CreateRequest.decode(b"\x01").family == AF_INET


@pytest.mark.parametrize("raw", [0x00, 0x04, 0x10, 0x14, 0x20, 0x21, 0x30, 0x91, 0xFF])
def test_create_with_an_unknown_kind_byte_is_malformed(raw: int) -> None:
    with pytest.raises(p.MalformedMessage, match=f"0x{raw:02x}"):
        p.CreateRequest.decode(bytes([raw]))


def test_create_of_a_family_without_a_kind_bit_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="family"):
        p.CreateRequest(kind=SocketKind.UDP, family=int(socket.AF_UNIX)).encode()


@pytest.mark.parametrize(("raw", "make"), [(0x11, "tcp_socket"), (0x12, "udp_socket")])
def test_service_creates_af_inet6_sockets_in_the_stack(raw: int, make: str) -> None:
    stack, service, client = setup()
    sock = client.create(raw)
    assert stack.families == [AF_INET6]
    assert service.sockets[sock].family == AF_INET6
    expected = SocketKind.TCP if make == "tcp_socket" else SocketKind.UDP
    assert stack.sockets[0].kind == expected
    rows = service.stat_report(0.0)["sockets"]
    assert isinstance(rows, list) and rows[0]["family"] == "ipv6"


def test_ipv4_create_still_asks_the_stack_for_af_inet() -> None:
    stack, service, client = setup()
    sock = client.create(0x02)
    assert stack.families == [AF_INET]
    assert service.sockets[sock].family == AF_INET


def test_icmp_over_ipv6_decodes_but_the_service_refuses_it_with_eafnosupport() -> None:
    stack, service, client = setup()
    assert p.CreateRequest.decode(b"\x13") == p.CreateRequest(kind=SocketKind.ICMP,
                                                             family=AF_INET6)
    reply = client.call(Code.SOCKET_CREATE, b"\x13")
    assert reply.status == errno.EAFNOSUPPORT
    assert "PING6" in p.error_text(reply)
    assert stack.sockets == [] and service.sockets == {}
    assert service.counters.get("requests.malformed", 0) == 0


@pytest.mark.parametrize("raw", [0x04, 0x14, 0x20])
def test_service_answers_an_unknown_kind_with_einval_and_keeps_the_session(raw: int) -> None:
    stack, service, client = setup()
    assert client.call(Code.SOCKET_CREATE, bytes([raw])).status == errno.EINVAL
    assert service.counters["requests.malformed"] == 1
    assert stack.sockets == []
    assert client.create(0x12) > 0


# --------------------------------------------------------------------------------------------
# address6


@pytest.mark.parametrize(("given", "reported"), [
    (("2001:db8::1", 443), ("2001:db8::1", 443, 0, 0)),
    (("2001:db8::1", 443, 0, 0), ("2001:db8::1", 443, 0, 0)),
    (("::", 0), ("::", 0, 0, 0)),
    (("fe80::1", 546), ("fe80::1", 546, 0, 1)),
    (("fe80::1%vt0", 546), ("fe80::1", 546, 0, 1)),
    (("fe80::1", 546, 0, 7), ("fe80::1", 546, 0, 1)),  # the scope is not carried
    (("::ffff:10.0.2.15", 8080), ("::ffff:10.0.2.15", 8080, 0, 0)),
    (("::ffff:a00:20f", 8080), ("::ffff:10.0.2.15", 8080, 0, 0)),
    (("2001:db8::2", 65535), ("2001:db8::2", 65535, 0, 0)),
])
def test_address6_is_16_address_bytes_and_a_port_and_comes_back_as_a_4_tuple(
        given: tuple[object, ...], reported: tuple[object, ...]) -> None:
    wire = p.AddressBody6(address=given).encode()
    host = str(given[0]).split("%", 1)[0]
    assert wire == ip6(host) + u16(int(str(given[1])))
    assert len(wire) == 18
    assert p.AddressBody6.decode(wire).address == reported


def test_mapped_address_prints_as_a_dotted_quad_like_inet_ntop() -> None:
    assert p.ip6_text(ipaddress.IPv6Address("::ffff:192.0.2.7")) == "::ffff:192.0.2.7"
    assert p.ip6_text(ipaddress.IPv6Address("2001:db8::c000:207")) == "2001:db8::c000:207"
    wire = ip6("::ffff:192.0.2.7") + u16(80)
    assert p.AddressBody6.decode(wire).address[0] == "::ffff:192.0.2.7"


@pytest.mark.parametrize("address", [
    ("10.0.2.2", 80),  # an IPv4 address on an AF_INET6 layout
    ("not-an-ip", 80),
    ("2001:db8::1", 65536),
    ("2001:db8::1", -1),
    ("2001:db8::1", 80, 0),  # neither 2 nor 4 fields
    ("2001:db8::1",),
])
def test_address6_refuses_what_it_cannot_carry(address: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        p.AddressBody6(address=address).encode()


def test_ipv4_address_body_refuses_an_ipv6_host() -> None:
    with pytest.raises(ValueError, match="IPv4"):
        p.AddressBody(address=("2001:db8::1", 80)).encode()


@pytest.mark.parametrize("cut", [0, 1, 15, 16, 17])
def test_a_short_address6_is_malformed(cut: int) -> None:
    with pytest.raises(p.MalformedMessage):
        p.AddressBody6.decode((ip6("2001:db8::1") + u16(80))[:cut])


def test_address6_with_a_trailing_byte_is_malformed() -> None:
    with pytest.raises(p.MalformedMessage, match="trailing"):
        p.AddressBody6.decode(ip6("2001:db8::1") + u16(80) + b"\x00")


def test_the_ipv6_twins_swap_only_the_address() -> None:
    addr = ("2001:db8::2", 53)
    a6 = ip6("2001:db8::2") + u16(53)
    assert p.BindRequest6(sock=7, address=addr).encode() == u32(7) + a6
    assert p.ConnectRequest6(sock=7, timeout_ms=1500, address=addr).encode() == (
        u32(7) + u32(1500) + a6)
    assert p.AcceptReply6(sock=9, address=addr).encode() == u32(9) + a6
    assert p.SendToRequest6(sock=7, timeout_ms=0, flags=p.SendFlags.ALL, address=addr,
                            data=b"hey").encode() == u32(7) + u32(0) + b"\x01" + a6 + b"hey"
    assert p.RecvFromReply6(address=addr, data=b"ok").encode() == a6 + b"ok"


def test_ipv4_layouts_keep_their_bytes() -> None:
    a4 = bytes([10, 0, 2, 2]) + u16(53)
    assert p.BindRequest(sock=7, address=("10.0.2.2", 53)).encode() == u32(7) + a4
    assert p.ConnectRequest(sock=7, timeout_ms=1500, address=("10.0.2.2", 53)).encode() == (
        u32(7) + u32(1500) + a4)
    assert p.AcceptReply(sock=9, address=("10.0.2.2", 53)).encode() == u32(9) + a4
    assert p.SendToRequest(sock=7, timeout_ms=0, flags=p.SendFlags(0),
                           address=("10.0.2.2", 53), data=b"x").encode() == (
        u32(7) + u32(0) + b"\x00" + a4 + b"x")
    assert p.RecvFromReply(address=("10.0.2.2", 53), data=b"").encode() == a4
    assert p.AddressBody(address=("10.0.2.2", 53)).encode() == a4


TWINS = [
    (p.AddressBody, p.AddressBody6),
    (p.BindRequest, p.BindRequest6),
    (p.ConnectRequest, p.ConnectRequest6),
    (p.AcceptReply, p.AcceptReply6),
    (p.SendToRequest, p.SendToRequest6),
    (p.RecvFromReply, p.RecvFromReply6),
]


@pytest.mark.parametrize(("v4", "v6"), TWINS, ids=lambda c: c.__name__)
def test_for_family_picks_the_twin_for_af_inet6_only(v4: type[p.Body], v6: type[p.Body]) -> None:
    assert p.for_family(v4, AF_INET) is v4
    assert p.for_family(v4, AF_INET6) is v6
    assert issubclass(v6, v4)


@pytest.mark.parametrize("body", [p.SocketRef, p.ListenRequest, p.WaitRequest, p.SendRequest,
                                  p.RecvRequest, p.SetSockOptRequest, p.CountBody],
                         ids=lambda c: c.__name__)
def test_bodies_without_an_address_are_the_same_for_both_families(body: type[p.Body]) -> None:
    assert p.for_family(body, AF_INET6) is body


SIX_BODIES: list[p.Body] = [
    p.AddressBody6(address=("2001:db8::1", 80, 0, 0)),
    p.BindRequest6(sock=1, address=("::", 0, 0, 0)),
    p.ConnectRequest6(sock=2, timeout_ms=p.FOREVER, address=("fe80::2", 22, 0, 1)),
    p.AcceptReply6(sock=5, address=("::ffff:10.0.2.2", 40000, 0, 0)),
    p.SendToRequest6(sock=6, timeout_ms=9, flags=p.SendFlags(0),
                     address=("2001:db8::53", 53, 0, 0), data=b"q"),
    p.RecvFromReply6(address=("2001:db8::53", 53, 0, 0), data=b"a"),
    p.CreateRequest(kind=SocketKind.TCP, family=AF_INET6),
    p.SetSockOptRequest(sock=3, option=p.SockOpt.IPV6_V6ONLY, value=1),
    p.ResolveAllRequest(timeout_ms=2000, families=p.WANT_A | p.WANT_AAAA,
                        hostname="example.test"),
    p.ResolveAllReply(addresses=("2001:db8::1", "10.0.2.2", "::ffff:10.0.2.3")),
    p.ResolveAllReply(addresses=()),
]


@pytest.mark.parametrize("body", SIX_BODIES, ids=lambda b: type(b).__name__)
def test_every_new_body_round_trips(body: p.Body) -> None:
    assert type(body).decode(body.encode()) == body


TAILED6 = (p.SendToRequest6, p.RecvFromReply6)


@pytest.mark.parametrize("body", SIX_BODIES, ids=lambda b: type(b).__name__)
def test_every_new_body_cut_short_is_malformed(body: p.Body) -> None:
    wire = body.encode()
    fixed = len(wire) - (len(getattr(body, "data", b"")) if isinstance(body, TAILED6) else 0)
    for cut in range(fixed):
        with pytest.raises(p.MalformedMessage):
            type(body).decode(wire[:cut])


def test_an_ipv6_body_does_not_decode_with_the_ipv4_layout() -> None:
    wire = p.BindRequest6(sock=1, address=("2001:db8::1", 80)).encode()
    with pytest.raises(p.MalformedMessage, match="trailing"):
        p.BindRequest.decode(wire)
    with pytest.raises(p.MalformedMessage):
        p.BindRequest6.decode(p.BindRequest(sock=1, address=("10.0.2.2", 80)).encode())


# --------------------------------------------------------------------------------------------
# The service: an AF_INET6 socket's requests and replies


def test_bind_of_an_af_inet6_socket_passes_the_ipv6_address_and_replies_18_bytes() -> None:
    stack, _, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_BIND, p.BindRequest6(sock=sock,
                                                         address=("2001:db8::15", 5353)))
    assert reply.status == 0, p.error_text(reply)
    assert stack.sockets[0].local == ("2001:db8::15", 5353)
    assert reply.body == ip6("2001:db8::15") + u16(5353)
    assert p.AddressBody6.decode(reply.body).address == ("2001:db8::15", 5353, 0, 0)


def test_bind_of_an_af_inet6_socket_to_port_0_reports_the_port_chosen() -> None:
    stack, _, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_BIND, p.BindRequest6(sock=sock, address=("::", 0)))
    assert reply.status == 0
    port = stack.sockets[0].getsockname()[1]
    assert port != 0
    assert p.AddressBody6.decode(reply.body).address == ("::", port, 0, 0)


def test_bind_of_an_af_inet6_socket_with_the_ipv4_layout_is_einval() -> None:
    stack, service, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_BIND, p.BindRequest(sock=sock, address=("10.0.2.15", 53)))
    assert reply.status == errno.EINVAL
    assert stack.sockets[0].local is None
    assert service.counters["requests.malformed"] == 1


def test_bind_of_an_af_inet_socket_with_the_ipv6_layout_is_einval() -> None:
    stack, _, client = setup()
    sock = client.create(0x02)
    reply = client.call(Code.SOCKET_BIND, p.BindRequest6(sock=sock, address=("::", 53)))
    assert reply.status == errno.EINVAL and "trailing" in p.error_text(reply)
    assert stack.sockets[0].local is None


def test_a_truncated_address6_is_einval_and_the_session_lives_on() -> None:
    stack, service, client = setup()
    sock = client.create(0x12)
    full = p.BindRequest6(sock=sock, address=("2001:db8::15", 53)).encode()
    assert len(full) == 4 + 18
    reply = client.call(Code.SOCKET_BIND, full[:4 + 17])
    assert reply.status == errno.EINVAL
    assert "SOCKET_BIND (IPv6)" in p.error_text(reply)
    assert service.counters["requests.malformed"] == 1
    assert stack.sockets[0].local is None
    assert client.session.open and sock in client.session.sockets
    # The same socket and channel still work.
    assert client.call(Code.SOCKET_BIND, full).status == 0
    assert stack.sockets[0].local == ("2001:db8::15", 53)


@pytest.mark.parametrize("code", [Code.SOCKET_BIND, Code.SOCKET_CONNECT, Code.SOCKET_SENDTO])
def test_an_addressed_request_too_short_for_its_socket_id_is_einval(code: int) -> None:
    _, service, client = setup()
    client.create(0x12)
    assert client.call(code, b"\x00\x00\x01").status == errno.EINVAL
    assert service.counters["requests.malformed"] == 1


def test_an_addressed_request_for_an_unknown_socket_is_ebadf() -> None:
    _, _, client = setup()
    reply = client.call(Code.SOCKET_BIND, p.BindRequest6(sock=99, address=("::", 1)))
    assert reply.status == errno.EBADF


def test_connect_of_an_af_inet6_udp_socket_passes_the_4_tuple() -> None:
    stack, _, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_CONNECT, p.ConnectRequest6(
        sock=sock, timeout_ms=0, address=("2001:db8::53", 53)))
    assert reply.status == 0, p.error_text(reply)
    assert stack.sockets[0].remote == ("2001:db8::53", 53, 0, 0)
    peer = client.call(Code.SOCKET_GETPEERNAME, p.SocketRef(sock=sock))
    assert peer.status == 0 and len(peer.body) == 18
    assert p.AddressBody6.decode(peer.body).address == ("2001:db8::53", 53, 0, 0)


def test_connect_of_an_af_inet6_tcp_socket_to_a_link_local_peer() -> None:
    stack, _, client = setup()
    sock = client.create(0x11)
    stack.sockets[0].space = 0  # the handshake is not done
    reply = client.call(Code.SOCKET_CONNECT, p.ConnectRequest6(
        sock=sock, timeout_ms=0, address=("fe80::2", 22)))
    assert reply.status == errno.EINPROGRESS
    assert stack.sockets[0].remote == ("fe80::2", 22, 0, 1)


def test_sendto_of_an_af_inet6_socket_passes_the_address_and_the_data() -> None:
    stack, _, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_SENDTO, p.SendToRequest6(
        sock=sock, timeout_ms=0, flags=p.SendFlags(0), address=("fe80::1", 547),
        data=b"solicit"))
    assert reply.status == 0, p.error_text(reply)
    assert p.CountBody.decode(reply.body).count == 7
    assert stack.sockets[0].sent == [(b"solicit", ("fe80::1", 547, 0, 1))]


def test_empty_sendto_of_an_af_inet6_socket_still_sends_a_datagram() -> None:
    stack, _, client = setup()
    sock = client.create(0x12)
    reply = client.call(Code.SOCKET_SENDTO, p.SendToRequest6(
        sock=sock, timeout_ms=0, flags=p.SendFlags(0), address=("::ffff:10.0.2.2", 7),
        data=b""))
    assert p.CountBody.decode(reply.body).count == 0
    assert stack.sockets[0].sent == [(b"", ("::ffff:10.0.2.2", 7, 0, 0))]


def test_sendto_of_an_af_inet_socket_keeps_the_ipv4_layout() -> None:
    stack, _, client = setup()
    sock = client.create(0x02)
    reply = client.call(Code.SOCKET_SENDTO, p.SendToRequest(
        sock=sock, timeout_ms=0, flags=p.SendFlags(0), address=("10.0.2.2", 7), data=b"x"))
    assert reply.status == 0
    assert stack.sockets[0].sent == [(b"x", ("10.0.2.2", 7))]
    six = client.call(Code.SOCKET_SENDTO, p.SendToRequest6(
        sock=sock, timeout_ms=0, flags=p.SendFlags(0), address=("::1", 7), data=b"y"))
    # Read with the IPv4 layout, the 18-byte address6 is a 6-byte address and 12 bytes
    # of data: the request is well formed and goes to the wrong place.  The family is
    # the socket's, so the client must use the right layout.
    assert six.status == 0
    assert stack.sockets[0].sent[1][1] == ("0.0.0.0", 0)


def test_getsockname_of_an_af_inet6_socket_is_18_bytes() -> None:
    stack, _, client = setup()
    sock = client.create(0x11)
    stack.sockets[0].local = ("2001:db8::15", 80, 0, 0)
    reply = client.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock))
    assert reply.status == 0
    assert reply.body == ip6("2001:db8::15") + u16(80)
    ipv4 = client.create(0x01)
    stack.sockets[1].local = ("10.0.2.15", 80)
    assert len(client.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=ipv4)).body) == 6


def test_getpeername_of_a_mapped_peer_prints_dotted() -> None:
    stack, _, client = setup()
    sock = client.create(0x11)
    stack.sockets[0].remote = ("::ffff:10.0.2.2", 443, 0, 0)
    reply = client.call(Code.SOCKET_GETPEERNAME, p.SocketRef(sock=sock))
    assert reply.body == ip6("::ffff:10.0.2.2") + u16(443)
    assert p.AddressBody6.decode(reply.body).address == ("::ffff:10.0.2.2", 443, 0, 0)


def test_accept_on_an_af_inet6_listener_replies_id_and_address6_and_the_child_is_ipv6(
        ) -> None:
    stack, service, client = setup()
    listener = client.create(0x11)
    child = FakeSocket(stack, SocketKind.TCP)
    child.remote = ("fe80::2", 40000, 0, 1)
    child.local = ("fe80::1", 22, 0, 1)
    stack.sockets[0].backlog.append(child)
    reply = client.call(Code.SOCKET_ACCEPT, p.WaitRequest(sock=listener, timeout_ms=0))
    assert reply.status == 0, p.error_text(reply)
    assert len(reply.body) == 4 + 18
    accepted = p.AcceptReply6.decode(reply.body)
    assert accepted.address == ("fe80::2", 40000, 0, 1)
    assert service.sockets[accepted.sock].family == AF_INET6
    name = client.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=accepted.sock))
    assert p.AddressBody6.decode(name.body).address == ("fe80::1", 22, 0, 1)


def test_recvfrom_of_an_af_inet6_socket_replies_address6_then_the_data() -> None:
    stack, service, client = setup()
    sock = client.create(0x12)
    rid = client.send(Code.SOCKET_RECVFROM, p.RecvRequest(sock=sock, timeout_ms=p.FOREVER,
                                                          max_bytes=100))
    assert client.reply(rid) is None
    stack.sockets[0].deliver(b"answer", ("2001:db8::53", 53, 0, 0))
    service.on_changed(1.0)
    reply = client.reply(rid)
    assert reply is not None and reply.status == 0
    assert reply.body == ip6("2001:db8::53") + u16(53) + b"answer"
    assert p.RecvFromReply6.decode(reply.body) == p.RecvFromReply6(
        address=("2001:db8::53", 53, 0, 0), data=b"answer")


def test_ipv6_v6only_has_the_value_7() -> None:
    assert int(p.SockOpt.IPV6_V6ONLY) == 7
    assert int(Code.DNS_RESOLVE_ALL) == 0x4B


@pytest.mark.parametrize("raw", [0x01, 0x02])
def test_ipv6_v6only_on_an_af_inet_socket_is_enoprotoopt(raw: int) -> None:
    stack, _, client = setup()
    sock = client.create(raw)
    reply = client.call(Code.SOCKET_SETSOCKOPT, p.SetSockOptRequest(
        sock=sock, option=p.SockOpt.IPV6_V6ONLY, value=1))
    assert reply.status == errno.ENOPROTOOPT
    assert stack.options == []


@pytest.mark.parametrize("raw", [0x11, 0x12])
def test_ipv6_v6only_on_an_af_inet6_socket_reaches_the_stack_socket(raw: int) -> None:
    stack, _, client = setup()
    sock = client.create(raw)
    reply = client.call(Code.SOCKET_SETSOCKOPT, p.SetSockOptRequest(
        sock=sock, option=p.SockOpt.IPV6_V6ONLY, value=1))
    assert reply.status == 0
    assert stack.options == [("IPV6_V6ONLY", 1)]


def test_ipv6_v6only_on_an_unknown_socket_is_ebadf() -> None:
    _, _, client = setup()
    reply = client.call(Code.SOCKET_SETSOCKOPT, p.SetSockOptRequest(
        sock=42, option=p.SockOpt.IPV6_V6ONLY, value=1))
    assert reply.status == errno.EBADF


def test_the_family_of_a_socket_does_not_leak_to_the_next_one() -> None:
    stack, _, client = setup()
    six = client.create(0x12)
    four = client.create(0x02)
    assert stack.families == [AF_INET6, AF_INET]
    assert client.call(Code.SOCKET_BIND, p.BindRequest(sock=four,
                                                       address=("0.0.0.0", 9))).status == 0
    assert client.call(Code.SOCKET_BIND, p.BindRequest6(sock=six,
                                                        address=("::", 9))).status == 0
    assert stack.sockets[0].local == ("::", 9) and stack.sockets[1].local == ("0.0.0.0", 9)


# --------------------------------------------------------------------------------------------
# NET_DNS_RESOLVE_ALL bodies


def test_resolve_all_request_layout() -> None:
    body = p.ResolveAllRequest(timeout_ms=2000, families=p.WANT_A | p.WANT_AAAA,
                               hostname="example.test")
    assert body.encode() == u32(2000) + b"\x03" + b"\x0c" + b"example.test"
    assert (p.WANT_A, p.WANT_AAAA) == (0x01, 0x02)


@pytest.mark.parametrize("name_length", [0, p.MAX_NAME + 1])
def test_resolve_all_request_name_must_be_1_to_253_bytes(name_length: int) -> None:
    wire = u32(0) + b"\x02" + bytes([name_length]) + b"a" * name_length
    with pytest.raises(p.MalformedMessage, match="name length"):
        p.ResolveAllRequest.decode(wire)
    longest = u32(0) + b"\x02" + bytes([p.MAX_NAME]) + b"a" * p.MAX_NAME
    assert p.ResolveAllRequest.decode(longest).hostname == "a" * p.MAX_NAME


def test_resolve_all_request_decoder_leaves_the_families_check_to_the_handler() -> None:
    wire = u32(0) + b"\x00" + b"\x01x"
    assert p.ResolveAllRequest.decode(wire).families == 0


def test_resolve_all_reply_layout_tags_each_address_with_its_family() -> None:
    body = p.ResolveAllReply(addresses=("2001:db8::1", "10.0.2.2"))
    assert body.encode() == (b"\x02" + b"\x06" + ip6("2001:db8::1")
                             + b"\x04" + bytes([10, 0, 2, 2]))
    assert p.ResolveAllReply.decode(body.encode()) == body


def test_resolve_all_reply_keeps_the_order_and_mapped_addresses_are_ipv6() -> None:
    body = p.ResolveAllReply(addresses=("10.0.2.2", "::ffff:10.0.2.3", "fe80::1"))
    wire = body.encode()
    assert [wire[1], wire[6], wire[23]] == [4, 6, 6]
    assert p.ResolveAllReply.decode(wire).addresses == ("10.0.2.2", "::ffff:10.0.2.3",
                                                         "fe80::1")


def test_resolve_all_reply_is_capped_at_max_addresses() -> None:
    many = tuple(f"2001:db8::{i:x}" for i in range(1, p.MAX_ADDRESSES + 6))
    wire = p.ResolveAllReply(addresses=many).encode()
    assert wire[0] == p.MAX_ADDRESSES
    assert len(wire) == 1 + p.MAX_ADDRESSES * 17
    assert p.ResolveAllReply.decode(wire).addresses == many[:p.MAX_ADDRESSES]


@pytest.mark.parametrize("tag", [0, 1, 5, 41, 255])
def test_resolve_all_reply_with_an_unknown_family_tag_is_malformed(tag: int) -> None:
    with pytest.raises(p.MalformedMessage, match=f"family tag {tag}"):
        p.ResolveAllReply.decode(b"\x01" + bytes([tag]) + bytes(16))


def test_resolve_all_reply_counting_more_than_max_addresses_is_malformed() -> None:
    count = p.MAX_ADDRESSES + 1
    wire = bytes([count]) + (b"\x04" + bytes(4)) * count
    with pytest.raises(p.MalformedMessage, match=f"{count} addresses"):
        p.ResolveAllReply.decode(wire)
    exact = bytes([p.MAX_ADDRESSES]) + (b"\x04" + bytes(4)) * p.MAX_ADDRESSES
    assert len(p.ResolveAllReply.decode(exact).addresses) == p.MAX_ADDRESSES


@pytest.mark.parametrize("wire", [
    b"",
    b"\x01",  # one announced, none there
    b"\x01\x04\x0a\x00\x02",  # an IPv4 address cut short
    b"\x01\x06" + bytes(15),  # an IPv6 address cut short
    b"\x01\x04" + bytes(16),  # a 16-byte address tagged 4: 12 trailing bytes
    b"\x00\x04",  # trailing bytes after count 0
])
def test_resolve_all_reply_that_does_not_add_up_is_malformed(wire: bytes) -> None:
    with pytest.raises(p.MalformedMessage):
        p.ResolveAllReply.decode(wire)


# --------------------------------------------------------------------------------------------
# DnsHandler.resolve_all


def dns_setup(servers: list[str] | None = None,
              stack: FakeStack | None = None) -> tuple[DnsHandler, NetService, Client]:
    service = NetService(stack or FakeStack())
    handler = DnsHandler(["10.0.2.3"] if servers is None else servers,
                         rng=random.Random(3))
    service.extensions[Code.DNS_RESOLVE] = handler
    service.extensions[Code.DNS_RESOLVE_ALL] = handler.resolve_all
    return handler, service, Client(service)


def resolve_all(families: int, name: str = "example.test") -> p.ResolveAllRequest:
    return p.ResolveAllRequest(timeout_ms=1000, families=families, hostname=name)


@pytest.mark.parametrize("families", [0x00, 0x04, 0x05, 0x07, 0x80, 0xFF])
def test_resolve_all_with_bad_families_is_einval_before_any_query(families: int) -> None:
    _, service, client = dns_setup()
    reply = client.call(Code.DNS_RESOLVE_ALL, resolve_all(families))
    assert reply.status == errno.EINVAL
    assert f"0x{families:02x}" in p.error_text(reply)
    assert isinstance(service.stack, FakeStack) and service.stack.sockets == []
    assert service.parked == set()


@pytest.mark.parametrize(("families", "sockets"), [(0x01, 1), (0x02, 1), (0x03, 2)])
def test_resolve_all_with_good_families_sends_one_query_per_type(families: int,
                                                                sockets: int) -> None:
    _, service, client = dns_setup()
    rid = client.send(Code.DNS_RESOLVE_ALL, resolve_all(families))
    assert client.reply(rid) is None  # parked: waiting for the server
    stack = service.stack
    assert isinstance(stack, FakeStack)
    assert len(stack.sockets) == sockets and stack.families == [AF_INET] * sockets
    assert all(s.sent and s.sent[0][1] == ("10.0.2.3", 53) for s in stack.sockets)


def test_resolve_all_without_servers_is_ehostunreach() -> None:
    _, _, client = dns_setup(servers=[])
    assert client.call(Code.DNS_RESOLVE_ALL, resolve_all(0x03)).status == errno.EHOSTUNREACH


def test_resolve_all_with_a_malformed_body_is_einval() -> None:
    _, service, client = dns_setup()
    assert client.call(Code.DNS_RESOLVE_ALL, u32(0) + b"\x03").status == errno.EINVAL
    assert service.counters["requests.malformed"] == 1


def answer(rdtype: int, *addresses: str) -> Answer:
    return Answer(name="example.test", canonical_name="example.test", rdtype=rdtype,
                  addresses=addresses, ttl=300)


def test_resolve_all_from_the_cache_puts_ipv4_first_when_the_stack_has_no_ipv6() -> None:
    handler, service, client = dns_setup()
    handler.cache.put_answer(answer(A, "10.0.2.2"), 0.0)
    handler.cache.put_answer(answer(AAAA, "2001:db8::1"), 0.0)
    reply = client.call(Code.DNS_RESOLVE_ALL, resolve_all(0x03))
    assert reply.status == 0, p.error_text(reply)
    assert p.ResolveAllReply.decode(reply.body).addresses == ("10.0.2.2", "2001:db8::1")
    assert service.counters["dns.cache_hits"] == 2


class _Nd:
    def __init__(self, source: str | None) -> None:
        self.source = source
        self.asked: list[ipaddress.IPv6Address] = []

    def source_for(self, destination: ipaddress.IPv6Address) -> str | None:
        self.asked.append(destination)
        return self.source


class _Ipv6Stack(FakeStack):
    def __init__(self, source: str | None) -> None:
        super().__init__()
        self.ipv6 = True
        self.nd = _Nd(source)


@pytest.mark.parametrize(("source", "order"), [
    ("2001:db8::15", ("2001:db8::1", "10.0.2.2")),
    (None, ("10.0.2.2", "2001:db8::1")),
])
def test_resolve_all_puts_ipv6_first_only_when_the_stack_can_send_it(
        source: str | None, order: tuple[str, ...]) -> None:
    stack = _Ipv6Stack(source)
    handler, _, client = dns_setup(stack=stack)
    handler.cache.put_answer(answer(A, "10.0.2.2"), 0.0)
    handler.cache.put_answer(answer(AAAA, "2001:db8::1"), 0.0)
    reply = client.call(Code.DNS_RESOLVE_ALL, resolve_all(0x03))
    assert p.ResolveAllReply.decode(reply.body).addresses == order
    assert stack.nd.asked == [ipaddress.IPv6Address("2001:db8::1")]


def test_resolve_all_for_aaaa_only_returns_only_ipv6() -> None:
    handler, _, client = dns_setup()
    handler.cache.put_answer(answer(A, "10.0.2.2"), 0.0)
    handler.cache.put_answer(answer(AAAA, "2001:db8::1", "2001:db8::2"), 0.0)
    reply = client.call(Code.DNS_RESOLVE_ALL, resolve_all(p.WANT_AAAA))
    assert p.ResolveAllReply.decode(reply.body).addresses == ("2001:db8::1", "2001:db8::2")


def test_resolve_all_of_a_cached_nxdomain_is_enoent() -> None:
    handler, _, client = dns_setup()
    handler.cache.put_nxdomain("example.test", A, 60, 0.0)
    handler.cache.put_nxdomain("example.test", AAAA, 60, 0.0)
    assert client.call(Code.DNS_RESOLVE_ALL, resolve_all(0x03)).status == errno.ENOENT


def _all_reply(handler: DnsHandler, service: NetService,
               outcomes: dict[int, Outcome]) -> Message:
    request = Message(code=Code.DNS_RESOLVE_ALL, request_id=1)
    return handler.reply(service, request, (AAAA, A), outcomes)


@pytest.mark.parametrize(("outcomes", "status"), [
    ({AAAA: NoRecords("no AAAA"), A: NoRecords("no A")}, errno.ENODATA),
    ({AAAA: NameNotFound("nx"), A: NameNotFound("nx")}, errno.ENOENT),
    ({AAAA: NoRecords("no AAAA"), A: NameNotFound("nx")}, errno.ENOENT),
    ({AAAA: NoRecords("no AAAA"), A: DnsTimeout("late")}, errno.ETIMEDOUT),
    ({AAAA: MalformedReply("bad"), A: NoRecords("no A")}, errno.EBADMSG),
])
def test_resolve_all_errors_when_neither_type_resolved(
        outcomes: dict[int, Outcome], status: int) -> None:
    handler, service, _ = dns_setup()
    reply = _all_reply(handler, service, outcomes)
    assert reply.status == status and reply.is_reply


def test_resolve_all_with_one_family_found_answers_with_it() -> None:
    handler, service, _ = dns_setup()
    reply = _all_reply(handler, service, {AAAA: DnsTimeout("late"),
                                          A: answer(A, "10.0.2.2")})
    assert reply.status == 0
    assert p.ResolveAllReply.decode(reply.body).addresses == ("10.0.2.2",)


def test_dns_resolve_still_answers_ipv4_only_in_its_own_layout() -> None:
    handler, _, client = dns_setup()
    handler.cache.put_answer(answer(A, "10.0.2.2", "10.0.2.9"), 0.0)
    reply = client.call(Code.DNS_RESOLVE, p.ResolveRequest(timeout_ms=1000,
                                                           hostname="example.test"))
    assert reply.status == 0
    assert reply.body == b"\x02" + bytes([10, 0, 2, 2, 10, 0, 2, 9])


# --------------------------------------------------------------------------------------------
# The descriptor of an AF_INET6 UDP socket: 18-byte datagram headers


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    sel = selectors.DefaultSelector()
    yield sel
    sel.close()


class Attached:
    def __init__(self, selector: selectors.BaseSelector, kind_byte: int) -> None:
        self.stack, self.service, self.client = setup()
        self.plane = FdPlane(self.service, selector, lambda: 0.0)
        self.service.extensions[Code.SOCKET_ATTACH_FD] = self.plane
        self.service.pumps = self.plane.links
        self.sock = self.client.create(kind_byte)
        self.fake = self.stack.sockets[0]
        reply = self.client.call(Code.SOCKET_ATTACH_FD, p.SocketRef(sock=self.sock))
        assert reply.status == 0 and reply.fd is not None, p.error_text(reply)
        self.fd = socket.socket(fileno=reply.fd)
        self.fd.settimeout(1.0)

    def pump(self) -> None:
        for link in list(self.plane.links.values()):
            link.pump(0.0)

    def close(self) -> None:
        self.fd.close()
        self.pump()


@pytest.fixture
def attached6(selector: selectors.BaseSelector) -> Iterator[Attached]:
    link = Attached(selector, 0x12)
    yield link
    link.close()


def test_af_inet6_descriptor_datagram_from_the_program_carries_an_18_byte_destination(
        attached6: Attached) -> None:
    attached6.fd.send(ip6("2001:db8::53") + u16(53) + b"query")
    attached6.pump()
    assert attached6.fake.sent == [(b"query", ("2001:db8::53", 53))]


def test_af_inet6_descriptor_all_zero_destination_means_the_connected_peer(
        attached6: Attached) -> None:
    attached6.fake.remote = ("2001:db8::53", 53, 0, 0)
    attached6.fd.send(bytes(18) + b"to peer")
    attached6.pump()
    assert attached6.fake.sent == [(b"to peer", ("2001:db8::53", 53, 0, 0))]


def test_af_inet6_descriptor_all_zero_address_with_a_port_is_a_real_destination(
        attached6: Attached) -> None:
    attached6.fd.send(bytes(16) + u16(9) + b"x")
    attached6.pump()
    assert attached6.fake.sent == [(b"x", ("::", 9))]


def test_af_inet6_descriptor_datagram_to_the_program_starts_with_the_source(
        attached6: Attached) -> None:
    attached6.fake.deliver(b"answer", ("fe80::2", 547, 0, 1))
    attached6.pump()
    assert attached6.fd.recv(100) == ip6("fe80::2") + u16(547) + b"answer"


def test_af_inet6_descriptor_error_is_zero_address_port_0_and_an_errno(
        attached6: Attached) -> None:
    attached6.fake.error = errno.EHOSTUNREACH
    attached6.fd.send(ip6("2001:db8::99") + u16(7) + b"lost")
    attached6.pump()
    assert attached6.fd.recv(100) == bytes(16) + u16(0) + u16(errno.EHOSTUNREACH)
    assert attached6.service.counters["fdlink.udp_errors"] == 1


def test_af_inet6_descriptor_message_shorter_than_its_header_is_dropped(
        attached6: Attached) -> None:
    attached6.fd.send(bytes([10, 0, 2, 2]) + u16(53) + b"ipv4-style")  # 16 bytes < 18
    attached6.pump()
    assert attached6.fake.sent == []
    assert attached6.service.counters["fdlink.udp_malformed"] == 1


def test_af_inet_descriptor_keeps_the_6_byte_header(selector: selectors.BaseSelector) -> None:
    link = Attached(selector, 0x02)
    try:
        link.fd.send(bytes([10, 0, 2, 2]) + u16(53) + b"q")
        link.fake.deliver(b"a", ("10.0.2.2", 53))
        link.pump()
        assert link.fake.sent == [(b"q", ("10.0.2.2", 53))]
        assert link.fd.recv(100) == bytes([10, 0, 2, 2]) + u16(53) + b"a"
    finally:
        link.close()
