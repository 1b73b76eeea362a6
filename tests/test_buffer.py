"""The shared byte cursor: reads never run past the end, blocks must be consumed exactly."""

import pytest

from vipernet.buffer import BlockLengthError, Buffer, BufferUnderflow, Writer


def test_integers_round_trip_big_endian() -> None:
    w = Writer()
    w.push_uint8(0x01)
    w.push_uint16(0x0203)
    w.push_uint24(0x040506)
    w.push_uint32(0x0708090A)
    w.push_uint64(0x0B0C0D0E0F101112)
    assert w.data().hex() == "01" "0203" "040506" "0708090a" "0b0c0d0e0f101112"
    b = Buffer(w.data())
    assert [b.pull_uint8(), b.pull_uint16(), b.pull_uint24(), b.pull_uint32(), b.pull_uint64()] == [
        0x01, 0x0203, 0x040506, 0x0708090A, 0x0B0C0D0E0F101112]
    assert b.eof()


def test_short_read_names_the_field() -> None:
    with pytest.raises(BufferUnderflow, match="cipher suite"):
        Buffer(b"\x01").pull_uint16("cipher suite")


def test_block_must_be_consumed_exactly() -> None:
    w = Writer()
    with w.push_block(2):
        w.push_uint8(7)
        w.push_uint8(8)
    assert w.data() == b"\x00\x02\x07\x08"
    b = Buffer(w.data())
    with pytest.raises(BlockLengthError), b.pull_block(2):
        b.pull_uint8()


def test_block_longer_than_input_is_underflow() -> None:
    with pytest.raises(BufferUnderflow), Buffer(b"\x00\x09\x01").pull_block(2):
        pass


def test_vector_round_trip_and_limit() -> None:
    w = Writer()
    w.push_vector(1, b"abc")
    assert Buffer(w.data()).pull_vector(1) == b"abc"
    with pytest.raises(ValueError):
        w.push_vector(1, bytes(256))
