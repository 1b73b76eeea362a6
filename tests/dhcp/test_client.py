"""The DHCP client state machine against a scripted server, on a manual clock."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dhcp.server import (
    CLIENT_MAC,
    OFFERED,
    SERVER_IP,
    SERVER_MAC,
    parse_frame_as_server,
    reply,
    request_of,
)
from vipernet.dhcp.client import (
    DhcpClient,
    DhcpConfig,
    LeaseLost,
    LeaseObtained,
    LeaseRenewed,
    State,
)
from vipernet.dhcp.codec import DhcpMessage, MessageType, OptionCode
from vipernet.link.frame import Frame, Offload


def new_client(seed: int = 1) -> DhcpClient:
    return DhcpClient(mac=CLIENT_MAC, rng=random.Random(seed))


def sent(client: DhcpClient) -> list[tuple[bytes, DhcpMessage]]:
    return [(bytes(f.data[0:6]), request_of(f)) for f in client.transmit()]


def only(client: DhcpClient) -> tuple[bytes, DhcpMessage]:
    frames = sent(client)
    assert len(frames) == 1, frames
    return frames[0]


def bound(lease: int = 120, now: float = 100.0, **kw: int) -> DhcpClient:
    client = new_client()
    client.start(now)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), now + 0.01)
    _, request = only(client)
    client.receive(reply(request, MessageType.ACK, lease=lease, **kw), now + 0.02)
    assert client.state is State.BOUND
    client.take_events()
    return client


def test_start_broadcasts_a_discover_from_zero_to_broadcast() -> None:
    client = new_client()
    client.start(10.0)
    frames = client.transmit()
    assert len(frames) == 1
    data = frames[0].data
    assert data[0:6] == b"\xff" * 6 and data[6:12] == CLIENT_MAC
    assert data[14 + 12:14 + 16] == bytes(4) and data[14 + 16:14 + 20] == b"\xff" * 4
    _, _, message = parse_frame_as_server(frames[0])
    assert message.message_type == MessageType.DISCOVER
    assert message.chaddr == CLIENT_MAC
    assert message.option(OptionCode.CLIENT_ID) == b"\x01" + CLIENT_MAC
    assert OptionCode.ROUTER in (message.option(OptionCode.PARAMETER_REQUEST_LIST) or b"")
    assert client.state is State.SELECTING


def test_the_xid_comes_from_the_injected_random_source() -> None:
    a, b, c = new_client(7), new_client(7), new_client(8)
    for client in (a, b, c):
        client.start(0.0)
    xa, xb, xc = (only(x)[1].xid for x in (a, b, c))
    assert xa == xb != xc


def test_discover_is_resent_with_doubling_jittered_intervals() -> None:
    client = new_client()
    client.start(0.0)
    client.transmit()
    gaps = []
    now = 0.0
    for _ in range(6):
        due = client.next_deadline()
        assert due is not None
        gaps.append(due - now)
        now = due
        client.poll(now)
        assert only(client)[1].message_type == MessageType.DISCOVER
    for gap, base in zip(gaps, (4, 8, 16, 32, 64, 64), strict=True):
        assert base - 1 <= gap <= base + 1


def test_an_offer_is_answered_by_a_broadcast_request_naming_address_and_server() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), 0.5)
    dst, request = only(client)
    assert dst == b"\xff" * 6
    assert request.message_type == MessageType.REQUEST
    assert request.xid == discover.xid
    assert request.option(OptionCode.REQUESTED_IP) == OFFERED.packed
    assert request.option(OptionCode.SERVER_ID) == SERVER_IP.packed
    assert request.ciaddr == IPv4Address(0)
    assert client.state is State.REQUESTING


def test_an_ack_binds_the_lease_with_mask_router_dns_and_default_timers() -> None:
    client = new_client()
    client.start(100.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), 100.1)
    _, request = only(client)
    client.receive(reply(request, MessageType.ACK, lease=120), 100.4)
    [event] = client.take_events()
    assert isinstance(event, LeaseObtained)
    lease = event.lease
    assert lease.address == IPv4Interface("10.0.2.15/24")
    assert lease.router == SERVER_IP and lease.dns == (IPv4Address("10.0.2.3"),)
    assert lease.server_id == SERVER_IP and lease.server_mac == SERVER_MAC
    assert lease.obtained_at == 100.1  # from when the REQUEST went out, not the ACK
    assert (lease.t1, lease.t2, lease.lease_time) == (60.0, 105.0, 120.0)
    assert client.state is State.BOUND
    assert client.next_deadline() == pytest.approx(160.1)
    assert client.transmit() == []


def test_explicit_t1_and_t2_are_used_and_inconsistent_ones_replaced() -> None:
    assert bound(lease=1000, t1=100, t2=200).lease.t1 == 100  # type: ignore[union-attr]
    lease = bound(lease=1000, t1=900, t2=200).lease
    assert lease is not None and (lease.t1, lease.t2) == (500.0, 875.0)


def test_at_t1_the_client_renews_by_unicast_to_the_server_and_a_new_ack_extends() -> None:
    client = bound(lease=120)
    assert client.lease is not None
    t1 = client.lease.renew_at
    client.poll(t1 - 0.001)
    assert client.transmit() == []
    client.poll(t1)
    frame = client.transmit()[0]
    assert frame.data[0:6] == SERVER_MAC
    assert frame.data[14 + 12:14 + 16] == OFFERED.packed
    assert frame.data[14 + 16:14 + 20] == SERVER_IP.packed
    _, _, request = parse_frame_as_server(frame)
    assert request.message_type == MessageType.REQUEST
    assert request.ciaddr == OFFERED
    assert request.option(OptionCode.REQUESTED_IP) is None
    assert request.option(OptionCode.SERVER_ID) is None
    assert client.state is State.RENEWING
    client.receive(reply(request, MessageType.ACK, lease=120), t1 + 0.2)
    [event] = client.take_events()
    assert isinstance(event, LeaseRenewed)
    assert event.lease.obtained_at == t1 and event.previous.obtained_at < t1
    assert client.state is State.BOUND
    assert client.next_deadline() == pytest.approx(t1 + 60)


def test_unanswered_renewals_rebind_by_broadcast_at_t2_then_expire_and_start_over() -> None:
    client = bound(lease=1000)
    lease = client.lease
    assert lease is not None
    client.poll(lease.renew_at)
    only(client)
    states = []
    while client.state is not State.SELECTING:
        due = client.next_deadline()
        assert due is not None and due <= lease.expires_at
        client.poll(due)
        for dst, message in sent(client):
            states.append((client.state, dst, message.message_type))
    renew_resends = [s for s in states if s[0] is State.RENEWING]
    rebinds = [s for s in states if s[0] is State.REBINDING]
    assert renew_resends and all(d == SERVER_MAC for _, d, _ in renew_resends)
    assert rebinds and all(d == b"\xff" * 6 for _, d, _ in rebinds)
    assert states[-1][2] == MessageType.DISCOVER
    events = client.take_events()
    assert isinstance(events[-1], LeaseLost) and events[-1].reason == "expired"
    assert client.lease is None


def test_an_ack_while_rebinding_restores_the_lease() -> None:
    client = bound(lease=1000)
    lease = client.lease
    assert lease is not None
    client.poll(lease.renew_at)
    client.transmit()
    client.poll(lease.rebind_at)
    _, request = only(client)
    assert client.state is State.REBINDING
    client.receive(reply(request, MessageType.ACK, lease=1000), lease.rebind_at + 1)
    assert client.state is State.BOUND
    assert isinstance(client.take_events()[0], LeaseRenewed)


def test_a_nak_to_the_request_starts_over_with_a_new_discover() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), 0.1)
    _, request = only(client)
    client.receive(reply(request, MessageType.NAK), 0.2)
    _, again = only(client)
    assert again.message_type == MessageType.DISCOVER and again.xid != discover.xid
    [event] = client.take_events()
    assert isinstance(event, LeaseLost) and event.reason == "nak"


def test_a_nak_while_renewing_drops_the_lease() -> None:
    client = bound()
    assert client.lease is not None
    client.poll(client.lease.renew_at)
    _, request = only(client)
    client.receive(reply(request, MessageType.NAK), client.lease.renew_at + 1)
    assert client.lease is None and client.state is State.SELECTING


def test_replies_for_another_transaction_or_client_are_counted_drops() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER, xid=discover.xid ^ 1), 0.1)
    other = DhcpMessage(op=discover.op, xid=discover.xid, chaddr=bytes(6))
    client.receive(reply(other, MessageType.OFFER), 0.1)
    assert client.counters["rx.not_ours"] == 2
    client.receive(reply(discover, MessageType.ACK), 0.1)  # an ACK before any REQUEST
    assert client.counters["rx.unexpected.ack"] == 1
    assert client.transmit() == [] and client.state is State.SELECTING


def test_an_offer_without_a_server_id_is_ignored() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    frame = reply(discover, MessageType.OFFER, server_id=IPv4Address(0))
    data = bytearray(frame.data)
    at = data.find(bytes((OptionCode.SERVER_ID, 4, 0, 0, 0, 0)))
    data[at:at + 6] = bytes((250, 4, 0, 0, 0, 0))  # turn option 54 into an unknown one
    client.receive(Frame(bytes(data), Offload(data_valid=True)), 0.1)
    assert client.counters["rx.offer.unusable"] == 1 and client.state is State.SELECTING


def test_malformed_and_corrupted_frames_are_counted_not_raised() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    good = bytearray(reply(discover, MessageType.OFFER).data)
    good[-1] ^= 0xFF  # breaks the UDP checksum
    client.receive(Frame(bytes(good)), 0.1)
    client.receive(Frame(b"\0" * 20), 0.1)
    assert client.counters["rx.malformed"] == 2 and client.state is State.SELECTING


def test_requesting_gives_up_after_the_configured_attempts() -> None:
    client = DhcpClient(mac=CLIENT_MAC, rng=random.Random(3),
                        config=DhcpConfig(request_attempts=2))
    client.start(0.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), 0.1)
    only(client)
    for expected in (MessageType.REQUEST, MessageType.DISCOVER):
        due = client.next_deadline()
        assert due is not None
        client.poll(due)
        assert only(client)[1].message_type == expected


def test_release_sends_a_unicast_release_and_stops() -> None:
    client = bound()
    client.release(200.0)
    dst, message = only(client)
    assert dst == SERVER_MAC and message.message_type == MessageType.RELEASE
    assert message.ciaddr == OFFERED
    assert client.state is State.STOPPED and client.next_deadline() is None


def test_an_ack_with_a_non_contiguous_mask_is_refused() -> None:
    client = new_client()
    client.start(0.0)
    _, discover = only(client)
    client.receive(reply(discover, MessageType.OFFER), 0.1)
    _, request = only(client)
    client.receive(reply(request, MessageType.ACK, mask=bytes((255, 0, 255, 0))), 0.2)
    assert client.counters["rx.ack.unusable"] == 1  # a non-contiguous mask is refused
    assert client.state is State.REQUESTING


def test_config_rejects_nonsense() -> None:
    from vipernet.errors import UsageError

    with pytest.raises(UsageError):
        DhcpConfig(first_retransmit=0)
    with pytest.raises(UsageError):
        DhcpClient(mac=b"\1", rng=random.Random())


def test_a_missing_mask_falls_back_to_the_classful_prefix_and_off_link_routers_are_skipped(
) -> None:
    from vipernet.dhcp.client import lease_from_ack
    from vipernet.dhcp.codec import Op, u32

    ack = DhcpMessage(op=Op.BOOTREPLY, xid=1, chaddr=CLIENT_MAC, yiaddr=IPv4Address("10.9.8.7"),
                      options=((OptionCode.LEASE_TIME, u32(600)),
                               (OptionCode.SERVER_ID, SERVER_IP.packed),
                               (OptionCode.ROUTER, IPv4Address("192.168.1.1").packed)))
    lease = lease_from_ack(ack, SERVER_MAC, 5.0)
    assert lease.address == IPv4Interface("10.9.8.7/8")
    assert lease.router is None and lease.expires_at == 605.0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([MessageType.OFFER, MessageType.ACK, MessageType.NAK]),
       st.integers(min_value=14, max_value=340), st.binary(min_size=1, max_size=8),
       st.booleans())
def test_corrupted_replies_in_any_state_never_raise(kind: MessageType, at: int, junk: bytes,
                                                    trusted: bool) -> None:
    client = bound() if kind != MessageType.OFFER else new_client()
    if client.state is State.INIT:
        client.start(0.0)
    elif client.lease is not None:
        client.poll(client.lease.renew_at)  # RENEWING: ACK and NAK are both expected
    frames = client.transmit()
    request = parse_frame_as_server(frames[-1])[2]
    data = bytearray(reply(request, kind).data)
    data[at:at + len(junk)] = junk
    client.receive(Frame(bytes(data), Offload(data_valid=True) if trusted else None), 500.0)
    assert client.state in (State.SELECTING, State.REQUESTING, State.RENEWING, State.BOUND)
    client.poll(1e6)  # timers still run after whatever that frame did
