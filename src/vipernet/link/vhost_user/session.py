"""One front-end connection's control state: features, memory, and each ring's setup.

:meth:`Session.handle` takes a typed message (:mod:`.protocol`) and returns the reply bytes,
if the message gets one; it never touches a socket, so the whole control plane is driven
by tests with messages alone.  What it keeps per ring (:class:`RingState`): size, base,
addresses, the kick/call/err eventfds, *started* (from SET_VRING_KICK until
GET_VRING_BASE) and *enabled* (SET_VRING_ENABLE; always, if protocol features were not
negotiated), and the running :class:`~.virtqueue.SplitQueue`, rebuilt whenever the memory
table or the ring's addresses change under a started ring.

A request we cannot honour (a ring index we do not have, a size that is not a power of two,
memory that cannot be mapped, dirty logging, anything unknown) is *refused*: with
``need_reply`` the front-end gets a non-zero u64, otherwise it is logged and counted.  The
session owns every fd a message brought; the ones it does not keep are closed at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vipernet.link.vhost_user.features import OFFERED, PROTOCOL_OFFERED, QUEUE_PAIRS, Feature
from vipernet.link.vhost_user.memory import GuestMemory, GuestMemoryError, map_regions
from vipernet.link.vhost_user.protocol import (
    Bare,
    MemoryTable,
    Message,
    Other,
    ProtocolFeature,
    RegionSpec,
    Request,
    U64Message,
    VringAddress,
    VringFd,
    VringState,
    close_fds,
    encode_state_reply,
    encode_u64_reply,
    message_fds,
    need_reply,
)
from vipernet.link.vhost_user.virtqueue import RingError, SplitQueue, valid_queue_size

log = logging.getLogger(__name__)

RX, TX = 0, 1  # virtio-net's first queue pair: the guest receives on 0, transmits on 1
NUM_RINGS = 2 * QUEUE_PAIRS
Mapper = Callable[[Sequence[RegionSpec], Sequence[int]], GuestMemory]


class Refused(Exception):
    """A request this back-end does not carry out (reason in the message)."""


@dataclass(slots=True)
class RingState:
    index: int
    size: int = 0
    base: int = 0  # the next available index to take, from SET_VRING_BASE
    addr: VringAddress | None = None
    kick: int | None = None
    call: int | None = None
    err: int | None = None
    started: bool = False
    enabled: bool = False
    queue: SplitQueue | None = None
    broken: str | None = None  # why a started ring cannot run

    def close_fds(self) -> None:
        close_fds(fd for fd in (self.kick, self.call, self.err) if fd is not None)
        self.kick = self.call = self.err = None


class Session:
    """See the module docstring.  ``mapper`` maps a memory table (tests may replace it)."""

    def __init__(self, mapper: Mapper = map_regions) -> None:
        self._mapper = mapper
        self.features = 0  # acknowledged by SET_FEATURES
        self.features_set = False
        self.protocol_features = 0
        self.memory: GuestMemory | None = None
        self.rings = [RingState(i) for i in range(NUM_RINGS)]
        self.counters: Counter[str] = Counter()
        self.changed = False  # ring fds or queues changed: the I/O side re-syncs
        self.on_stop: Callable[[RingState], None] | None = None  # a ring is being stopped
        # Called with a kick fd just before it is closed: epoll must forget it first, or
        # it would keep reporting it (the file lives on in the front-end) under a number
        # that the next fd received may reuse.
        self.forget_fd: Callable[[int], None] | None = None

    # -- derived ----------------------------------------------------------------------------

    def has(self, feature: Feature) -> bool:
        return bool(self.features & feature)

    @property
    def header_len(self) -> int:
        """The virtio-net header size: 12 with VERSION_1 or MRG_RXBUF, else 10."""
        return 12 if self.features & (Feature.VERSION_1 | Feature.MRG_RXBUF) else 10

    @property
    def reply_ack(self) -> bool:
        return bool(self.protocol_features & ProtocolFeature.REPLY_ACK)

    # -- messages ---------------------------------------------------------------------------

    def handle(self, message: Message) -> bytes | None:
        """Carry out one request; the reply to send, if any."""
        request = message.request
        self.counters[_counter_name(request)] += 1
        try:
            reply = self._dispatch(message)
        except Refused as exc:
            close_fds(message_fds(message))  # none of them was kept
            self.counters["refused"] += 1
            log.info("vhost-user: refused %s: %s", _counter_name(request), exc)
            if need_reply(message) or _always_replies(request):
                return encode_u64_reply(request, 1)
            return None
        if isinstance(message, MemoryTable):
            close_fds(message.fds)  # a mapping outlives its fd
        if reply is None and need_reply(message):
            return encode_u64_reply(request, 0)  # REPLY_ACK: success
        return reply

    def _dispatch(self, message: Message) -> bytes | None:
        request = message.request
        if isinstance(message, Bare):
            return self._bare(request)
        if isinstance(message, U64Message):
            return self._u64(request, message.value)
        if isinstance(message, VringState):
            return self._state(message)
        if isinstance(message, VringAddress):
            ring = self._ring(message.index)
            ring.addr = message
            if message.ring_flags & 1:  # VHOST_VRING_F_LOG: we never offered logging
                raise Refused("dirty logging of the used ring is not supported")
            self._restart(ring)
            return None
        if isinstance(message, VringFd):
            return self._fd(message)
        if isinstance(message, MemoryTable):
            self._memory_table(message)
            return None
        assert isinstance(message, Other)
        raise Refused("not supported by this back-end")

    def _bare(self, request: int) -> bytes | None:
        if request == Request.GET_FEATURES:
            return encode_u64_reply(request, int(OFFERED))
        if request == Request.GET_PROTOCOL_FEATURES:
            return encode_u64_reply(request, int(PROTOCOL_OFFERED))
        if request == Request.GET_QUEUE_NUM:
            return encode_u64_reply(request, QUEUE_PAIRS)
        if request == Request.SET_OWNER:
            return None
        if request == Request.RESET_OWNER:
            # Deprecated; the spec's advice is to disable the rings and keep the rest.
            for ring in self.rings:
                ring.enabled = False
            return None
        raise Refused("not supported by this back-end")

    def _u64(self, request: int, value: int) -> bytes | None:
        if request == Request.SET_FEATURES:
            if value & ~int(OFFERED):
                raise Refused(f"features {value & ~int(OFFERED):#x} were never offered")
            self.features = value
            self.features_set = True
            if not value & Feature.PROTOCOL_FEATURES:
                for ring in self.rings:
                    ring.enabled = True  # without protocol features rings start enabled
            for ring in self.rings:
                self._restart(ring)  # event index / indirect may have changed
            return None
        if request == Request.SET_PROTOCOL_FEATURES:
            if value & ~int(PROTOCOL_OFFERED):
                raise Refused(f"protocol features {value & ~int(PROTOCOL_OFFERED):#x} "
                              "were never offered")
            self.protocol_features = value
            return None
        raise Refused("not supported by this back-end")

    def _state(self, message: VringState) -> bytes | None:
        request = message.request
        ring = self._ring(message.index)
        if request == Request.SET_VRING_NUM:
            if not valid_queue_size(message.num):
                raise Refused(f"ring size {message.num} is not a power of two up to 32768")
            ring.size = message.num
            self._restart(ring)
            return None
        if request == Request.SET_VRING_BASE:
            ring.base = message.num & 0xFFFF
            return None
        if request == Request.GET_VRING_BASE:
            self.stop(ring)
            return encode_state_reply(request, ring.index, ring.base)
        if request == Request.SET_VRING_ENABLE:
            ring.enabled = bool(message.num)
            return None
        raise Refused("not supported by this back-end")

    def _fd(self, message: VringFd) -> bytes | None:
        ring = self._ring(message.index)
        fd = message.fd
        if message.request == Request.SET_VRING_KICK:
            if fd is not None:
                try:
                    os.set_blocking(fd, False)  # we read it only when epoll says so
                except OSError as exc:
                    raise Refused(f"kick fd: {exc.strerror}") from None
            self._drop_kick(ring, fd)
            ring.kick = fd
            ring.started = True  # the spec's "start on kick": we look at once
            self._restart(ring)
        elif message.request == Request.SET_VRING_CALL:
            _replace(ring.call, fd)
            ring.call = fd
        else:
            _replace(ring.err, fd)
            ring.err = fd
        self.changed = True
        return None

    def _memory_table(self, message: MemoryTable) -> None:
        try:
            memory = self._mapper(message.regions, message.fds)
        except GuestMemoryError as exc:
            raise Refused(str(exc)) from None
        old, self.memory = self.memory, memory
        self.counters["memory_bytes"] = memory.total
        for ring in self.rings:
            self._restart(ring)  # rings now point into the new mapping
        if old is not None:
            old.close()

    # -- rings ------------------------------------------------------------------------------

    def _ring(self, index: int) -> RingState:
        if not 0 <= index < NUM_RINGS:
            raise Refused(f"ring {index} does not exist (this device has {NUM_RINGS})")
        return self.rings[index]

    def _restart(self, ring: RingState) -> None:
        """(Re)build a started ring's queue from its current setup, keeping its position."""
        if not ring.started:
            return
        if ring.queue is not None:
            ring.queue.publish()
            ring.base = ring.queue.last_avail
        ring.queue = None
        ring.broken = None
        self.changed = True
        if self.memory is None or ring.addr is None or ring.size == 0:
            return  # not set up yet: the message that completes the setup starts it
        addr = ring.addr
        try:
            ring.queue = SplitQueue(
                self.memory, ring.size, desc=addr.desc, avail=addr.avail, used=addr.used,
                last_avail=ring.base, event_idx=self.has(Feature.RING_EVENT_IDX),
                indirect=self.has(Feature.RING_INDIRECT_DESC))
        except (GuestMemoryError, RingError) as exc:
            self.break_ring(ring, str(exc))

    def break_ring(self, ring: RingState, reason: str) -> None:
        """Stop using a ring the guest broke, and tell the front-end on its err fd."""
        ring.queue = None
        ring.broken = reason
        self.counters["broken_rings"] += 1
        self.changed = True
        log.warning("vhost-user: ring %d broken: %s", ring.index, reason)
        if ring.err is not None:
            with contextlib.suppress(OSError):
                os.write(ring.err, (1).to_bytes(8, "little"))

    def stop(self, ring: RingState) -> None:
        """GET_VRING_BASE: stop the ring and remember where it stopped."""
        if self.on_stop is not None:
            self.on_stop(ring)
        if ring.queue is not None:
            ring.queue.publish()
            ring.base = ring.queue.last_avail
        ring.queue = None
        ring.started = False
        ring.broken = None
        self._drop_kick(ring, None)
        ring.kick = None
        self.changed = True

    def _drop_kick(self, ring: RingState, new: int | None) -> None:
        old = ring.kick
        if old is not None and old != new and self.forget_fd is not None:
            self.forget_fd(old)
        _replace(old, new)

    def close(self) -> None:
        """Release every fd and the memory mapping (the connection is over)."""
        for ring in self.rings:
            ring.queue = None
            self._drop_kick(ring, None)
            ring.kick = None
            ring.close_fds()
        if self.memory is not None:
            self.memory.close()
            self.memory = None
        self.changed = True


def _replace(old: int | None, new: int | None) -> None:
    if old is not None and old != new:
        with contextlib.suppress(OSError):
            os.close(old)


def _always_replies(request: int) -> bool:
    """Requests whose front-end waits for a reply even without need_reply."""
    return request in (Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES,
                       Request.GET_VRING_BASE, Request.GET_QUEUE_NUM, Request.GET_CONFIG,
                       Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS, Request.IOTLB_MSG)


def _counter_name(request: int) -> str:
    try:
        return f"msg.{Request(request).name.lower()}"
    except ValueError:
        return f"msg.request_{request}"
