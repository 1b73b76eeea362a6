"""The virtio-net header (``struct virtio_net_hdr``) that prefixes every frame on a vnet TAP.

Layout (little-endian, which is what the kernel uses for a TAP on x86 and for virtio 1.0):

    u8 flags | u8 gso_type | le16 hdr_len | le16 gso_size | le16 csum_start | le16 csum_offset
    [le16 num_buffers]   -- only when the header size is 12 (VIRTIO_NET_F_MRG_RXBUF layout)

We never merge receive buffers, so ``num_buffers`` is written as 1 and ignored on read.
"""

from __future__ import annotations

import enum
import struct

from vipernet.link.frame import GsoType, Offload

VNET_HDR_LEN = 10
VNET_HDR_LEN_MRG = 12
_HDR = struct.Struct("<BBHHHH")
_NUM_BUFFERS_ONE = b"\x01\x00"
_GSO_ECN = 0x80  # "ECN bit set on some segment": informative, not a type of its own
_ZERO_10 = bytes(VNET_HDR_LEN)
_ZERO_12 = bytes(VNET_HDR_LEN) + _NUM_BUFFERS_ONE


class VnetFlags(enum.IntFlag):
    NEEDS_CSUM = 1
    DATA_VALID = 2
    RSC_INFO = 4


class VnetHeaderError(ValueError):
    """A header we cannot represent (unknown GSO type); the frame is dropped and counted."""


def parse_vnet_hdr(header: bytes | bytearray | memoryview) -> Offload | None:
    """The :class:`Offload` a header describes, or None when it says nothing at all."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _HDR.unpack_from(header)
    if not (flags or gso_type):
        return None
    gso_type &= ~_GSO_ECN
    try:
        gso = GsoType(gso_type)
    except ValueError:
        raise VnetHeaderError(f"unknown virtio-net gso_type {gso_type}") from None
    return Offload(
        needs_csum=bool(flags & VnetFlags.NEEDS_CSUM),
        data_valid=bool(flags & VnetFlags.DATA_VALID),
        csum_start=csum_start,
        csum_offset=csum_offset,
        gso_type=gso,
        gso_size=gso_size,
        hdr_len=hdr_len,
    )


def build_vnet_hdr(offload: Offload | None, size: int = VNET_HDR_LEN) -> bytes:
    """The header bytes (``size`` 10 or 12) that ask the kernel for ``offload``."""
    if offload is None:
        return _ZERO_10 if size == VNET_HDR_LEN else _ZERO_12
    flags = 0
    if offload.needs_csum:
        flags |= VnetFlags.NEEDS_CSUM
    if offload.data_valid:
        flags |= VnetFlags.DATA_VALID
    header = _HDR.pack(flags, int(offload.gso_type), offload.hdr_len, offload.gso_size,
                       offload.csum_start, offload.csum_offset)
    return header if size == VNET_HDR_LEN else header + _NUM_BUFFERS_ONE
