"""Seeded simulations: two real Stacks over MemoryLink.pair() wrapped in FaultInjectors.

Every seed picks its own impairments (loss up to 20%, duplication up to 2%, corruption up to
1%, jitter up to 5 ms, which reorders) and MTU (mostly 65535 or 9000, so most seeds move few
large segments; every fifth seed uses 1500).  Both ends send 1 MB, half-close, read to EOF
and close.  Every byte must arrive once and in order (sha256), both ends must reach
TIME_WAIT (then CLOSED) inside a virtual-time bound, and nothing may raise.
"""

from __future__ import annotations

import hashlib
import random

from tests.tcp.sim import Impairments, SimNet, StackNet, bidirectional_transfer

SIZE = 1 << 20


def _scenario(seed: int) -> tuple[int, Impairments]:
    rng = random.Random(f"scenario-{seed}")
    mtu = (1500, 9000, 65535, 65535, 9000)[seed % 5]
    imp = Impairments(loss=rng.uniform(0, 0.2), dup=rng.uniform(0, 0.02),
                      corrupt=rng.uniform(0, 0.01), delay=rng.uniform(0.0001, 0.01),
                      jitter=rng.uniform(0, 0.005))
    return mtu, imp


def test_bidirectional_transfer_survives_impairments(sim_seed: int) -> None:
    mtu, imp = _scenario(sim_seed)
    net = StackNet(sim_seed, mtu=mtu, imp=imp)
    rng = random.Random(sim_seed)
    a_data = rng.randbytes(SIZE)
    b_data = rng.randbytes(SIZE)
    result = bidirectional_transfer(net, a_data, b_data, limit=2400.0)
    assert result.finished, (f"seed {sim_seed} mtu {mtu} {imp}: no finish by t={net.now:.1f}; "
                             f"A {result.a_states} B {result.b_states}")
    assert hashlib.sha256(result.b_received).digest() == hashlib.sha256(a_data).digest()
    assert hashlib.sha256(result.a_received).digest() == hashlib.sha256(b_data).digest()
    # TIME_WAIT ends after 2*MSL and releases everything
    assert net.run(lambda: not net.a.tcp.conns and not net.b.tcp.conns, limit=net.now + 200)
    assert not net.a.tcp.port_refs and not net.b.tcp.port_refs


def test_engine_only_simulation_with_heavy_loss_and_corruption() -> None:
    """The bare engine harness (no IP layer) at the top of the range: 20% loss, 5% corruption
    and duplication, jitter; few seeds, MTU 1500, both directions."""
    for seed in range(5):
        net = SimNet(seed, mtu=1500, imp=Impairments(loss=0.2, dup=0.05, corrupt=0.05,
                                                     jitter=0.002))
        rng = random.Random(seed)
        a_data, b_data = rng.randbytes(SIZE), rng.randbytes(SIZE)
        result = bidirectional_transfer(net, a_data, b_data, limit=2400.0)
        assert result.finished
        assert result.b_received == a_data and result.a_received == b_data


def test_many_concurrent_connections_share_a_lossy_link() -> None:
    """Thirty connections at once over 5% loss with reordering: demultiplexing, the timer
    heap and port allocation under pressure; every stream arrives intact."""
    import contextlib

    net = StackNet(4242, mtu=1500, imp=Impairments(loss=0.05, dup=0.01, corrupt=0.005,
                                                    delay=0.002, jitter=0.003))
    lst = net.b.tcp.open_socket()
    lst.bind(("0.0.0.0", 7000))
    lst.listen(64)
    rng = random.Random(7)
    n = 30
    payloads = [rng.randbytes(rng.randint(1, 60_000)) for _ in range(n)]
    clients = []
    for _ in range(n):
        c = net.a.tcp.open_socket()
        with contextlib.suppress(BlockingIOError):
            c.connect(("10.0.2.16", 7000), net.now)
        clients.append(c)
    sent = [0] * n
    servers: list[object] = []
    received: dict[int, bytearray] = {}
    done: set[int] = set()

    def each() -> None:
        while lst.readable:
            servers.append(lst.accept())
        for i, c in enumerate(clients):
            if c.state.name == "ESTABLISHED" and sent[i] < len(payloads[i]):
                with contextlib.suppress(BlockingIOError):
                    sent[i] += c.send(payloads[i][sent[i]:], net.now)
                if sent[i] == len(payloads[i]):
                    c.shutdown(1, net.now)
        for s in servers:
            key = s.getpeername()[1]  # type: ignore[attr-defined]
            if key in done:
                continue
            buf = received.setdefault(key, bytearray())
            while True:
                try:
                    chunk = s.recv(1 << 20)  # type: ignore[attr-defined]
                except BlockingIOError:
                    break
                if not chunk:
                    done.add(key)
                    s.close(net.now)  # type: ignore[attr-defined]
                    break
                buf += chunk

    assert net.run(lambda: len(done) == n, limit=900.0, each=each)
    by_port = {c.getsockname()[1]: payloads[i] for i, c in enumerate(clients)}
    assert len(by_port) == n
    for port, data in by_port.items():
        assert bytes(received[port]) == data
    for c in clients:
        c.close(net.now)
    assert net.run(lambda: not net.a.tcp.conns and not net.b.tcp.conns, limit=net.now + 300)
