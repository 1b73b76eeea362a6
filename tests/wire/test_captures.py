"""Frames captured from Linux's own stack on ``lo`` (AF_PACKET), decoded and rebuilt.

On loopback Linux leaves TCP/UDP checksums *partial* (CHECKSUM_PARTIAL: the field holds
the pseudo-header sum), so those frames also check that ``partial_checksum=True`` writes
exactly what the kernel writes; the ICMP frames carry full checksums and are verified.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from vipernet.wire import (
    EtherType,
    IcmpEcho,
    IcmpError,
    IcmpType,
    IpProto,
    TcpFlags,
    TcpOptions,
    UnreachableCode,
    build_icmp,
    build_ipv4,
    build_tcp,
    build_udp,
    parse_ethernet,
    parse_icmp,
    parse_ipv4,
    parse_tcp,
    parse_udp,
)

LOCALHOST = IPv4Address("127.0.0.1")
ETH_LO = "000000000000000000000000" + "0800"

# A connect() to 127.0.0.1:51361 from port 57130.
SYN = bytes.fromhex(
    ETH_LO + "4500003cb6814000400686387f0000017f000001"
    "df2ac8a1ccdda02000000000a002ffd7fe300000"
    "0204ffd70402080adc44e748000000000103030a"
)
SYN_ACK = bytes.fromhex(
    ETH_LO + "4500003c0000400040063cba7f0000017f000001"
    "c8a1df2a086d8f5cccdda021a012ffcbfe300000"
    "0204ffd70402080ae9808433dc44e7480103030a"
)
DATA = bytes.fromhex(
    ETH_LO + "45000043b68340004006862f7f0000017f000001"
    "df2ac8a1ccdda021086d8f5d80180040fe370000"
    "0101080adc44e748e9808433" + b"hello vipernet\n".hex()
)
UDP = bytes.fromhex(
    ETH_LO + "45000020f74c40004011457e7f0000017f000001" + "94160035000cfe1f" + b"dns?".hex()
)
PORT_UNREACHABLE = bytes.fromhex(
    "000000000000000000000000080045c0003c4d40000040012ebf7f0000017f000001"
    "030392d70000000045000020f74c40004011457e7f0000017f00000194160035000cfe1f646e733f"
)
ECHO_REQUEST = bytes.fromhex(
    "00000000000000000000000008004500002c4d4140004001ef8d7f0000017f000001"
    "080028c0272a00013e3f066b000000005c6a070000000000"
)
ECHO_REPLY = bytes.fromhex(
    "00000000000000000000000008004500002c4d42000040012f8d7f0000017f000001"
    "000030c0272a00013e3f066b000000005c6a070000000000"
)


def test_captured_syn_decodes_every_field_and_option() -> None:
    eth, packet = parse_ethernet(SYN)
    assert eth.ethertype is EtherType.IPV4
    ip, segment = parse_ipv4(packet)
    assert ip.proto is IpProto.TCP
    assert (ip.src, ip.dst, ip.ttl, ip.ident) == (LOCALHOST, LOCALHOST, 64, 0xB681)
    assert ip.dont_fragment and not ip.more_fragments and ip.total_length == 60
    tcp, payload = parse_tcp(segment, src=ip.src, dst=ip.dst, verify_checksum=False)
    assert (tcp.src_port, tcp.dst_port, tcp.seq, tcp.ack) == (57130, 51361, 0xCCDDA020, 0)
    assert tcp.flags == TcpFlags.SYN and tcp.window == 65495
    assert tcp.options == TcpOptions(
        mss=65495, sack_permitted=True, timestamps=(0xDC44E748, 0), window_scale=10
    )
    assert len(payload) == 0


def test_rebuilt_syn_ack_matches_linux_byte_for_byte_with_a_partial_checksum() -> None:
    ip, segment = parse_ipv4(parse_ethernet(SYN_ACK)[1])
    tcp, payload = parse_tcp(segment, src=ip.src, dst=ip.dst, verify_checksum=False)
    assert tcp.flags == TcpFlags.SYN | TcpFlags.ACK
    rebuilt = build_tcp(tcp, payload, src=ip.src, dst=ip.dst, partial_checksum=True)
    assert rebuilt == bytes(segment)
    assert build_ipv4(ip, rebuilt) == bytes(parse_ethernet(SYN_ACK)[1])


def test_rebuilt_data_segment_matches_linux_and_carries_the_payload() -> None:
    ip, segment = parse_ipv4(parse_ethernet(DATA)[1])
    tcp, payload = parse_tcp(segment, src=ip.src, dst=ip.dst, verify_checksum=False)
    assert bytes(payload) == b"hello vipernet\n"
    assert tcp.flags == TcpFlags.PSH | TcpFlags.ACK
    assert tcp.options == TcpOptions(timestamps=(0xDC44E748, 0xE9808433))
    assert build_tcp(tcp, payload, src=ip.src, dst=ip.dst, partial_checksum=True) == segment


def test_full_checksum_of_a_captured_segment_verifies_after_completion() -> None:
    ip, segment = parse_ipv4(parse_ethernet(DATA)[1])
    tcp, payload = parse_tcp(segment, src=ip.src, dst=ip.dst, verify_checksum=False)
    full = build_tcp(tcp, payload, src=ip.src, dst=ip.dst)
    assert full != bytes(segment)  # the capture's checksum was only partial
    parse_tcp(full, src=ip.src, dst=ip.dst)  # and ours verifies


def test_rebuilt_udp_datagram_matches_linux_with_a_partial_checksum() -> None:
    ip, datagram = parse_ipv4(parse_ethernet(UDP)[1])
    udp, payload = parse_udp(datagram, src=ip.src, dst=ip.dst, verify_checksum=False)
    assert (udp.src_port, udp.dst_port, udp.length, bytes(payload)) == (37910, 53, 12, b"dns?")
    rebuilt = build_udp(37910, 53, payload, src=ip.src, dst=ip.dst, partial_checksum=True)
    assert rebuilt == bytes(datagram)


def test_captured_port_unreachable_quotes_the_udp_datagram() -> None:
    ip, data = parse_ipv4(parse_ethernet(PORT_UNREACHABLE)[1])
    assert ip.proto is IpProto.ICMP and ip.tos == 0xC0
    message = parse_icmp(data)
    assert isinstance(message, IcmpError)
    assert message.type is IcmpType.DEST_UNREACHABLE and message.code == UnreachableCode.PORT
    quoted_ip, quoted_payload = message.quoted_ipv4()
    assert quoted_ip.proto is IpProto.UDP and quoted_ip.dst == LOCALHOST
    assert bytes(quoted_payload[:4]) == bytes.fromhex("94160035")  # ports 37910 -> 53
    assert build_icmp(message) == bytes(data)


def test_captured_echo_request_and_reply_verify_and_rebuild() -> None:
    for frame, kind in ((ECHO_REQUEST, IcmpType.ECHO_REQUEST), (ECHO_REPLY, IcmpType.ECHO_REPLY)):
        ip, data = parse_ipv4(parse_ethernet(frame)[1])
        message = parse_icmp(data)
        assert isinstance(message, IcmpEcho)
        assert (message.type, message.ident, message.seq) == (kind, 0x272A, 1)
        assert len(message.payload) == 16
        assert build_icmp(message) == bytes(data)
        assert build_ipv4(ip, build_icmp(message)) == bytes(parse_ethernet(frame)[1])
