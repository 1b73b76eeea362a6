"""``vipernet gateway``: user-mode networking for QEMU guests, TAPs and namespaces.

    vipernet gateway [--qemu-stream ADDRESS[,connect]] [--qemu-dgram LOCAL,REMOTE]
                     [--tap NAME[@NETNS]] [--vhost-user PATH] [--net 10.0.2.0/24]
                     [--restrict] [--forward tcp|udp:HOSTPORT:GUESTPORT ...]
                     [--dns-upstream IP[:PORT]] [--ipv6 on|off] [--mtu N]

At least one guest port is needed; every port may be repeated, and every guest gets a
wire of its own with the libslirp layout (gateway .2 = host loopback, DNS .3, DHCP
handing out .15).  Runs until SIGINT or SIGTERM; SIGUSR1 prints every wire's counters.
Errors that stop the gateway from starting are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

PORT_OPTIONS = ("qemu-stream", "qemu-dgram", "tap", "vhost-user")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="user-mode networking for QEMU guests, TAPs and namespaces",
        description=__doc__.split("\n\n")[0])
    ports = parser.add_argument_group("guest ports (at least one; each repeatable)")
    ports.add_argument("--qemu-stream", action="append", default=[], metavar="ADDRESS[,connect]",
                       help="listen at a UNIX path or HOST:PORT for QEMU -netdev stream "
                            "(server=off); ',connect' connects to a QEMU started with server=on")
    ports.add_argument("--qemu-dgram", action="append", default=[], metavar="LOCAL,REMOTE",
                       help="QEMU -netdev dgram: bind LOCAL, send to REMOTE (paths or HOST:PORTs)")
    ports.add_argument("--tap", action="append", default=[], metavar="NAME[@NETNS]",
                       help="serve an existing TAP (with the virtio-net header: TSO both ways)")
    ports.add_argument("--vhost-user", action="append", default=[], metavar="PATH",
                       help="listen at PATH for QEMU -netdev vhost-user (we are the device)")
    parser.add_argument("--net", default="10.0.2.0/24",
                        help="the guests' IPv4 network: gateway .2, DNS .3, guest .15 "
                             "(10.0.2.0/24)")
    parser.add_argument("--restrict", action="store_true",
                        help="guests reach only the gateway (host loopback) and DNS")
    parser.add_argument("--forward", action="append", default=[],
                        metavar="tcp|udp:HOSTPORT:GUESTPORT",
                        help="carry host 127.0.0.1:HOSTPORT to the guest's GUESTPORT "
                             "(repeatable; the first guest's)")
    parser.add_argument("--dns-upstream", metavar="IP[:PORT]",
                        help="where DNS to the .3 address goes (default: resolv.conf's first "
                             "IPv4 nameserver)")
    parser.add_argument("--ipv6", choices=("on", "off"), default="on",
                        help="IPv6 for guests: fec0::/64 by RA, fec0::2 = host ::1 (on)")
    parser.add_argument("--mtu", type=int, default=1500,
                        help="MTU of stream/dgram/TAP wires (1500; 65520 with QEMU's "
                             "virtio-net-pci,host_mtu=65520)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each guest's coming "
                        "and going")
    parser.set_defaults(func=run)


def _slirp_config(args: argparse.Namespace) -> Any:
    from ipaddress import IPv4Network

    from vipernet.slirp.config import SlirpConfig, SlirpConfigError

    options = ",".join([*(f"forward={f}" for f in args.forward),
                        *([f"dns={args.dns_upstream}"] if args.dns_upstream else []),
                        f"ipv6={args.ipv6}", *(["restrict"] if args.restrict else [])])
    parsed = SlirpConfig.from_argument(options)
    try:
        network = IPv4Network(args.net, strict=True)
    except ValueError as exc:
        raise SlirpConfigError(f"bad --net {args.net!r}: {exc}") from None
    return SlirpConfig.for_network(
        network, restrict=parsed.restrict, forwards=parsed.forwards,
        dns_upstream=parsed.dns_upstream, ipv6=parsed.ipv6)


def _open_ports(args: argparse.Namespace, gateway: Any) -> None:
    from vipernet.gateway.ports import PortSpec, is_listener, open_port

    for kind in PORT_OPTIONS:
        for value in getattr(args, kind.replace("-", "_")):
            port = open_port(PortSpec(kind, value), mtu=args.mtu)
            if is_listener(port):
                gateway.add_listener(port)
            else:
                gateway.add_device(port)
            print(f"vipernet gateway: serving --{kind} {value}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from vipernet.errors import UsageError
    from vipernet.gateway import Gateway, GatewayConfig
    from vipernet.link.errors import LinkError

    if not any(getattr(args, kind.replace("-", "_")) for kind in PORT_OPTIONS):
        print("vipernet gateway: give at least one guest port (--qemu-stream, --qemu-dgram, "
              "--tap or --vhost-user)", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    try:
        gateway = Gateway(GatewayConfig(slirp=_slirp_config(args), mtu=args.mtu))
    except UsageError as exc:
        print(f"vipernet gateway: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            _open_ports(args, gateway)
        except (UsageError, LinkError, OSError) as exc:
            print(f"vipernet gateway: {exc}", file=sys.stderr)
            return 1
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, lambda _s, _f: _print_counters(gateway))
        gateway.run(lambda: stopping)
    finally:
        gateway.close()
    return 0


def _print_counters(gateway: Any) -> None:
    for wire, counters in gateway.snapshot().items():
        shown = " ".join(f"{k}={v}" for k, v in sorted(counters.items()))
        print(f"{wire}: {shown}", file=sys.stderr, flush=True)
