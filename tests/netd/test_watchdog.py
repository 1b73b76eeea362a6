"""The stall watchdog: what counts as a stall, what is only quiet, and lost wake-ups."""

from __future__ import annotations

from collections import Counter

from tests.netd.test_service import setup
from tests.tcp.harness import F, Harness
from vipernet.netd import protocol as p
from vipernet.netd.protocol import Code
from vipernet.netd.watchdog import STALL_AFTER, Watchdog
from vipernet.wire.tcp import TcpOptions


def _sweeps(h: Harness, dog: Watchdog, sock: object, seconds: float) -> None:
    for _ in range(int(seconds)):
        h.advance(1.0)
        h.recv()
        dog.sweep(h.now, [(7, sock)])  # type: ignore[list-item]


def test_unacknowledged_data_without_progress_is_a_stall_counted_once() -> None:
    counts: Counter[str] = Counter()
    dog = Watchdog(lambda name, n: counts.update({name: n}))
    h = Harness()
    peer, sock = h.established(options=TcpOptions(mss=1460))
    sock.send(b"s" * 1000, h.now)  # the peer never acknowledges it
    _sweeps(h, dog, sock, STALL_AFTER - 2)
    assert dog.stalled == {} and counts["watchdog.stalls"] == 0
    _sweeps(h, dog, sock, 4)
    assert dog.stalled[7] >= STALL_AFTER
    assert counts["watchdog.stalls"] == 1
    _sweeps(h, dog, sock, 5)
    assert counts["watchdog.stalls"] == 1, "one stall, counted once however long it lasts"
    peer.ack += 1000
    h.send(peer, F.ACK)
    _sweeps(h, dog, sock, 1)
    assert dog.stalled == {}


def test_an_idle_connection_that_owes_nothing_is_never_a_stall() -> None:
    counts: Counter[str] = Counter()
    dog = Watchdog(lambda name, n: counts.update({name: n}))
    h = Harness()
    _peer, sock = h.established(options=TcpOptions(mss=1460))
    _sweeps(h, dog, sock, 3 * STALL_AFTER)
    assert dog.stalled == {} and counts["watchdog.stalls"] == 0


def test_sockets_that_are_gone_are_forgotten() -> None:
    dog = Watchdog(lambda name, n: None)
    h = Harness()
    _peer, sock = h.established(options=TcpOptions(mss=1460))
    sock.send(b"s" * 1000, h.now)
    _sweeps(h, dog, sock, STALL_AFTER + 2)
    assert 7 in dog.stalled
    dog.sweep(h.now + 1, [])
    assert dog.stalled == {}


def test_a_parked_recv_whose_wakeup_was_lost_is_answered_by_the_sweep() -> None:
    stack, service, client = setup()
    sock = client.udp()
    rid = client.send(Code.SOCKET_RECVFROM, p.RecvRequest(sock=sock, timeout_ms=p.FOREVER,
                                                          max_bytes=100))
    assert client.reply(rid) is None
    # Data arrives but the stack "forgets" to report the socket as changed: the bug
    # class the watchdog exists to contain.
    stack.sockets[0].inbox.append((b"late", ("10.0.2.2", 9)))
    service.turn(0.5)
    service.turn(1.5)
    reply = client.reply(rid)
    assert reply is not None and reply.status == 0
    assert p.RecvFromReply.decode(reply.body).data == b"late"
    assert service.counters["watchdog.lost_wakeups"] == 1


def test_the_service_wakes_for_the_sweep_only_while_it_has_sockets() -> None:
    _stack, service, client = setup()
    assert service.turn(0.0) is None, "no sockets: nothing to watch, no wake-ups"
    client.udp()
    assert service.turn(0.0) == 1.0
    rows = service.stat_report(0.0)["sockets"]
    assert isinstance(rows, list) and rows[0]["stalled"] is None
    assert "tcp" not in rows[0]  # a UDP socket has no TCP details
