"""vipernet.stack.tcp: the TCP engine (RFC 9293) of the stack, sans-IO.

Files, one concept each:

* ``seq``          mod-2**32 arithmetic and the unwrapped offsets the engine uses inside
* ``isn``          RFC 6528 initial sequence numbers (keyed BLAKE2s + 4 µs clock)
* ``state``        the eleven states and the engine's errors
* ``segment``      the engine's fast segment codec and checksum (plus the flag/option enums)
* ``rto``          RFC 6298 retransmission timeout
* ``congestion``   the congestion-control interface and the algorithms by name
* ``newreno``      NewReno (RFC 5681, RFC 6582; the default)
* ``cubic``        CUBIC (RFC 9438)
* ``hystart``      HyStart++ (RFC 9406) slow-start exit
* ``rack``         RACK (RFC 8985): per-segment transmit records, time-based loss marks
* ``prr``          PRR (RFC 6937): the sending budget in fast recovery
* ``send_buffer``  the send queue (bytearray with a moving head)
* ``recv_buffer``  in-order chunks + out-of-order reassembly with bounded memory, SACK blocks
* ``params``       per-connection parameters and the engine's tunables
* ``tcb``          a connection's state and the transition choke point ``_set_state``
* ``sender``       output, retransmission timer, tail-loss probe, RACK/PRR recovery, undo
* ``receiver``     segment arrival: RFC 9293 3.10.7, RFC 5961, PAWS, ACKs, data, FIN
* ``connection``   ``Connection``: opening, timers, the application's calls
* ``timewait``     the compact record an orphaned connection becomes in TIME_WAIT
* ``listener``     SYN queue and accept queue
* ``layer``        demultiplexing, RST for strays, ports, TIME_WAIT, the timer heap
* ``socket``       ``TcpSocket``, the StackSocket interface netd and kernel mode drive

The stack creates ``TcpLayer(stack)``, registers ``layer.receive`` for IP protocol 6, calls
``layer.poll(now)`` / ``layer.next_deadline()`` and hands out ``layer.open_socket()``.
See docs/tcp.md.
"""

from vipernet.stack.tcp.layer import TcpLayer
from vipernet.stack.tcp.socket import TcpSocket
from vipernet.stack.tcp.state import TcpState

__all__ = ["TcpLayer", "TcpSocket", "TcpState"]
