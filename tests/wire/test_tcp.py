"""TCP: header fields, every option kind, canonical option layout, checksums."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from vipernet.wire import TcpFlags, TcpHeader, TcpOptions, WireError, WireUsageError, build_tcp
from vipernet.wire import parse_tcp as _parse_tcp
from vipernet.wire.checksum import ones_complement_sum, pseudo_header_sum
from vipernet.wire.tcp import build_tcp_options, parse_tcp_options

SRC, DST = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")


def header(**fields: object) -> TcpHeader:
    base: dict[str, object] = {
        "src_port": 49152,
        "dst_port": 80,
        "seq": 0x01020304,
        "ack": 0,
        "flags": TcpFlags.SYN,
        "window": 64240,
    }
    base.update(fields)
    return TcpHeader(**base)  # type: ignore[arg-type]


def parse_tcp(data: bytes) -> tuple[TcpHeader, memoryview]:
    return _parse_tcp(data, src=SRC, dst=DST)


# (options, canonical encoding) - the layouts Linux writes.
OPTION_VECTORS = [
    (TcpOptions(), ""),
    (TcpOptions(mss=1460), "020405b4"),
    (
        TcpOptions(mss=1460, sack_permitted=True, timestamps=(1, 0), window_scale=7),
        "020405b40402080a000000010000000001030307",
    ),
    (TcpOptions(timestamps=(0xFFFFFFFF, 2)), "0101080affffffff00000002"),
    (TcpOptions(sack_permitted=True), "01010402"),
    (TcpOptions(window_scale=14), "0103030e"),
    (TcpOptions(sack_blocks=((100, 200),)), "0101050a00000064000000c8"),
    (
        TcpOptions(timestamps=(5, 6), sack_blocks=((1, 2), (3, 4), (5, 6))),
        "0101080a00000005000000060101051a" + "".join(f"{n:08x}" for n in range(1, 7)),
    ),
    (TcpOptions(unknown=((30, b"\x01\x02"),)), "1e040102"),
    (TcpOptions(unknown=((254, b"\xaa"),)), "fe03aa00"),
]


@pytest.mark.parametrize(("options", "encoded"), OPTION_VECTORS)
def test_options_encode_canonically_and_decode_back(options: TcpOptions, encoded: str) -> None:
    assert build_tcp_options(options).hex() == encoded
    assert parse_tcp_options(bytes.fromhex(encoded)) == options


def test_options_after_eol_are_padding() -> None:
    assert parse_tcp_options(bytes.fromhex("020405b400ffffff")) == TcpOptions(mss=1460)


def test_nops_between_options_are_skipped() -> None:
    raw = bytes.fromhex("01010101020405b4010303020101")
    assert parse_tcp_options(raw) == TcpOptions(mss=1460, window_scale=2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("02", "option 2 length=missing"),
        ("0201", "option 2 length=1 violates option length >= 2"),
        ("020500000000", "option 2 length=5 violates length == 4"),
        ("0304000000", "option 3 length=4 violates length == 3"),
        ("040300", "option 4 length=3 violates length == 2"),
        ("080800000000000000", "option 8 length=8 violates length == 10"),
        ("0502", "option 5 length=2 violates length == 2 \\+ 8n"),
        ("050b000000000000000000", "option 5 length=11"),
        ("1e08000000", "option 30 length=8 violates option fits the header"),
    ],
)
def test_malformed_option_lengths_raise_wire_error(raw: str, message: str) -> None:
    with pytest.raises(WireError, match=message):
        parse_tcp_options(bytes.fromhex(raw))


def test_segment_round_trips_with_payload_and_every_flag() -> None:
    for flags in TcpFlags:
        original = header(flags=flags | TcpFlags.ACK, ack=7, urgent=3, options=TcpOptions(mss=536))
        parsed, payload = parse_tcp(build_tcp(original, b"payload", src=SRC, dst=DST))
        assert parsed == original and bytes(payload) == b"payload"


def test_syn_matches_a_hand_checked_encoding() -> None:
    raw = build_tcp(header(options=TcpOptions(mss=1460)), b"", src=SRC, dst=DST)
    assert raw[:16].hex() == "c000005001020304000000006002faf0"
    assert raw[18:].hex() == "0000020405b4"
    # The checksum is what makes the pseudo-header + segment sum to 0xFFFF.
    assert ones_complement_sum(raw, pseudo_header_sum(SRC, DST, 6, 24)) == 0xFFFF


def test_flipped_payload_bit_fails_the_checksum() -> None:
    raw = bytearray(build_tcp(header(), b"data", src=SRC, dst=DST))
    raw[-1] ^= 0x80
    with pytest.raises(WireError, match="tcp: checksum"):
        parse_tcp(bytes(raw))
    assert _parse_tcp(bytes(raw), src=SRC, dst=DST, verify_checksum=False)[0] == header()


@pytest.mark.parametrize(
    ("offset_byte", "message"),
    [(0x40, "data_offset=4 violates data_offset >= 5"), (0x70, "data_offset=7 violates")],
)
def test_bad_data_offset_is_refused(offset_byte: int, message: str) -> None:
    raw = bytearray(build_tcp(header(), b"", src=SRC, dst=DST))
    raw[12] = offset_byte
    with pytest.raises(WireError, match=message):
        _parse_tcp(bytes(raw), src=SRC, dst=DST, verify_checksum=False)


def test_partial_checksum_holds_the_pseudo_header_sum_for_the_device() -> None:
    payload = bytes(range(256)) * 256
    raw = build_tcp(header(flags=TcpFlags.ACK), payload, src=SRC, dst=DST, partial_checksum=True)
    assert int.from_bytes(raw[16:18], "big") == pseudo_header_sum(SRC, DST, 6, len(raw))
    # What a device does: sum from the TCP header to the end, store the complement.
    completed = bytearray(raw)
    completed[16:18] = (~ones_complement_sum(raw) & 0xFFFF).to_bytes(2, "big")
    assert bytes(completed) == build_tcp(header(flags=TcpFlags.ACK), payload, src=SRC, dst=DST)


def test_64k_segment_round_trips_without_losing_a_byte() -> None:
    payload = bytes(range(251)) * 261
    raw = build_tcp(header(flags=TcpFlags.ACK), memoryview(payload), src=SRC, dst=DST)
    assert bytes(parse_tcp(raw)[1]) == payload


@pytest.mark.parametrize(
    "options",
    [
        TcpOptions(mss=70000),
        TcpOptions(window_scale=256),
        TcpOptions(sack_blocks=((1, 2),) * 5),
        TcpOptions(unknown=((1, b"x"),)),
        TcpOptions(unknown=((99, bytes(40)),)),
    ],
)
def test_build_refuses_unencodable_options(options: TcpOptions) -> None:
    with pytest.raises(WireUsageError):
        build_tcp(header(options=options), b"", src=SRC, dst=DST)


def test_build_refuses_out_of_range_fields() -> None:
    with pytest.raises(WireUsageError):
        build_tcp(header(seq=1 << 32), b"", src=SRC, dst=DST)


def test_parsed_headers_are_ordinary_frozen_hashable_instances() -> None:
    import dataclasses

    original = header(options=TcpOptions(timestamps=(1, 2)))
    parsed, _ = parse_tcp(build_tcp(original, b"", src=SRC, dst=DST))
    assert type(parsed) is TcpHeader and parsed == original and hash(parsed) == hash(original)
    assert repr(parsed) == repr(original)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.seq = 5  # type: ignore[misc]
    assert dataclasses.replace(parsed, seq=9).seq == 9
