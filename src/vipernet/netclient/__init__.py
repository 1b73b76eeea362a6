"""vipernet.netclient (libnetclient): the client side of netd, and kernel mode.

* :mod:`.channel` - :class:`~.channel.UnixChannel`: requests to netd over its AF_UNIX
  socket, replies matched by id so threads can block independently.
* :mod:`.client` - :class:`~.client.NetClient`: one typed method per request code.
* :mod:`.default` - :func:`~.default.default_client` picks netd (``VIPERNET_SOCKET``)
  or, with ``VIPER_KERNEL_ENABLE_NET=1``, the in-process stack.
* :mod:`.transport` - how the CLI's protocol clients open a TCP connection (netd, or
  host sockets with ``VIPERNET_TRANSPORT=os``).
* :mod:`.inprocess` - kernel mode: stack + runtime thread in this process behind the same
  channel interface (``VIPERNET_LINK=tap:NAME[@NETNS]``).
* :mod:`.sockets` - the stdlib-shaped ``socket`` class and module functions, re-exported
  as :mod:`vipernet.socket`.
* :mod:`.aio` - ``open_connection(host, port)``: asyncio's own streams on a vipernet socket.
"""
