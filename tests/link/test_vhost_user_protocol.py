"""The vhost-user message codec: framing, fds, typed payloads, hostile input."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipernet.link.vhost_user.protocol import (
    FLAG_NEED_REPLY,
    FLAG_REPLY,
    HEADER,
    MAX_PAYLOAD,
    VERSION,
    VRING_NOFD_FLAG,
    Bare,
    MemoryTable,
    MessageDecoder,
    Other,
    RegionSpec,
    Request,
    U64Message,
    VhostUserProtocolError,
    VringAddress,
    VringFd,
    VringState,
    address_payload,
    encode_message,
    encode_state_reply,
    encode_u64_reply,
    memory_table_payload,
    message_fds,
    need_reply,
    state_payload,
    u64_payload,
)

MakeFds = Callable[[int], list[int]]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def eventfds() -> Iterator[MakeFds]:
    made: list[int] = []

    def make(n: int) -> list[int]:
        fds = [os.eventfd(0) for _ in range(n)]
        made.extend(fds)
        return fds

    yield make
    for fd in made:
        if fd_is_open(fd):
            os.close(fd)


def test_typed_messages_from_known_payloads() -> None:
    decoder = MessageDecoder()
    stream = b"".join([
        encode_message(Request.GET_FEATURES),
        encode_message(Request.SET_FEATURES, u64_payload(1 << 32 | 1 << 15)),
        encode_message(Request.SET_VRING_NUM, state_payload(1, 256)),
        encode_message(Request.SET_VRING_ADDR, address_payload(0, 0x1000, 0x3000, 0x2000)),
        encode_message(Request.GET_VRING_BASE, state_payload(1, 0),
                       flags=VERSION | FLAG_NEED_REPLY),
        encode_message(99, b"whatever"),
    ])
    messages = decoder.feed(stream)
    assert messages == [
        Bare(Request.GET_FEATURES, VERSION),
        U64Message(Request.SET_FEATURES, VERSION, 1 << 32 | 1 << 15),
        VringState(Request.SET_VRING_NUM, VERSION, 1, 256),
        VringAddress(VERSION, 0, 0, 0x1000, 0x3000, 0x2000, 0),
        VringState(Request.GET_VRING_BASE, VERSION | FLAG_NEED_REPLY, 1, 0),
        Other(99, VERSION, b"whatever", ()),
    ]
    assert need_reply(messages[4]) and not need_reply(messages[0])
    assert decoder.pending == 0


def test_messages_cut_at_any_byte_come_out_whole() -> None:
    stream = encode_message(Request.SET_VRING_BASE, state_payload(0, 7)) + encode_message(
        Request.SET_OWNER)
    for cut in range(1, len(stream)):
        decoder = MessageDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == [VringState(Request.SET_VRING_BASE, VERSION, 0, 7),
                       Bare(Request.SET_OWNER, VERSION)]


def test_fds_belong_to_the_message_holding_the_last_byte(eventfds: MakeFds) -> None:
    kick, call = eventfds(2)
    decoder = MessageDecoder()
    first = encode_message(Request.SET_OWNER)
    kick_msg = encode_message(Request.SET_VRING_KICK, u64_payload(1))
    call_msg = encode_message(Request.SET_VRING_CALL, u64_payload(0))
    # one read: a whole message without fds, then the one the fds came with
    got = decoder.feed(first + kick_msg, [kick])
    assert got == [Bare(Request.SET_OWNER, VERSION),
                   VringFd(Request.SET_VRING_KICK, VERSION, 1, kick)]
    # the fds arrive with the first part of their message
    assert decoder.feed(call_msg[:5], [call]) == []
    assert decoder.feed(call_msg[5:]) == [VringFd(Request.SET_VRING_CALL, VERSION, 0, call)]


def test_no_fd_flag_means_polling(eventfds: MakeFds) -> None:
    decoder = MessageDecoder()
    got = decoder.feed(encode_message(Request.SET_VRING_KICK, u64_payload(1 | VRING_NOFD_FLAG)))
    assert got == [VringFd(Request.SET_VRING_KICK, VERSION, 1, None)]
    (fd,) = eventfds(1)
    with pytest.raises(VhostUserProtocolError):  # the flag says none, but one came
        MessageDecoder().feed(
            encode_message(Request.SET_VRING_KICK, u64_payload(1 | VRING_NOFD_FLAG)), [fd])
    assert not fd_is_open(fd)


def test_memory_table_carries_regions_and_their_fds(eventfds: MakeFds) -> None:
    fds = eventfds(2)
    regions = [RegionSpec(0, 0xA0000, 0x7F00_0000_0000, 0),
               RegionSpec(0x100000, 0x1FF00000, 0x7F00_0010_0000, 0x100000)]
    decoder = MessageDecoder()
    (table,) = decoder.feed(encode_message(Request.SET_MEM_TABLE, memory_table_payload(regions)),
                            fds)
    assert isinstance(table, MemoryTable)
    assert table.regions == tuple(regions) and table.fds == tuple(fds)
    assert message_fds(table) == tuple(fds)


@pytest.mark.parametrize(("count", "nfds"), [(2, 1), (1, 2), (0, 0), (9, 8)])
def test_memory_table_with_the_wrong_fds_or_count_is_refused_and_fds_closed(
        eventfds: MakeFds, count: int, nfds: int) -> None:
    fds = eventfds(nfds)
    regions = [RegionSpec(i << 20, 1 << 20, i << 20, 0) for i in range(count)]
    payload = memory_table_payload(regions)
    with pytest.raises(VhostUserProtocolError):
        MessageDecoder().feed(encode_message(Request.SET_MEM_TABLE, payload), fds)
    assert not any(fd_is_open(fd) for fd in fds)


@pytest.mark.parametrize(("message", "why"), [
    (HEADER.pack(Request.GET_FEATURES, 0, 0), "version 0"),
    (HEADER.pack(Request.GET_FEATURES, 2, 0), "version 2"),
    (HEADER.pack(Request.SET_FEATURES, VERSION, MAX_PAYLOAD + 1), "oversized"),
    (encode_message(Request.SET_FEATURES, b"\x01\x02"), "short u64"),
    (encode_message(Request.SET_VRING_ADDR, state_payload(0, 0)), "short address"),
    (encode_message(Request.SET_MEM_TABLE, b"\x01\x00\x00\x00\x00\x00\x00\x00"),
     "region missing"),
])
def test_broken_framing_is_a_typed_error_and_the_decoder_stays_broken(message: bytes,
                                                                       why: str) -> None:
    decoder = MessageDecoder()
    with pytest.raises(VhostUserProtocolError):
        decoder.feed(message)
    assert decoder.error is not None, why
    with pytest.raises(VhostUserProtocolError):
        decoder.feed(encode_message(Request.GET_FEATURES))


def test_fds_on_a_message_that_takes_none_are_an_error_and_closed(eventfds: MakeFds) -> None:
    (fd,) = eventfds(1)
    with pytest.raises(VhostUserProtocolError):
        MessageDecoder().feed(encode_message(Request.SET_OWNER), [fd])
    assert not fd_is_open(fd)


def test_close_releases_the_fds_of_an_unfinished_message(eventfds: MakeFds) -> None:
    (fd,) = eventfds(1)
    decoder = MessageDecoder()
    assert decoder.feed(encode_message(Request.SET_VRING_CALL, u64_payload(0))[:13], [fd]) == []
    decoder.close()
    assert not fd_is_open(fd)


def test_replies_carry_the_reply_flag() -> None:
    assert encode_u64_reply(Request.GET_FEATURES, 5) == HEADER.pack(
        1, VERSION | FLAG_REPLY, 8) + (5).to_bytes(8, "little")
    assert encode_state_reply(Request.GET_VRING_BASE, 1, 300) == HEADER.pack(
        11, VERSION | FLAG_REPLY, 8) + state_payload(1, 300)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6), st.lists(st.integers(0, 5), max_size=6))
def test_hostile_bytes_give_messages_or_a_typed_error_and_leak_no_fd(
        chunks: list[bytes], fd_counts: list[int]) -> None:
    before = open_fds()
    decoder = MessageDecoder()
    held: list[int] = []
    try:
        for i, chunk in enumerate(chunks):
            fds = [os.eventfd(0) for _ in range(fd_counts[i] if i < len(fd_counts) else 0)]
            if not chunk:
                for fd in fds:
                    os.close(fd)
                fds = []
            for message in decoder.feed(chunk, fds):
                held.extend(message_fds(message))
    except VhostUserProtocolError:
        pass
    finally:
        decoder.close()
        for fd in held:
            os.close(fd)
    assert open_fds() == before


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 50), st.integers(0, 0xFFFF_FFFF), st.binary(max_size=300))
def test_any_request_with_any_payload_is_typed_or_refused(request: int, flags: int,
                                                          payload: bytes) -> None:
    flags = (flags & ~3) | VERSION
    try:
        messages = MessageDecoder().feed(encode_message(request, payload, flags=flags))
    except VhostUserProtocolError:
        return
    assert len(messages) == 1 and messages[0].request == request
