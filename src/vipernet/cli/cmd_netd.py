"""``vipernet netd``: run the network daemon on a device.

    vipernet netd [--link user|tap:NAME|passt|qemu-stream:PATH] [--netns NS]
                  [--restrict] [--forward tcp:HOSTPORT:GUESTPORT ...]
                  [--ip 10.0.2.15/24|dhcp] [--gateway 10.0.2.2] [--dns 10.0.2.3]
                  [--mac 52:54:00:12:34:56] [--socket PATH] [--pcap FILE]

Defaults are the QEMU SLiRP layout of the spec.  Errors that stop netd from starting (no
such interface, not permitted, socket in use) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_address
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("netd", help="run the network daemon on a device",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", default="user",
                        help="device: user[:OPTIONS] (default: built-in user-mode networking, "
                             "no root), tap:NAME[@NETNS], passt[:ADDR/PREFIX], "
                             "qemu-stream:PATH")
    parser.add_argument("--netns", help="open the device inside this network namespace")
    parser.add_argument("--restrict", action="store_true",
                        help="user link: reach only 10.0.2.2 (host loopback) and 10.0.2.3 (DNS)")
    parser.add_argument("--forward", action="append", default=[], metavar="tcp:HOST:GUEST",
                        help="user link: carry host 127.0.0.1:HOST to the stack's port GUEST "
                             "(repeatable)")
    parser.add_argument("--ip", default="10.0.2.15/24",
                        help="address/prefix (10.0.2.15/24), or 'dhcp' (vipernet.dhcp)")
    parser.add_argument("--gateway", default="10.0.2.2",
                        help="default gateway, or 'none' (10.0.2.2)")
    parser.add_argument("--dns", default="10.0.2.3",
                        help="DNS servers, IPv4 or IPv6, comma-separated (10.0.2.3)")
    parser.add_argument("--ip6", default="auto", metavar="auto|ADDR/PREFIX|off",
                        help="IPv6: auto (link-local, and SLAAC when the link sends router "
                             "advertisements; the default), a static ADDR/PREFIX (plus the "
                             "link-local), or off")
    parser.add_argument("--mac", default="52:54:00:12:34:56", help="our MAC address")
    parser.add_argument("--mtu", type=int, default=1500, help="link MTU (1500)")
    parser.add_argument("--socket", dest="socket_path",
                        default=os.environ.get("VIPERNET_SOCKET") or "/run/vipernet/netd.sock",
                        help="IPC socket path ($VIPERNET_SOCKET or /run/vipernet/netd.sock)")
    parser.add_argument("--pcap", help="write every frame in and out to this pcap file")
    parser.add_argument("--seed", type=int, help="seed the stack's random source (tests)")
    parser.add_argument("--hosts", metavar="N[@FIRST[/PREFIX]]|FIRST-LAST[/PREFIX]",
                        help="also run N virtual hosts on the link, each with its own IP "
                             "and MAC (from 10.0.2.100, in --ip's network unless /PREFIX "
                             "says otherwise); see docs/vhosts.md")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from vipernet.netd.daemon import NetdConfig
    from vipernet.netd.links import parse_link

    try:
        mac = bytes.fromhex(args.mac.replace(":", "").replace("-", ""))
        if len(mac) != 6:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad --mac {args.mac!r}") from None
    dhcp = args.ip.lower() == "dhcp"  # the address comes from the lease (see run())
    with _option("--ip", args.ip):
        ip = IPv4Interface("10.0.2.15/24" if dhcp else args.ip)
    with _option("--gateway", args.gateway):
        gateway = None if args.gateway.lower() == "none" else IPv4Address(args.gateway)
    with _option("--dns", args.dns):
        dns = tuple(ip_address(d.strip()) for d in args.dns.split(",") if d.strip())
    ip6, ip6_address = _ip6(args.ip6)
    link = parse_link(args.link, netns=args.netns)
    if args.restrict or args.forward:  # the flags are the user link's options
        if link.kind != "user":
            raise ValueError(f"--restrict and --forward need --link user, not {link.kind}")
        from vipernet.slirp.config import with_options

        link = dataclasses.replace(link, argument=with_options(
            link.argument, restrict=args.restrict, forwards=args.forward))
    return NetdConfig(link=link,
                      socket_path=args.socket_path,
                      ip=ip,
                      gateway=gateway, dns=dns, mac=mac, mtu=args.mtu, pcap=args.pcap,
                      seed=args.seed, ip6=ip6, ip6_address=ip6_address,
                      hosts=_hosts(args.hosts, ip))


def _hosts(value: str | None, ip: IPv4Interface) -> Any:
    """``--hosts``: the virtual hosts' range (None without the option)."""
    if value is None:
        return None
    from vipernet.vhosts.ranges import parse_host_range

    spec = f"{value}@10.0.2.100" if value.strip().isdigit() else value
    return parse_host_range(spec, default_prefixlen=ip.network.prefixlen)


def _ip6(value: str) -> tuple[str, IPv6Interface | None]:
    """``--ip6``: the stack's mode and, for a static address, the address."""
    mode = value.lower()
    if mode in ("auto", "off"):
        return mode, None
    with _option("--ip6", value):
        if "/" not in value:
            raise ValueError("give ADDR/PREFIX, auto or off")
        return "static", IPv6Interface(value)


@contextlib.contextmanager
def _option(name: str, value: str) -> Iterator[None]:
    """Name the option in a parse error: "bad --ip '10.0.2.300/24': Octet 300 ..."."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"bad {name} {value!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    from vipernet.errors import VipernetError
    from vipernet.link.errors import DeviceClosed
    from vipernet.netd.daemon import Netd

    # Until netd's own handlers are in, SIGTERM interrupts start-up like Ctrl-C does, so a
    # wait for a qemu-stream peer ends cleanly (its socket file removed), not by a kill.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        config = _config(args)
        device = None
        if args.ip.lower() == "dhcp":  # vipernet.dhcp: first lease now, renewals in the loop
            from vipernet.netd.dhcp_lease import acquire_for_netd

            config, device = acquire_for_netd(config)
        netd = Netd(config, device=device)
        if device is not None:  # renewals move the stack and repoint the resolver
            from vipernet.netd.dhcp_lease import follow_lease

            follow_lease(device, netd)
    except (ValueError, VipernetError, OSError) as exc:
        print(f"vipernet netd: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # e.g. while qemu-stream:...,server waits for its peer
        print("vipernet netd: interrupted before it started", file=sys.stderr)
        return 130
    netd.install_signal_handlers()
    print(f"netd: {config.ip} on {config.link}, serving {config.socket_path}",
          file=sys.stderr, flush=True)
    try:
        netd.run()
    except DeviceClosed as exc:
        print(f"vipernet netd: the link went away: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # logged in full by the loop (with -v); one line here
        print(f"vipernet netd: stopped by an error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


class _BriefFormatter(logging.Formatter):
    """Log records as one line each: tracebacks only with ``-v``.

    The fatal error is printed once more as netd's last line, so without ``-v`` a user
    sees what stopped netd, not a stack dump.
    """

    def formatException(self, ei: Any) -> str:  # logging names it so
        return ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({_one_line(record.exc_info[1])})"
        return text


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    fmt = "netd: %(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if verbose else _BriefFormatter(fmt))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        handlers=[handler])


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return f"not permitted: {exc.strerror or exc} (netd needs root / CAP_NET_ADMIN)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if not exc.filename else f"{exc.strerror}: {exc.filename}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
