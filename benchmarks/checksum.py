"""Internet checksum throughput: vipernet.wire.checksum against two references.

Prints MB/s for 1500-byte and 64 KiB buffers for
  * vipernet   - ``ones_complement_sum`` (int.from_bytes modulo 0xFFFF),
  * array-sum  - ``sum(array('H', data))`` with byte swapping, the usual "fast" Python idiom,
  * naive-loop - a word-by-word Python loop (RFC 1071 literally), on fewer rounds,
and the same for whole TCP segment build/parse, so the cost around the checksum shows too.

Run: ``PYTHONPATH=src python benchmarks/checksum.py``
"""

from __future__ import annotations

import array
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from vipernet.wire.checksum import ones_complement_sum
from vipernet.wire.ethernet import EthernetHeader, EtherType, build_ethernet, parse_ethernet
from vipernet.wire.ipv4 import IpProto, IPv4Header, build_ipv4, parse_ipv4
from vipernet.wire.tcp import TcpFlags, TcpHeader, TcpOptions, build_tcp, parse_tcp


def array_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_loop(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def rate(fn: Callable[[], object], nbytes: int, seconds: float = 0.4) -> float:
    """MB/s of fn over nbytes, repeated for about ``seconds``; best of 3 runs."""
    best = 0.0
    for _ in range(3):
        rounds = 0
        start = time.perf_counter()
        while True:
            fn()
            rounds += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
        best = max(best, rounds * nbytes / elapsed / 1e6)
    return best


def main() -> None:
    src, dst = IPv4Address("10.0.2.15"), IPv4Address("10.0.2.2")
    print(f"{'what':<34}{'1500 B MB/s':>14}{'64 KiB MB/s':>14}")
    for size_label, sizes in (("checksum", (1500, 65536)),):
        del size_label
        results: dict[str, list[float]] = {"vipernet": [], "array-sum": [], "naive-loop": []}
        for size in sizes:
            data = bytes((i * 7 + 3) & 0xFF for i in range(size))
            assert ones_complement_sum(data) == array_sum(data) == naive_loop(data)
            results["vipernet"].append(rate(lambda d=data: ones_complement_sum(d), size))
            results["array-sum"].append(rate(lambda d=data: array_sum(d), size))
            results["naive-loop"].append(rate(lambda d=data: naive_loop(d), size, 0.2))
        for name, (small, large) in results.items():
            print(f"{'checksum ' + name:<34}{small:>14.0f}{large:>14.0f}")
    header = TcpHeader(
        src_port=40000,
        dst_port=443,
        seq=1,
        ack=2,
        flags=TcpFlags.ACK | TcpFlags.PSH,
        window=65535,
        options=TcpOptions(timestamps=(1, 2)),
    )
    row = []
    row_parse = []
    for size in (1500 - 52, 65536 - 32):
        payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
        segment = build_tcp(header, payload, src=src, dst=dst)
        row.append(rate(lambda p=payload: build_tcp(header, p, src=src, dst=dst), len(segment)))
        row_parse.append(rate(lambda s=segment: parse_tcp(s, src=src, dst=dst), len(segment)))
    print(f"{'build_tcp (checksummed)':<34}{row[0]:>14.0f}{row[1]:>14.0f}")
    print(f"{'parse_tcp (checksum verified)':<34}{row_parse[0]:>14.0f}{row_parse[1]:>14.0f}")

    # Per-frame cost of the receive path on a full-size frame: Ethernet, IPv4, TCP.
    segment = build_tcp(header, bytes((i * 5) & 0xFF for i in range(1448)), src=src, dst=dst)
    frame = build_ethernet(
        EthernetHeader(dst=bytes(6), src=bytes(6), ethertype=EtherType.IPV4),
        build_ipv4(IPv4Header(src=src, dst=dst, proto=IpProto.TCP), segment),
    )

    def receive_path() -> None:
        _, packet = parse_ethernet(frame)
        ip, data = parse_ipv4(packet)
        parse_tcp(data, src=ip.src, dst=ip.dst)

    per_frame = len(frame) / rate(receive_path, len(frame))  # bytes / (MB/s) = us
    print(f"{'parse eth+ipv4+tcp, 1514 B frame':<34}{per_frame:>11.1f} us/frame")


if __name__ == "__main__":
    main()
