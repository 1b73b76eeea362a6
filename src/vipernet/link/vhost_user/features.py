"""Feature bits: the virtio-net and ring features we offer, and vhost-user's own.

The guest's driver picks from what QEMU's virtio-net device offers, and QEMU offers (for the
bits a vhost-user back-end implements) only what the back-end offered in GET_FEATURES; the
result comes back in SET_FEATURES.  So :data:`OFFERED` bounds what the guest can use, and
the device works with any subset of it: an offload the guest declined is done in software.
"""

from __future__ import annotations

import enum

from vipernet.link.vhost_user.protocol import ProtocolFeature


class Feature(enum.IntFlag):
    """``VIRTIO_NET_F_*``, ``VIRTIO_RING_F_*``, ``VIRTIO_F_*`` and vhost feature bits."""

    CSUM = 1 << 0  # the guest may send partial checksums (we accept them)
    GUEST_CSUM = 1 << 1  # we may hand the guest partial checksums
    GUEST_TSO4 = 1 << 7  # ... and TCP/IPv4 GSO frames
    GUEST_TSO6 = 1 << 8  # ... and TCP/IPv6 GSO frames
    GUEST_ECN = 1 << 9
    GUEST_UFO = 1 << 10
    HOST_TSO4 = 1 << 11  # the guest may send TCP/IPv4 GSO frames
    HOST_TSO6 = 1 << 12  # ... TCP/IPv6
    HOST_ECN = 1 << 13
    HOST_UFO = 1 << 14
    MRG_RXBUF = 1 << 15  # a received frame may span several RX buffers
    STATUS = 1 << 16
    CTRL_VQ = 1 << 17
    MQ = 1 << 22
    NOTIFY_ON_EMPTY = 1 << 24
    LOG_ALL = 1 << 26  # VHOST_F_LOG_ALL: dirty-page logging for migration
    ANY_LAYOUT = 1 << 27
    RING_INDIRECT_DESC = 1 << 28
    RING_EVENT_IDX = 1 << 29
    PROTOCOL_FEATURES = 1 << 30  # VHOST_USER_F_PROTOCOL_FEATURES
    VERSION_1 = 1 << 32
    ACCESS_PLATFORM = 1 << 33
    RING_PACKED = 1 << 34


OFFERED = (Feature.CSUM | Feature.GUEST_CSUM | Feature.GUEST_TSO4 | Feature.GUEST_TSO6
           | Feature.HOST_TSO4 | Feature.HOST_TSO6 | Feature.MRG_RXBUF | Feature.ANY_LAYOUT
           | Feature.RING_INDIRECT_DESC | Feature.RING_EVENT_IDX | Feature.PROTOCOL_FEATURES
           | Feature.VERSION_1)

# MQ: GET_QUEUE_NUM answers 1 (the spec asks every back-end to offer it); REPLY_ACK: QEMU
# learns about a refused request at once instead of from a guest that does not work.
PROTOCOL_OFFERED = ProtocolFeature.MQ | ProtocolFeature.REPLY_ACK
QUEUE_PAIRS = 1


def feature_names(bits: int) -> list[str]:
    """The names of the set bits (unknown ones as ``bitN``), for logs and reports."""
    names = []
    for bit in range(64):
        if bits >> bit & 1:
            try:
                names.append(Feature(1 << bit).name or f"bit{bit}")
            except ValueError:
                names.append(f"bit{bit}")
    return names
