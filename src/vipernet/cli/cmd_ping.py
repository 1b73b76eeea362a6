"""``vipernet ping HOST``: ICMP echo through netd, printed like iputils ping.

    vipernet ping [-4|-6] HOST [-c COUNT] [-s SIZE] [-i INTERVAL] [-W TIMEOUT]

An IPv6 address (or ``-6``) pings over IPv6 (ICMPv6 echo, NET_PING6); a link-local
address needs no ``%zone``: netd has one interface.

Exit status 0 if any reply came back, 1 if none did, 2 on an error before sending
(netd not running, unknown host).
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
import time
from typing import Any

from vipernet.cli.netd_common import add_socket_option, fail, open_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ping", help="send ICMP echo requests through netd",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4,
                        help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=6,
                        help="IPv6 only (names resolve to AAAA)")
    # Options named like negative numbers make argparse read "-i -1" as two options; keep
    # "-1" a value (so -i's own check can refuse it) while "-4"/"-6" still match exactly.
    parser._has_negative_number_optionals.clear()
    parser.add_argument("-c", dest="count", type=int, default=None,
                        help="stop after COUNT replies/requests (default: until Ctrl-C)")
    parser.add_argument("-s", dest="size", type=int, default=56, help="payload bytes (56)")
    parser.add_argument("-i", dest="interval", type=float, default=1.0,
                        help="seconds between requests (1)")
    parser.add_argument("-W", dest="timeout", type=float, default=None,
                        help="seconds to wait for each reply (default: max(2, interval))")
    add_socket_option(parser)
    parser.set_defaults(func=run)


def format_rtt(ms: float) -> str:
    """iputils style: 3 significant-ish digits (0.310, 1.23, 12.3, 123)."""
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def statistics(host: str, sent: int, rtts: list[float], errors: int, elapsed_ms: float) -> str:
    received = len(rtts)
    loss = 0 if sent == 0 else round(100 * (sent - received) / sent)
    lines = [f"--- {host} ping statistics ---"]
    err = f", +{errors} errors" if errors else ""
    lines.append(f"{sent} packets transmitted, {received} received{err}, {loss}% packet loss, "
                 f"time {elapsed_ms:.0f}ms")
    if rtts:
        mean = sum(rtts) / received
        mdev = math.sqrt(max(0.0, sum(r * r for r in rtts) / received - mean * mean))
        lines.append(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{mean:.3f}/{max(rtts):.3f}/"
                     f"{mdev:.3f} ms")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from vipernet.netd.protocol import Ping6Reply

    if args.count is not None and args.count < 1:
        print(f"vipernet ping: invalid -c {args.count}: must be at least 1", file=sys.stderr)
        return 2
    limit = 65535 - 8 if args.family == 6 else 65507 - 8
    if args.size < 0 or args.size > limit:
        print(f"vipernet ping: invalid -s {args.size}: out of range 0..{limit}", file=sys.stderr)
        return 2
    if args.interval < 0:
        print("vipernet ping: -i must not be negative", file=sys.stderr)
        return 2
    try:
        client = open_client(args)
        target = _resolve(client, args.host, args.family)
    except LookupError as exc:
        print(f"vipernet ping: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        return fail("vipernet ping", exc)
    wait = args.timeout if args.timeout is not None else max(2.0, args.interval)
    payload = bytes((i + 8) & 0xFF for i in range(args.size))
    ipv6 = ":" in target
    send = client.ping6 if ipv6 else client.ping
    overhead = 48 if ipv6 else 28  # the IP and ICMP headers iputils counts in
    print(f"PING {args.host} ({target}) {args.size}({args.size + overhead}) bytes of data.",
          flush=True)
    sent = errors = 0
    rtts: list[float] = []
    start = time.monotonic()
    seq = 0
    try:
        while args.count is None or seq < args.count:
            seq += 1
            began = time.monotonic()
            sent += 1
            try:
                reply = send(target, seq, payload, wait)
            except TimeoutError:
                pass
            except OSError as exc:
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    errors += 1
                    print(f"From {target} icmp_seq={seq} Destination Host Unreachable",
                          flush=True)
                elif exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET,
                                   errno.EPIPE):
                    return fail("vipernet ping", exc)
                else:
                    errors += 1
                    print(f"From {target} icmp_seq={seq} {exc.strerror or exc}", flush=True)
            else:
                ms = reply.rtt_ns / 1e6
                rtts.append(ms)
                hops = reply.hop_limit if isinstance(reply, Ping6Reply) else reply.ttl
                print(f"{reply.size} bytes from {reply.source}: icmp_seq={reply.seq} "
                      f"ttl={hops} time={format_rtt(ms)} ms", flush=True)
            if args.count is not None and seq >= args.count:
                break
            pause = args.interval - (time.monotonic() - began)
            if pause > 0:
                time.sleep(pause)
    except KeyboardInterrupt:
        print()
    elapsed = (time.monotonic() - start) * 1000
    print()
    print(statistics(args.host, sent, rtts, errors, elapsed), flush=True)
    return 0 if rtts else 1


def _resolve(client: Any, host: str, family: int | None = None) -> str:
    import ipaddress

    try:
        literal = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    else:
        if family is not None and literal.version != family:
            raise LookupError(f"{host}: not an IPv{family} address")
        return str(literal)
    if family == 6:
        raise LookupError(f"{host}: AAAA lookups through netd are not available yet; "
                          "give an IPv6 address")
    try:
        addresses = client.resolve(host, 5.0)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET) \
                and "netd" in (exc.strerror or ""):
            raise
        # netd's texts start with the name ("x.test: name not found"): say it once.
        reason = (exc.strerror or str(exc)).removeprefix(f"{host.rstrip('.').lower()}: ")
        raise LookupError(f"{host}: {reason}") from None
    if not addresses:
        raise LookupError(f"{host}: Name or service not known")
    return str(addresses[0])
