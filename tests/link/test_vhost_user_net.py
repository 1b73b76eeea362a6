"""virtio-net frames in and out of split rings: TX header decoding, RX (mergeable) filling."""

from __future__ import annotations

import os
import struct

from tests.link.packets import partial_tcp, tcp_frame
from tests.link.test_vhost_user_virtqueue import Buffer, FakeDriver, fake_memory
from vipernet.link.frame import GsoType, Offload
from vipernet.link.vhost_user.net import (
    OffloadDecoder,
    RxVerdict,
    TxVerdict,
    put_frame,
    take_frame,
)
from vipernet.link.virtio import build_vnet_hdr, parse_vnet_hdr

GSO = Offload(needs_csum=True, csum_start=34, csum_offset=16, gso_type=GsoType.TCPV4,
              gso_size=1448, hdr_len=66)


def frame_of(size: int) -> bytes:
    return b"\x52\x54\x00\x12\x34\x56" * 2 + b"\x08\x00" + os.urandom(size - 14)


# -- TX: guest -> us --------------------------------------------------------------------------


def test_tx_frame_with_the_header_in_its_own_descriptor() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    frame = frame_of(3000)
    driver.post([Buffer(build_vnet_hdr(GSO, 12)), Buffer(frame[:1000]), Buffer(frame[1000:])])
    chain = driver.queue(memory).pop()
    assert chain is not None
    result = take_frame(chain, 12, 65549, OffloadDecoder())
    assert not isinstance(result, TxVerdict)
    data, offload = result
    assert bytes(data) == frame and offload == GSO


def test_tx_frame_with_the_header_in_front_of_the_data_and_no_offload() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    frame = frame_of(60)
    driver.post([Buffer(build_vnet_hdr(None, 10) + frame)], indirect=True)
    chain = driver.queue(memory).pop()
    assert chain is not None
    result = take_frame(chain, 10, 1514, OffloadDecoder())
    assert not isinstance(result, TxVerdict)
    assert bytes(result[0]) == frame and result[1] is None


def test_tx_runts_oversized_frames_and_unknown_gso_types_are_dropped() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem, size=4)
    driver.post([Buffer(bytes(12) + b"short")])
    driver.post([Buffer(bytes(12) + frame_of(1515))])
    driver.post([Buffer(b"\x00\x07" + bytes(10) + frame_of(60))])
    queue = driver.queue(memory)
    verdicts = []
    for _ in range(3):
        chain = queue.pop()
        assert chain is not None
        verdicts.append(take_frame(chain, 12, 1514, OffloadDecoder()))
    assert verdicts == [TxVerdict.RUNT, TxVerdict.OVERSIZED, TxVerdict.BAD_HEADER]


def test_offload_decoder_caches_but_decodes_like_the_tap_codec() -> None:
    decoder = OffloadDecoder()
    header = build_vnet_hdr(GSO, 10)
    first = decoder.decode(header)
    assert first == parse_vnet_hdr(header) == GSO
    assert decoder.decode(bytes(header)) is first
    assert decoder.decode(bytes(10)) is None


# -- RX: us -> guest --------------------------------------------------------------------------


def test_mergeable_rx_fills_several_buffers_and_says_how_many() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem, size=32)
    heads = [driver.post([Buffer(size=1526)]) for _ in range(32)]
    queue = driver.queue(memory)
    frame = tcp_frame(b"x" * 4000)
    verdict, bad = put_frame(queue, frame, GSO, hdr_len=12, mergeable=True)
    assert (verdict, bad) == (RxVerdict.DONE, 0)
    queue.publish()
    used = driver.take_used()
    total = 12 + len(frame)
    assert [h for h, _ in used] == heads[:3]
    assert [n for _, n in used] == [1526, 1526, total - 2 * 1526]
    written = b"".join(driver.written(h, n) for h, n in used)
    assert parse_vnet_hdr(written[:10]) == GSO
    assert struct.unpack_from("<H", written, 10)[0] == 3  # num_buffers
    assert written[12:] == frame


def test_single_buffer_frame_says_one_buffer() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    driver.post([Buffer(size=2048)])
    queue = driver.queue(memory)
    frame = frame_of(100)
    assert put_frame(queue, frame, None, hdr_len=12, mergeable=True)[0] is RxVerdict.DONE
    queue.publish()
    ((head, length),) = driver.take_used()
    assert driver.written(head, length) == build_vnet_hdr(None, 12) + frame
    assert driver.written(head, 12)[10:12] == b"\x01\x00"


def test_without_buffers_enough_the_frame_waits_and_the_chains_are_given_back() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    driver.post([Buffer(size=1526)])
    queue = driver.queue(memory)
    big = frame_of(3000)
    assert put_frame(queue, big, None, hdr_len=12, mergeable=True) == (RxVerdict.NO_ROOM, 0)
    queue.publish()
    assert driver.take_used() == [] and queue.pending() == 1
    driver.post([Buffer(size=1526)])
    driver.post([Buffer(size=1526)])
    assert put_frame(queue, big, None, hdr_len=12, mergeable=True)[0] is RxVerdict.DONE
    queue.publish()
    assert len(driver.take_used()) == 2 and queue.pending() == 1


def test_non_mergeable_needs_one_big_chain() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    driver.post([Buffer(size=1000)])
    queue = driver.queue(memory)
    frame = frame_of(1500)
    assert put_frame(queue, frame, None, hdr_len=10, mergeable=False)[0] is RxVerdict.TOO_BIG
    assert queue.pending() == 1  # kept for a frame that fits
    driver2 = FakeDriver(mem, ring_offset=0x8000, data_offset=0x40000)
    driver2.post([Buffer(size=10), Buffer(size=4096), Buffer(size=4096)])  # "big packets"
    queue2 = driver2.queue(memory)
    big = tcp_frame(b"y" * 6000)
    assert put_frame(queue2, big, None, hdr_len=10, mergeable=False)[0] is RxVerdict.DONE
    queue2.publish()
    ((head, length),) = driver2.take_used()
    assert length == 10 + len(big)
    assert driver2.written(head, length)[10:] == big


def test_a_malformed_rx_chain_is_returned_empty_and_the_frame_still_lands() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    good1 = driver.post([Buffer(size=1000)])
    bad = driver.post([Buffer(b"readable only")])  # the device cannot write into it
    good2 = driver.post([Buffer(size=1000)])
    good3 = driver.post([Buffer(size=1000)])
    queue = driver.queue(memory)
    frame = frame_of(1500)
    verdict, bad_count = put_frame(queue, frame, None, hdr_len=12, mergeable=True)
    assert (verdict, bad_count) == (RxVerdict.DONE, 1)
    queue.publish()
    used = driver.take_used()
    # the chain taken before the bad one goes back empty too: ring order is kept
    assert used[:2] == [(good1, 0), (bad, 0)]
    assert [h for h, _ in used[2:]] == [good2, good3]
    assert b"".join(driver.written(h, n) for h, n in used[2:])[12:] == frame


def test_partial_checksum_metadata_travels_in_the_header() -> None:
    mem, memory = fake_memory()
    driver = FakeDriver(mem)
    driver.post([Buffer(size=2048)])
    queue = driver.queue(memory)
    frame = partial_tcp(b"payload")
    assert frame.offload is not None
    put_frame(queue, frame.data, frame.offload, hdr_len=12, mergeable=True)
    queue.publish()
    ((head, _),) = driver.take_used()
    assert parse_vnet_hdr(driver.written(head, 10)) == frame.offload
