"""Doing in software what a virtio-net device does in hardware: checksums and TCP segmentation.

Two jobs, both on raw Ethernet frames (IPv4 only, as is the rest of the stack):

* :func:`complete_checksum` finishes a *partial* L4 checksum (``Offload.needs_csum``): the
  checksum field already holds the folded pseudo-header sum, so the device's job is to sum
  everything from ``csum_start`` to the end, complement it and store it at
  ``csum_start + csum_offset``.  The pcap writer and the fault injector need it so a capture
  (or a deliberately corrupted frame) carries a checksum that really covers the bytes.
* :func:`segment_gso` cuts one TCPV4 GSO frame (up to 64 KiB of payload) into MSS-sized
  frames, as the kernel does for a TSO-capable device: consecutive IP ids, per-segment
  lengths and header checksums, advancing sequence numbers, FIN/PSH only on the last segment
  and CWR only on the first, and full TCP checksums.

:func:`resolve_offloads` applies whichever of the two a device cannot do itself, so a device
without offloads never passes metadata on to a peer that could not have produced it.
"""

from __future__ import annotations

from vipernet.link.errors import LinkError, LinkUsageError
from vipernet.link.frame import DeviceCapabilities, Frame, GsoType, Offload
from vipernet.wire.checksum import internet_checksum, ones_complement_sum

ETH_HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6
UDP_CSUM_OFFSET = 6  # where a UDP header keeps its checksum

_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80


class OffloadError(LinkError):
    """A frame's offload metadata does not fit its bytes (bad csum_start, not TCP/IPv4, ...)."""


def complete_checksum(frame: Frame) -> bytes:
    """The frame's bytes with its partial L4 checksum completed (a copy if work was needed).

    A frame without ``needs_csum`` comes back unchanged as bytes.  For UDP a computed 0 is
    sent as 0xFFFF, since 0 on the wire means "no checksum".
    """
    data = frame.data
    off = frame.offload
    if off is None or not off.needs_csum:
        return data if isinstance(data, bytes) else bytes(data)
    start, field = off.csum_start, off.csum_start + off.csum_offset
    if start < ETH_HEADER_LEN or field + 2 > len(data) or off.csum_offset < 0:
        raise OffloadError(
            f"partial checksum outside the frame: csum_start={start} "
            f"csum_offset={off.csum_offset} frame_length={len(data)}")
    return bytes(checksum_finished(data, start, off.csum_offset))


def checksum_finished(data: bytes | bytearray | memoryview, start: int,
                      csum_offset: int) -> bytearray:
    """A copy of ``data`` whose L4 checksum at ``start + csum_offset`` is finished: what a
    device does with a NEEDS_CSUM packet (the field holds the pseudo-header sum, so the
    sum from ``start`` to the end is the final checksum).  For UDP a 0 becomes 0xFFFF."""
    value = internet_checksum(memoryview(data)[start:])
    if value == 0 and csum_offset == UDP_CSUM_OFFSET:
        value = 0xFFFF
    out = bytearray(data)
    field = start + csum_offset
    out[field:field + 2] = value.to_bytes(2, "big")
    return out


def segment_gso(frame: Frame, mss: int | None = None) -> list[Frame]:
    """Cut a TCPV4 GSO frame into frames carrying at most ``mss`` payload bytes each.

    ``mss`` defaults to ``frame.offload.gso_size`` (for a frame that is not GSO at all: no
    limit).  Every output frame has full, valid IP and TCP checksums and no offload metadata.
    A frame whose payload already fits comes back as one frame (with its checksum completed).
    """
    off = frame.offload
    if mss is None:
        is_gso = off is not None and off.gso_type != GsoType.NONE
        mss = (off.gso_size if off is not None else 0) if is_gso else 0xFFFF
    if mss <= 0:
        raise OffloadError(f"cannot segment with mss={mss}")
    if off is not None and off.gso_type not in (GsoType.NONE, GsoType.TCPV4):
        raise OffloadError(f"cannot segment gso_type={off.gso_type.name}: only TCPV4")
    data = memoryview(frame.data)
    ip_start = ETH_HEADER_LEN
    if len(data) < ip_start + 20 or int.from_bytes(data[12:14], "big") != ETHERTYPE_IPV4:
        raise OffloadError("GSO frame is not Ethernet + IPv4")
    ihl = (data[ip_start] & 0x0F) * 4
    total_length = int.from_bytes(data[ip_start + 2:ip_start + 4], "big")
    if data[ip_start] >> 4 != 4 or ihl < 20 or data[ip_start + 9] != IPPROTO_TCP:
        raise OffloadError("GSO frame is not IPv4/TCP")
    if total_length == 0:
        # Linux leaves tot_len 0 on GSO packets over 64 KiB; take the length from the frame.
        total_length = len(data) - ip_start
    tcp_start = ip_start + ihl
    end = ip_start + total_length
    if end > len(data) or tcp_start + 20 > end:
        raise OffloadError(f"IPv4 total_length={total_length} does not fit the frame")
    doff = (data[tcp_start + 12] >> 4) * 4
    payload_start = tcp_start + doff
    if doff < 20 or payload_start > end:
        raise OffloadError(f"TCP data offset {doff} does not fit the segment")

    eth = bytes(data[:ip_start])
    ip_header = bytearray(data[ip_start:tcp_start])
    tcp_header = bytearray(data[tcp_start:payload_start])
    ident = int.from_bytes(ip_header[4:6], "big")
    seq = int.from_bytes(tcp_header[4:8], "big")
    flags = tcp_header[13]
    src, dst = bytes(ip_header[12:16]), bytes(ip_header[16:20])
    payload = data[payload_start:end]
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)] or [payload]

    out: list[Frame] = []
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        seg_flags = flags
        if not last:
            seg_flags &= ~(_TCP_FIN | _TCP_PSH)
        if index > 0:
            seg_flags &= ~_TCP_CWR
        ip_header[2:4] = (ihl + doff + len(chunk)).to_bytes(2, "big")
        ip_header[4:6] = ((ident + index) & 0xFFFF).to_bytes(2, "big")
        ip_header[10:12] = b"\x00\x00"
        ip_header[10:12] = internet_checksum(ip_header).to_bytes(2, "big")
        tcp_header[4:8] = ((seq + index * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        tcp_header[13] = seg_flags
        tcp_header[16:18] = b"\x00\x00"
        tcp_length = doff + len(chunk)
        pseudo = src + dst + bytes((0, IPPROTO_TCP)) + tcp_length.to_bytes(2, "big")
        partial = ones_complement_sum(pseudo + tcp_header)  # both even-length
        tcp_header[16:18] = internet_checksum(chunk, partial).to_bytes(2, "big")
        out.append(Frame(eth + bytes(ip_header) + bytes(tcp_header) + bytes(chunk)))
    return out


def resolve_offloads(frame: Frame, *, csum: bool, tso: bool) -> list[Frame]:
    """Frames equivalent to ``frame`` for a device that can (``csum``/``tso``) or cannot offload.

    What the device can do is left in the metadata; what it cannot is done here.
    """
    off = frame.offload
    if off is None:
        return [frame]
    if off.gso_type != GsoType.NONE and not tso:
        return segment_gso(frame)
    if off.needs_csum and not csum:
        return [Frame(complete_checksum(frame), _without_csum(off))]
    return [frame]


def _without_csum(off: Offload) -> Offload | None:
    if off.gso_type == GsoType.NONE:
        return None
    return Offload(gso_type=off.gso_type, gso_size=off.gso_size, hdr_len=off.hdr_len)


def check_frame_size(name: str, frame: Frame, capabilities: DeviceCapabilities) -> None:
    """Refuse (as a caller error) a frame larger than the device said it accepts."""
    length = len(frame.data)
    if length > capabilities.max_frame:
        raise LinkUsageError(
            f"{name}: frame of {length} bytes exceeds max_frame={capabilities.max_frame}")
    if length < ETH_HEADER_LEN:
        raise LinkUsageError(f"{name}: frame of {length} bytes is shorter than an Ethernet header")
