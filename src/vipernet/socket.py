"""vipernet's public socket module: ``vipernet.socket.socket(AF_INET, SOCK_DGRAM)``.

Shaped like the stdlib ``socket`` module so code reads the same; the sockets live in the
vipernet stack, reached through netd (default) or run in-process when
``VIPER_KERNEL_ENABLE_NET=1``.  See :mod:`vipernet.netclient.sockets`.
"""

from vipernet.netclient.sockets import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    AI_PASSIVE,
    IPPROTO_ICMP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_V6ONLY,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_BROADCAST,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
    create_connection,
    error,
    gaierror,
    getaddrinfo,
    getdefaulttimeout,
    gethostbyname,
    gethostbyname_ex,
    poll,
    setdefaulttimeout,
    socket,
    timeout,
)

__all__ = [
    "AF_INET", "AF_INET6", "AF_UNSPEC", "AI_PASSIVE", "IPPROTO_ICMP", "IPPROTO_IPV6",
    "IPPROTO_TCP", "IPPROTO_UDP", "IPV6_V6ONLY", "SHUT_RD",
    "SHUT_RDWR", "SHUT_WR", "SOCK_DGRAM", "SOCK_STREAM", "SOL_SOCKET", "SO_BROADCAST",
    "SO_ERROR", "SO_KEEPALIVE", "SO_RCVBUF", "SO_REUSEADDR", "SO_SNDBUF", "TCP_NODELAY",
    "create_connection", "error", "gaierror", "getaddrinfo", "getdefaulttimeout",
    "gethostbyname", "gethostbyname_ex", "poll", "setdefaulttimeout", "socket", "timeout",
]
