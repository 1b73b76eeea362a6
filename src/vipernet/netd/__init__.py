"""vipernet.netd: the network daemon and its IPC protocol.

One ``netd`` process owns the device, the :class:`~vipernet.stack.Stack` and the
:class:`~vipernet.runtime.Runtime` loop, and serves sockets to programs over an AF_UNIX
socket, one IPC channel per client (protocol byte by byte in ``docs/netd-protocol.md``).

* :mod:`.protocol` - the protocol in one namespace: :mod:`.framing` (header, codes,
  errors, stream decoder) and :mod:`.bodies` (every request/reply layout), for the spec's
  codes 0x01-0x09, 0x14, 0x28, 0x29 plus extensions 0x40-0x47; strict bounded decoding.
* :mod:`.service` - :class:`~.service.NetService`: per-client socket tables, request
  dispatch, parked operations retried on ``Stack.take_changed()``, cleanup when a client
  goes away.  No I/O: the same code serves netd and kernel mode.
* :mod:`.server` - the AF_UNIX listener and non-blocking client channels.
* :mod:`.extensions`, :mod:`.dns_op` - PING, GET_INFO, DNS_RESOLVE.
* :mod:`.links` - ``--link KIND:ARG`` parsing, extensible by kind.
* :mod:`.daemon` - :class:`~.daemon.Netd`: wires it all to a Runtime; signals, shutdown.
"""
