"""NetService: dispatch, parking, timeouts and cleanup, driven with in-memory sockets."""

from __future__ import annotations

import errno
import itertools
import os
import socket as socket_module

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.netd.fakes import FakeSocket, FakeStack
from vipernet.netd import protocol as p
from vipernet.netd import service as service_module
from vipernet.netd.protocol import Code, Message
from vipernet.netd.service import NetService, Session
from vipernet.stack.socket_api import SocketKind

_ids = itertools.count(1)


class Client:
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
        for msg in self.replies:
            if msg.request_id == rid:
                return msg
        return None

    def call(self, code: int, body: p.Body | bytes = b"", now: float = 0.0) -> Message:
        reply = self.reply(self.send(code, body, now))
        assert reply is not None, "expected an immediate reply"
        return reply

    def udp(self) -> int:
        reply = self.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.UDP))
        assert reply.status == 0
        return p.SocketRef.decode(reply.body).sock


def setup() -> tuple[FakeStack, NetService, Client]:
    stack = FakeStack()
    service = NetService(stack)
    return stack, service, Client(service)


def test_create_bind_and_getsockname_answer_at_once() -> None:
    _stack, _, client = setup()
    sock = client.udp()
    reply = client.call(Code.SOCKET_BIND, p.BindRequest(sock=sock, address=("0.0.0.0", 5000)))
    assert reply.status == 0 and reply.is_reply
    assert p.AddressBody.decode(reply.body).address == ("0.0.0.0", 5000)
    got = client.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock))
    assert p.AddressBody.decode(got.body).address == ("0.0.0.0", 5000)


def test_recv_parks_until_the_stack_reports_data() -> None:
    stack, service, client = setup()
    sock = client.udp()
    rid = client.send(Code.SOCKET_RECVFROM, p.RecvRequest(sock=sock, timeout_ms=p.FOREVER,
                                                          max_bytes=100))
    assert client.reply(rid) is None
    stack.sockets[0].deliver(b"hello", ("10.0.2.2", 9))
    service.on_changed(1.0)
    reply = client.reply(rid)
    assert reply is not None and reply.status == 0
    assert p.RecvFromReply.decode(reply.body) == p.RecvFromReply(address=("10.0.2.2", 9),
                                                                 data=b"hello")


def test_parked_recv_times_out_with_etimedout_at_its_deadline() -> None:
    _, service, client = setup()
    sock = client.udp()
    rid = client.send(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=500, max_bytes=10),
                      now=10.0)
    assert service.next_deadline() == 10.5
    service.expire(10.4)
    assert client.reply(rid) is None
    service.expire(10.5)
    reply = client.reply(rid)
    assert reply is not None and reply.status == errno.ETIMEDOUT
    assert service.next_deadline() is None


def test_non_blocking_recv_fails_with_eagain() -> None:
    _, _, client = setup()
    sock = client.udp()
    reply = client.call(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=0, max_bytes=10))
    assert reply.status == errno.EAGAIN


def test_one_clients_parked_recv_does_not_hold_up_another_client() -> None:
    _stack, service, alice = setup()
    bob = Client(service)
    a = alice.udp()
    alice.send(Code.SOCKET_RECV, p.RecvRequest(sock=a, timeout_ms=p.FOREVER, max_bytes=10))
    b = bob.udp()
    assert bob.call(Code.SOCKET_SENDTO, p.SendToRequest(
        sock=b, timeout_ms=0, flags=p.SendFlags(0), address=("10.0.2.2", 7),
        data=b"x")).status == 0


def test_a_client_cannot_touch_another_clients_socket() -> None:
    _, service, alice = setup()
    bob = Client(service)
    a = alice.udp()
    reply = bob.call(Code.SOCKET_CLOSE, p.SocketRef(sock=a))
    assert reply.status == errno.EBADF


def test_closing_a_session_closes_its_sockets_and_drops_its_waiters() -> None:
    stack, service, alice = setup()
    bob = Client(service)
    a = alice.udp()
    bob.udp()
    alice.send(Code.SOCKET_RECV, p.RecvRequest(sock=a, timeout_ms=5000, max_bytes=10))
    service.close_session(alice.session, 1.0)
    assert stack.sockets[0].closed and not stack.sockets[1].closed
    assert service.next_deadline() is None
    rows = service.stat_report(1.0)["sockets"]
    assert isinstance(rows, list) and [r["client"] for r in rows] == [bob.session.client_id]


def test_unknown_code_gets_enosys_and_the_session_stays_usable() -> None:
    _, _, client = setup()
    reply = client.call(0x99, b"junk")
    assert reply.status == errno.ENOSYS and "0x99" in p.error_text(reply)
    assert client.udp() > 0


def test_malformed_body_gets_einval() -> None:
    _, _, client = setup()
    assert client.call(Code.SOCKET_BIND, b"\x00\x01").status == errno.EINVAL
    assert client.call(Code.SOCKET_CREATE, b"\x07").status == errno.EINVAL


def test_send_all_parks_through_a_full_socket_until_everything_is_queued() -> None:
    stack, service, client = setup()
    sock = client.udp()
    fake = stack.sockets[0]
    fake.space = 3
    rid = client.send(Code.SOCKET_SEND, p.SendRequest(sock=sock, timeout_ms=p.FOREVER,
                                                      flags=p.SendFlags.ALL, data=b"abcdefgh"))
    assert client.reply(rid) is None
    fake.space = 100
    stack.changed.add(fake)
    service.on_changed(1.0)
    reply = client.reply(rid)
    assert reply is not None and p.CountBody.decode(reply.body).count == 8
    assert b"".join(d for d, _ in fake.sent) == b"abcdefgh"


def test_send_without_all_returns_the_partial_count() -> None:
    stack, _, client = setup()
    sock = client.udp()
    stack.sockets[0].space = 3
    reply = client.call(Code.SOCKET_SEND, p.SendRequest(sock=sock, timeout_ms=p.FOREVER,
                                                        flags=p.SendFlags(0), data=b"abcdef"))
    assert p.CountBody.decode(reply.body).count == 3


def test_tcp_connect_parks_until_writable_and_reports_refusal() -> None:
    stack, service, client = setup()
    created = client.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.TCP))
    sock = p.SocketRef.decode(created.body).sock
    fake = stack.sockets[0]
    fake.space = 0
    rid = client.send(Code.SOCKET_CONNECT, p.ConnectRequest(sock=sock, timeout_ms=p.FOREVER,
                                                            address=("10.0.2.2", 1)))
    assert client.reply(rid) is None
    fake.error = errno.ECONNREFUSED
    stack.changed.add(fake)
    service.on_changed(0.1)
    reply = client.reply(rid)
    assert reply is not None and reply.status == errno.ECONNREFUSED


def test_non_blocking_tcp_connect_says_einprogress() -> None:
    stack, _, client = setup()
    created = client.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.TCP))
    sock = p.SocketRef.decode(created.body).sock
    stack.sockets[0].space = 0
    reply = client.call(Code.SOCKET_CONNECT, p.ConnectRequest(sock=sock, timeout_ms=0,
                                                              address=("10.0.2.2", 1)))
    assert reply.status == errno.EINPROGRESS


def test_accept_registers_the_new_socket_for_the_same_client() -> None:
    stack, service, client = setup()
    created = client.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.TCP))
    listener = p.SocketRef.decode(created.body).sock
    rid = client.send(Code.SOCKET_ACCEPT, p.WaitRequest(sock=listener, timeout_ms=p.FOREVER))
    child = FakeSocket(stack, SocketKind.TCP)
    child.remote = ("10.0.2.2", 40000)
    stack.sockets[0].backlog.append(child)
    stack.changed.add(stack.sockets[0])
    service.on_changed(0.0)
    reply = client.reply(rid)
    assert reply is not None
    accepted = p.AcceptReply.decode(reply.body)
    assert accepted.address == ("10.0.2.2", 40000)
    assert accepted.sock in client.session.sockets


def test_poll_reports_readiness_and_parks_when_nothing_is_ready() -> None:
    stack, service, client = setup()
    a, b = client.udp(), client.udp()
    stack.sockets[0].space = 0
    stack.sockets[1].space = 0
    rid = client.send(Code.SOCKET_POLL, p.PollBody(timeout_ms=1000, entries=(
        (a, p.PollEvents.IN), (b, p.PollEvents.IN | p.PollEvents.OUT))))
    assert client.reply(rid) is None
    stack.sockets[1].deliver(b"x")
    service.on_changed(0.5)
    reply = client.reply(rid)
    assert reply is not None
    assert p.PollBody.decode(reply.body).entries == ((a, 0), (b, p.PollEvents.IN))


def test_poll_that_times_out_returns_no_events() -> None:
    _, service, client = setup()
    a = client.udp()
    rid = client.send(Code.SOCKET_POLL, p.PollBody(timeout_ms=100, entries=((a, 1),)))
    service.expire(0.2)
    reply = client.reply(rid)
    assert reply is not None and reply.status == 0
    assert p.PollBody.decode(reply.body).entries == ((a, 0),)


def test_closing_a_socket_wakes_its_waiters_with_ebadf() -> None:
    _, _, client = setup()
    a = client.udp()
    rid = client.send(Code.SOCKET_RECV, p.RecvRequest(sock=a, timeout_ms=p.FOREVER,
                                                      max_bytes=1))
    assert client.call(Code.SOCKET_CLOSE, p.SocketRef(sock=a)).status == 0
    reply = client.reply(rid)
    assert reply is not None and reply.status == errno.EBADF


def test_setsockopt_passes_the_option_name_to_the_stack_socket() -> None:
    stack, _, client = setup()
    a = client.udp()
    assert client.call(Code.SOCKET_SETSOCKOPT, p.SetSockOptRequest(
        sock=a, option=p.SockOpt.TCP_NODELAY, value=1)).status == 0
    assert stack.options == [("TCP_NODELAY", 1)]
    assert client.call(Code.SOCKET_SETSOCKOPT, p.SetSockOptRequest(
        sock=a, option=999, value=1)).status == errno.ENOPROTOOPT


def test_a_stack_bug_becomes_an_eio_reply_not_a_crash() -> None:
    stack, _, client = setup()
    a = client.udp()

    def broken(max_bytes: int) -> tuple[bytes, tuple[str, int]]:
        raise RuntimeError("boom")

    stack.sockets[0].recvfrom = broken  # type: ignore[method-assign]
    reply = client.call(Code.SOCKET_RECV, p.RecvRequest(sock=a, timeout_ms=0, max_bytes=1))
    assert reply.status == errno.EIO
    assert client.udp() > 0


def test_an_absurdly_long_timeout_parks_without_a_deadline() -> None:
    _, service, client = setup()
    sock = client.udp()
    client.send(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=p.FOREVER - 1,
                                                max_bytes=1))
    assert service.next_deadline() is None
    client.send(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=3_600_000, max_bytes=1),
                now=5.0)
    assert service.next_deadline() == 3605.0


def test_a_client_cannot_open_more_sockets_than_its_limit(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(service_module, "MAX_SOCKETS_PER_CLIENT", 3)
    stack, _, client = setup()
    for _ in range(3):
        client.udp()
    reply = client.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.UDP))
    assert reply.status == errno.EMFILE
    assert stack.sockets[-1].closed  # the stack socket made for it is released


def test_too_many_parked_requests_get_enobufs_but_close_still_works(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "MAX_PARKED_PER_CLIENT", 2)
    _, _, client = setup()
    sock = client.udp()
    for _ in range(2):
        client.send(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=p.FOREVER,
                                                    max_bytes=1))
    reply = client.call(Code.SOCKET_RECV, p.RecvRequest(sock=sock, timeout_ms=0, max_bytes=1))
    assert reply.status == errno.ENOBUFS
    assert client.call(Code.SOCKET_CLOSE, p.SocketRef(sock=sock)).status == 0


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([int(c) for c in Code] + [0x00, 0x99]),
                          st.binary(max_size=40)), max_size=12))
def test_random_requests_never_escape_the_service(requests: list[tuple[int, bytes]]) -> None:
    stack, service, client = setup()
    client.udp()
    for n, (code, body) in enumerate(requests):
        if body[:4] and code in (Code.SOCKET_RECV, Code.SOCKET_CLOSE):
            body = b"\x00\x00\x00\x01" + body[4:]  # aim some at the socket that exists
        client.send(code, body, now=float(n))
        stack.sockets[0].deliver(b"data")
        service.on_changed(float(n))
    service.expire(1e9)
    for reply in client.replies:
        assert reply.is_reply
    assert len({r.request_id for r in client.replies}) == len(client.replies)
    service.close_session(client.session, 1e9)
    assert service.sockets == {} and service.parked == set()


def _tcp(client: Client) -> int:
    created = client.call(Code.SOCKET_CREATE, p.CreateRequest(kind=SocketKind.TCP))
    return p.SocketRef.decode(created.body).sock


def test_a_second_connect_while_the_first_runs_says_ealready_then_eisconn() -> None:
    stack, service, client = setup()
    sock = _tcp(client)
    fake = stack.sockets[0]
    fake.space = 0  # the handshake is not done
    to = ("10.0.2.2", 80)
    first = client.send(Code.SOCKET_CONNECT, p.ConnectRequest(sock=sock, timeout_ms=p.FOREVER,
                                                              address=to))
    assert client.reply(first) is None  # parked
    for timeout_ms in (0, p.FOREVER):  # non-blocking or blocking, as Linux: EALREADY
        again = client.call(Code.SOCKET_CONNECT, p.ConnectRequest(
            sock=sock, timeout_ms=timeout_ms, address=to))
        assert again.status == errno.EALREADY
    assert client.reply(first) is None  # the first one still waits for the handshake
    fake.space = 1 << 20
    stack.changed.add(fake)
    service.on_changed(0.1)
    done = client.reply(first)
    assert done is not None and done.status == 0
    after = client.call(Code.SOCKET_CONNECT, p.ConnectRequest(sock=sock, timeout_ms=0,
                                                              address=to))
    assert after.status == errno.EISCONN


class _Link:
    """A stand-in for a socket's descriptor link: the file the client was given."""

    def __init__(self, fd: int) -> None:
        st = os.fstat(fd)
        self.client_file: tuple[int, int] | None = (st.st_dev, st.st_ino)
        self.closed = False

    def pump(self, now: float) -> None:
        pass

    def close(self, now: float) -> None:
        self.closed = True

    def take_error(self) -> int | None:
        return None


def _adopt(client: Client, sock: int, fd: int | None) -> Message:
    rid = next(_ids)
    request = Message(code=Code.SOCKET_ADOPT, request_id=rid,
                      body=p.SocketRef(sock=sock).encode(), fd=fd)
    client.service.handle(client.session, request, 0.0)
    reply = client.reply(rid)
    assert reply is not None
    return reply


def test_adopt_with_the_socket_s_descriptor_shares_it_with_a_second_channel() -> None:
    _stack, service, parent = setup()
    sock = _tcp(parent)
    ours, theirs = socket_module.socketpair()
    try:
        service.sockets[sock].link = _Link(theirs.fileno())
        child = Client(service)
        refused = child.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock))
        assert refused.status == errno.EBADF  # not the child's before it adopts
        copy = os.dup(theirs.fileno())  # what a forked child holds: the same open file
        try:
            assert _adopt(child, sock, copy).status == 0
            assert _adopt(child, sock, copy).status == 0  # twice is harmless
        finally:
            os.close(copy)
        assert child.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock)).status == 0
        service.close_session(parent.session, 1.0)  # the parent exits: the socket stays
        assert sock in service.sockets
        assert service.sockets[sock].session is child.session  # stat shows the child now
        service.close_session(child.session, 2.0)
        assert sock in service.sockets  # still: it lives as long as its descriptor
        assert service.counters["adopt.ok"] == 1
    finally:
        ours.close()
        theirs.close()


def test_adopt_without_the_right_descriptor_is_refused_with_a_typed_errno() -> None:
    _stack, service, parent = setup()
    sock = _tcp(parent)
    bare = _tcp(parent)  # a socket without a descriptor cannot be proven either
    ours, theirs = socket_module.socketpair()
    r, w = os.pipe()
    try:
        service.sockets[sock].link = _Link(theirs.fileno())
        stranger = Client(service)
        assert _adopt(stranger, sock, None).status == errno.EBADF  # nothing came with it
        assert _adopt(stranger, 9999, theirs.fileno()).status == errno.EBADF  # no socket
        assert _adopt(stranger, sock, r).status == errno.EPERM  # a pipe
        assert _adopt(stranger, sock, ours.fileno()).status == errno.EPERM  # netd's own end
        assert _adopt(stranger, bare, theirs.fileno()).status == errno.EPERM
        truncated = Message(code=Code.SOCKET_ADOPT, request_id=next(_ids), body=b"\0", fd=r)
        service.handle(stranger.session, truncated, 0.0)
        assert stranger.replies[-1].status == errno.EINVAL
        assert stranger.call(Code.SOCKET_GETSOCKNAME, p.SocketRef(sock=sock)).status \
            == errno.EBADF
        assert service.counters["adopt.refused"] == 5
    finally:
        for end in (ours, theirs):
            end.close()
        os.close(r)
        os.close(w)
