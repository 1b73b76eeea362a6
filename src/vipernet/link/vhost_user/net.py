"""virtio-net over split queues: frames out of the guest's TX queue and into its RX queue.

Both directions carry the virtio-net header in front of the Ethernet frame, 12 bytes
(``virtio_net_hdr_v1``, with ``num_buffers``) when ``VIRTIO_F_VERSION_1`` or
``VIRTIO_NET_F_MRG_RXBUF`` was negotiated, 10 otherwise.  The header codec is the one the
TAP device uses (:mod:`vipernet.link.virtio`).

* TX (:func:`take_frame`): the chain's readable buffers, header first, are gathered into one
  ``bytes`` — the single copy out of guest memory — and the header becomes the frame's
  :class:`~vipernet.link.frame.Offload` (:class:`OffloadDecoder`, which remembers recent
  headers since consecutive GSO frames repeat theirs).
* RX (:func:`put_frame`): with ``MRG_RXBUF`` a frame may fill several chains — the driver's
  buffers are usually 1.5 to 4 KiB — and ``num_buffers`` tells it how many; without it, one
  chain must hold the whole frame.  Chains are only *read* until enough room is found, so a
  frame that does not fit now gives them all back (:meth:`SplitQueue.unpop`) and can wait.
"""

from __future__ import annotations

import enum
import struct

from vipernet.link.frame import Offload
from vipernet.link.vhost_user.virtqueue import Chain, SplitQueue
from vipernet.link.virtio import VNET_HDR_LEN_MRG, VnetHeaderError, build_vnet_hdr, parse_vnet_hdr

ETH_HEADER_LEN = 14
OFFLOAD_CACHE = 256
_NUM_BUFFERS = struct.Struct("<H")


class OffloadDecoder:
    """The :class:`Offload` of a header, decoded once per distinct header bytes."""

    def __init__(self) -> None:
        self._cache: dict[bytes, Offload | None] = {}

    def decode(self, header: bytes) -> Offload | None:
        """None for an all-zero header; raises :class:`VnetHeaderError` for a GSO type we
        cannot represent (the caller drops the frame)."""
        if not (header[0] or header[1]):
            return None
        cache = self._cache
        try:
            return cache[header]
        except KeyError:
            pass
        offload = parse_vnet_hdr(header)
        if len(cache) >= OFFLOAD_CACHE:
            cache.clear()
        cache[header] = offload
        return offload


class TxVerdict(enum.Enum):
    RUNT = "runt"
    OVERSIZED = "oversized"
    BAD_HEADER = "bad_header"


def take_frame(chain: Chain, hdr_len: int, max_frame: int, decoder: OffloadDecoder
               ) -> tuple[bytes | memoryview, Offload | None] | TxVerdict:
    """The Ethernet frame (and its offload) a TX chain carries, or why it is dropped."""
    parts = chain.readable
    total = 0
    for part in parts:
        total += len(part)
    if total < hdr_len + ETH_HEADER_LEN:
        return TxVerdict.RUNT
    if total - hdr_len > max_frame:
        return TxVerdict.OVERSIZED
    data: bytes | memoryview
    first = parts[0]
    if len(first) == hdr_len:
        # The usual layout: the header in a descriptor of its own.
        header = bytes(first)
        data = bytes(parts[1]) if len(parts) == 2 else b"".join(parts[1:])
    else:
        whole = bytes(first) if len(parts) == 1 else b"".join(parts)
        header = whole[:hdr_len]
        data = memoryview(whole)[hdr_len:]
    try:
        offload = decoder.decode(header[:10])
    except VnetHeaderError:
        return TxVerdict.BAD_HEADER
    return data, offload


class RxVerdict(enum.Enum):
    DONE = "done"
    NO_ROOM = "no_room"  # not enough buffers posted now: keep the frame, retry later
    TOO_BIG = "too_big"  # no single chain can ever hold it (no MRG_RXBUF): drop it


def put_frame(queue: SplitQueue, data: bytes | bytearray | memoryview, offload: Offload | None,
              *, hdr_len: int, mergeable: bool) -> tuple[RxVerdict, int]:
    """Write header + frame into the next available chain(s) and push them as used.

    Returns the verdict and how many malformed chains were met (returned empty to the
    driver: it sees a length error and recycles them).  Nothing is published here.
    """
    total = hdr_len + len(data)
    chains: list[Chain] = []
    room = 0
    bad = 0
    while room < total:
        chain = queue.pop()
        if chain is None:
            queue.unpop(len(chains))
            return RxVerdict.NO_ROOM, bad
        if chain.error is not None or not chain.writable:
            bad += 1
            # Chains taken before a bad one cannot go back behind it: hand them all back
            # empty, in ring order, and start collecting again after it.
            for taken in chains:
                queue.push(taken.head, 0)
            chains, room = [], 0
            if chain.head < queue.size:
                queue.push(chain.head, 0)
            continue
        chains.append(chain)
        room += chain.writable_bytes
        if not mergeable and room < total:
            queue.unpop(1)
            return RxVerdict.TOO_BIG, bad
    header = build_vnet_hdr(offload, hdr_len)
    if hdr_len == VNET_HDR_LEN_MRG and len(chains) > 1:
        header = header[:10] + _NUM_BUFFERS.pack(len(chains))
    source = memoryview(header + data if isinstance(data, bytes) else header + bytes(data))
    pos = 0
    for chain in chains:
        written = 0
        for segment in chain.writable:
            n = min(len(segment), total - pos)
            if n <= 0:
                break
            segment[:n] = source[pos:pos + n]
            pos += n
            written += n
        queue.push(chain.head, written)
    return RxVerdict.DONE, bad
