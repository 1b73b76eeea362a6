"""smoltcp-style fixtures: one TcpLayer on a FakeStack, a scripted peer, a manual clock.

Segments to the layer are built, and its output parsed, with ``vipernet.wire.tcp`` (the
general codec, independent of the engine's own), so every test also cross-checks checksums
and option encoding.  ``Peer`` tracks the scripted peer's sequence numbers; the fixtures
``h.listen()``, ``h.syn_received()``, ``h.established()``... step a connection into each
state and return the peer and the socket.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from tests.tcp.sim import FakeStack
from vipernet.stack.tcp.socket import TcpSocket
from vipernet.wire.tcp import TcpFlags, TcpHeader, TcpOptions, build_tcp, parse_tcp

LOCAL = IPv4Address("10.0.0.1")
REMOTE = IPv4Address("10.0.0.2")
LPORT = 80
RPORT = 49152
PEER_ISS = 10_000
F = TcpFlags


@dataclass
class Out:
    h: TcpHeader
    payload: bytes

    @property
    def flags(self) -> TcpFlags:
        return self.h.flags


@dataclass
class Peer:
    """The scripted remote end: its next sequence number and what it has acknowledged."""

    seq: int = PEER_ISS  # the peer's SND.NXT
    ack: int = 0  # the peer's RCV.NXT (our next byte)
    port: int = RPORT
    our_port: int = LPORT
    window: int = 65535
    ts: tuple[int, int] | None = None
    sent: list[Any] = field(default_factory=list)


class Harness:
    def __init__(self, *, mtu: int = 1500, seed: int = 1, tso: bool = False) -> None:
        self.stack = FakeStack(str(LOCAL), rng=random.Random(seed), mtu=mtu, tso=tso)
        self.layer = self.stack.tcp
        self.now = 0.0

    # -- I/O --------------------------------------------------------------------------------

    def send(self, peer: Peer, flags: TcpFlags, *, seq: int | None = None, ack: int | None = None,
             payload: bytes = b"", window: int | None = None,
             options: TcpOptions | None = None, advance: bool = True) -> None:
        """Deliver one segment from the peer; by default it carries the peer's state and
        advances the peer's sequence number."""
        s = peer.seq if seq is None else seq
        a = peer.ack if ack is None else ack
        if options is None:
            options = TcpOptions(timestamps=peer.ts) if peer.ts else TcpOptions()
        hdr = TcpHeader(src_port=peer.port, dst_port=peer.our_port, seq=s & 0xFFFFFFFF,
                        ack=a & 0xFFFFFFFF, flags=flags,
                        window=peer.window if window is None else window, options=options)
        data = build_tcp(hdr, payload, src=REMOTE, dst=LOCAL)
        self.layer.receive(SimpleNamespace(src=REMOTE, dst=LOCAL), memoryview(data), None,
                           self.now)
        if (d := self.layer.next_deadline()) is not None and d <= self.now:
            self.layer.poll(self.now)  # as the runtime does after each batch of frames
        if advance and seq is None:
            peer.seq += len(payload) + (1 if flags & F.SYN else 0) + (1 if flags & F.FIN else 0)

    def recv(self) -> list[Out]:
        out = []
        for dst, data, off in self.stack.sent:
            assert dst == REMOTE
            # verifies the checksum, unless the device is to finish it (TSO / csum offload)
            hdr, payload = parse_tcp(data, src=LOCAL, dst=REMOTE,
                                     verify_checksum=off is None or not off.needs_csum)
            out.append(Out(hdr, bytes(payload)))
        self.stack.sent.clear()
        return out

    def recv_one(self) -> Out:
        segs = self.recv()
        assert len(segs) == 1, f"expected one segment, got {segs}"
        return segs[0]

    def recv_nothing(self) -> None:
        segs = self.recv()
        assert not segs, f"expected nothing, got {segs}"

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer due on the way, in order."""
        end = self.now + seconds
        while True:
            d = self.layer.next_deadline()
            if d is None or d > end:
                break
            self.now = max(self.now, d)
            self.layer.poll(self.now)
        self.now = end
        self.layer.poll(self.now)

    # -- fixtures ---------------------------------------------------------------------------

    def listen(self, backlog: int = 8) -> TcpSocket:
        sock = self.layer.open_socket()
        sock.bind(("0.0.0.0", LPORT))
        sock.listen(backlog)
        return sock

    def syn_received(self, *, options: TcpOptions | None = None
                     ) -> tuple[Peer, TcpSocket, Out]:
        lst = self.listen()
        peer = Peer()
        self.send(peer, F.SYN, ack=0, options=options or TcpOptions(mss=1460))
        synack = self.recv_one()
        assert synack.flags == F.SYN | F.ACK
        peer.ack = synack.h.seq + 1
        return peer, lst, synack

    def established_passive(self, *, options: TcpOptions | None = None
                            ) -> tuple[Peer, TcpSocket]:
        peer, lst, _ = self.syn_received(options=options)
        self.send(peer, F.ACK)
        sock = lst.accept()
        self.recv_nothing()
        return peer, sock

    def syn_sent(self, *, port: int = RPORT) -> tuple[Peer, TcpSocket, Out]:
        sock = self.layer.open_socket()
        try:
            sock.connect((str(REMOTE), port), self.now)
        except BlockingIOError as exc:
            assert exc.errno == errno.EINPROGRESS
        syn = self.recv_one()
        assert syn.flags == F.SYN
        peer = Peer(port=port, our_port=syn.h.src_port, ack=syn.h.seq + 1)
        return peer, sock, syn

    def established(self, *, options: TcpOptions | None = None) -> tuple[Peer, TcpSocket]:
        """Active open completed: the peer answered our SYN with a SYN-ACK."""
        peer, sock, _syn = self.syn_sent()
        self.send(peer, F.SYN | F.ACK, options=options or TcpOptions(mss=1460))
        ack = self.recv_one()
        assert ack.flags == F.ACK and ack.h.ack == peer.seq
        assert sock.state.name == "ESTABLISHED"
        return peer, sock

    def fin_wait_1(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.established()
        sock.shutdown(1, self.now)
        fin = self.recv_one()
        assert fin.flags & F.FIN
        return peer, sock

    def fin_wait_2(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.fin_wait_1()
        peer.ack += 1
        self.send(peer, F.ACK)
        assert sock.state.name == "FIN_WAIT_2"
        return peer, sock

    def close_wait(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.established()
        self.send(peer, F.FIN | F.ACK)
        assert self.recv_one().h.ack == peer.seq
        assert sock.state.name == "CLOSE_WAIT"
        return peer, sock

    def last_ack(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.close_wait()
        sock.shutdown(1, self.now)
        assert self.recv_one().flags & F.FIN
        assert sock.state.name == "LAST_ACK"
        return peer, sock

    def closing(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.fin_wait_1()
        self.send(peer, F.FIN | F.ACK)  # acks our data but not our FIN
        assert sock.state.name == "CLOSING"
        self.recv()
        return peer, sock

    def time_wait(self) -> tuple[Peer, TcpSocket]:
        peer, sock = self.fin_wait_2()
        self.send(peer, F.FIN | F.ACK)
        assert self.recv_one().h.ack == peer.seq
        assert sock.state.name == "TIME_WAIT"
        return peer, sock


def flags_of(segs: Sequence[Out]) -> list[TcpFlags]:
    return [s.flags for s in segs]
