"""Per-connection parameters and the engine's tunables (with the reasons for their values)."""

from __future__ import annotations

import functools

DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928
# dupthresh ceiling.  Raising it after spurious retransmissions helps pure reordering but,
# without RACK's time-based loss detection, turned real losses into RTOs in the seeded
# simulations (5% loss + jitter: 1.4 -> 0.6 MB/s), so it stays at 3 for now.
MAX_REORDERING = 3
# RACK reordering-window steps (quarters of the minimum RTT; the window is capped at SRTT
# anyway): grows by one per spurious retransmission detected (RFC 8985 6.2.4)
MAX_REO_STEPS = 64
QUICKACKS = 16  # like Linux's quick-ACK mode: no delayed ACK for this many segments
DELAYED_ACK = 0.04  # Linux's minimum; RFC 9293 allows up to 0.5 s, the brief <= 0.2 s
MAX_PERSIST = 60.0  # ceiling of the zero-window probe interval


class ConnectionParams:
    """Per-connection limits the layer decides (from the device) and socket options."""

    __slots__ = ("congestion", "keep_cnt", "keep_idle", "keep_intvl", "keepalive",
                 "max_payload", "mtu_mss", "nodelay", "rcv_buf", "snd_buf", "use_sack",
                 "use_timestamps", "use_window_scale")

    def __init__(self, *, mtu_mss: int = 1460, max_payload: int = 1460,
                 rcv_buf: int = 4 << 20, snd_buf: int = 4 << 20) -> None:
        self.mtu_mss = mtu_mss  # MSS we advertise: what fits one MTU after IP+TCP headers
        self.max_payload = max_payload  # largest payload of one segment we emit (TSO: 64 KiB)
        self.rcv_buf = rcv_buf
        self.snd_buf = snd_buf
        self.nodelay = False
        self.keepalive = False
        self.keep_idle = 7200.0
        self.keep_intvl = 75.0
        self.keep_cnt = 9
        self.use_sack = True
        self.use_timestamps = True
        self.use_window_scale = True
        # "newreno" (the default) or "cubic" (RFC 9438): setsockopt("TCP_CONGESTION", name).
        # Measured with RACK-TLP and PRR in place, CUBIC gained at 1% loss (simulation:
        # 21-36 vs 7-17 MB/s; through nftables on the TAP about equal, 17 MB/s) but lost
        # at 5% (simulation 1.2-1.8 vs 2.7-4.3 MB/s, 6 vs 2 RTOs per 4 MB; on the TAP 2.1
        # vs 4.5 MB/s, 10 RTOs in 6 s): its gentler cut refills the window into more tail
        # losses.  Until those timeouts are understood NewReno stays the default.
        self.congestion = "newreno"

    def copy(self) -> ConnectionParams:
        # One per accepted connection: copy the slots straight into a bare instance
        # rather than run __init__ and then overwrite every field (half the cost).
        c = object.__new__(ConnectionParams)
        for name in _PARAM_SLOTS:
            setattr(c, name, getattr(self, name))
        return c


_PARAM_SLOTS = ConnectionParams.__slots__


@functools.lru_cache(maxsize=64)
def wscale_for(buf: int) -> int:
    """The smallest window-scale shift that lets a 16-bit window cover ``buf`` bytes."""
    shift = 0
    while shift < 14 and (0xFFFF << shift) < buf:
        shift += 1
    return shift
