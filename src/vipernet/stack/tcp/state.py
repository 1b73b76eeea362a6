"""The eleven TCP states of RFC 9293 and the errors the engine reports."""

from __future__ import annotations

import enum

from vipernet.errors import VipernetError


class TcpState(enum.IntEnum):
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


#: States in which both sequence spaces are known (RFC 9293 "synchronized states").
SYNCHRONIZED = frozenset({
    TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT,
    TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT,
})

#: States in which the application may still queue data.
CAN_SEND = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})

#: States in which the peer may still send us data.
CAN_RECEIVE = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})


# Module-level names for the per-segment paths: a module global is found faster than an
# enum attribute (``TcpState.ESTABLISHED``), and the engine files share these instead of
# each keeping its own copy.
CLOSED = TcpState.CLOSED
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

RECEIVING = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2)  # states that accept new data
SENDING = (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK)  # states that (re)send data


class TcpError(VipernetError):
    """A TCP engine error that is not an errno for the application."""


class SegmentError(TcpError):
    """A segment off the wire is malformed (counted and dropped by the layer)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"tcp {field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason
