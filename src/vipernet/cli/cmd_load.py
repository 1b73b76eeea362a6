"""``vipernet load``: N virtual hosts each open C TCP connections to a target.

    vipernet load --link tap:NAME[@NETNS] --target IP:PORT [--hosts N[@FIRST[/PREFIX]]]
                  [--connections C] [--pattern connect|http-get] [--duration S|--count K]

The hosts (``vipernet.vhosts``) run in this process on the given link, each with its own
MAC and IP (from 10.0.2.100/16 unless ``--hosts`` says otherwise), one TCP stack each.
A progress line on stderr shows connections/s, open connections and errors; the summary
gives connections/s, connect and request latency p50/p99 and the errors by kind
(``--json``: the summary as one JSON object on stdout).  Exit status 0 if every
connection succeeded, 1 if some failed, 2 on a usage or link error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DEFAULT_FIRST = "10.0.2.100"
DEFAULT_PREFIX = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("load", help="open many TCP connections from virtual hosts",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", required=True,
                        help="the wire the hosts sit on: tap:NAME[@NETNS], user, "
                             "qemu-stream:PATH (as netd --link)")
    parser.add_argument("--target", required=True, metavar="IP:PORT",
                        help="the server every connection goes to")
    parser.add_argument("--hosts", default="1", metavar="N[@FIRST[/PREFIX]]|FIRST-LAST",
                        help=f"virtual hosts: a count (from {DEFAULT_FIRST}/{DEFAULT_PREFIX}), "
                             "COUNT@FIRST[/PREFIX] or FIRST-LAST[/PREFIX] (1)")
    parser.add_argument("--connections", type=int, default=1, metavar="C",
                        help="connections each host keeps open at once (1)")
    parser.add_argument("--pattern", choices=("connect", "http-get"), default="connect",
                        help="connect: handshake and close; http-get: one GET / per "
                             "connection, response read to the end (connect)")
    parser.add_argument("--path", default="/", help="the path http-get asks for (/)")
    end = parser.add_mutually_exclusive_group()
    end.add_argument("--duration", type=float, metavar="S",
                     help="keep reconnecting for S seconds")
    end.add_argument("--count", type=int, metavar="K",
                     help="start K connections in all (default: one per host x C)")
    parser.add_argument("--gateway", help="the hosts' gateway, for an off-link target")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds a connect, and then a request, may take (10)")
    parser.add_argument("--max-connecting", type=int, default=256, metavar="M",
                        help="handshakes under way at once (256)")
    parser.add_argument("--linger", type=float, default=0.0, metavar="S",
                        help="after the summary, keep the hosts up S seconds more "
                             "(answering ARP and ping: to look at them from outside)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def _target(text: str) -> tuple[str, int]:
    from ipaddress import IPv4Address

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad --target {text!r}: want IP:PORT")
    try:
        return str(IPv4Address(host)), int(port)
    except ValueError:
        raise ValueError(f"bad --target {text!r}: {host!r} is not an IPv4 address") from None


def _hosts(text: str) -> Any:
    from vipernet.vhosts import parse_host_range

    spec = text.strip()
    if spec.isdigit():
        spec = f"{spec}@{DEFAULT_FIRST}"
    return parse_host_range(spec, default_prefixlen=DEFAULT_PREFIX)


class Progress:
    """The live line on stderr: rewritten in place on a terminal, a line a second else."""

    def __init__(self, stream: Any, started: float) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.5 if self.tty else 1.0
        self.next_at = started + self.interval
        self.started = started
        self.last_completed = 0
        self.last_at = started

    def maybe(self, stats: Any, now: float, *, final: bool = False) -> None:
        if now < self.next_at and not final:
            return
        rate = (stats.completed - self.last_completed) / max(now - self.last_at, 1e-9)
        self.last_completed, self.last_at = stats.completed, now
        self.next_at = now + self.interval
        failed = sum(stats.errors.values())
        line = (f"[{now - self.started:6.1f}s] {rate:8.1f} conn/s  open {stats.open:6d}  "
                f"done {stats.completed:8d}  errors {failed}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def format_summary(summary: dict[str, Any], hosts: int, connections: int) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} ms"

    lines = [
        f"{summary['completed']} of {summary['started']} connections completed from "
        f"{hosts} hosts x {connections} in {summary['elapsed_s']:.2f} s",
        f"connections/s: {summary['connections_per_s']:.1f}",
        f"connect latency: p50 {ms(summary['connect_ms']['p50'])}  "
        f"p99 {ms(summary['connect_ms']['p99'])}  max {ms(summary['connect_ms']['max'])}",
    ]
    if summary["request_ms"]["p50"] is not None:
        lines.append(f"request latency: p50 {ms(summary['request_ms']['p50'])}  "
                     f"p99 {ms(summary['request_ms']['p99'])}  "
                     f"max {ms(summary['request_ms']['max'])}")
    errors = summary["errors"]
    lines.append("errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) or "none"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ipaddress import IPv4Address

    from vipernet.errors import VipernetError
    from vipernet.netd.links import open_link, parse_link
    from vipernet.vhosts import HostsLoop, VirtualHosts
    from vipernet.vhosts.load import LoadPlan, LoadRun

    clock = time.monotonic
    try:
        if args.connections < 1 or args.max_connecting < 1:
            raise ValueError("--connections and --max-connecting must be at least 1")
        if args.count is not None and args.count < 1:
            raise ValueError("--count must be at least 1")
        plan = LoadPlan(target=_target(args.target), connections=args.connections,
                        pattern=args.pattern, count=args.count, duration=args.duration,
                        path=args.path, connect_timeout=args.timeout,
                        request_timeout=args.timeout, max_connecting=args.max_connecting)
        addresses = _hosts(args.hosts)
        gateway = IPv4Address(args.gateway) if args.gateway else None
        device = open_link(parse_link(args.link))
    except (ValueError, VipernetError, OSError) as exc:
        print(f"vipernet load: {exc}", file=sys.stderr)
        return 2
    try:
        now = clock()
        hosts = VirtualHosts(capabilities=device.capabilities, now=now, gateway=gateway)
        hosts.add_range(addresses, now)
        load = LoadRun(hosts, plan, now)
        loop = HostsLoop(hosts, device, clock=clock, on_turn=load.on_turn)
        progress = Progress(sys.stderr, now)
        try:
            while not load.done:
                loop.run_once(0.25)
                progress.maybe(load.stats, clock())
        except KeyboardInterrupt:
            load.stop(clock())
        progress.maybe(load.stats, clock(), final=True)
        summary = load.stats.summary(clock())
        summary["hosts"] = len(hosts)
        summary["counters"] = dict(sorted(hosts.counters.items()))
        if args.json:
            print(json.dumps(summary), flush=True)
        else:
            print(format_summary(summary, len(hosts), args.connections), flush=True)
        _linger(loop, clock, args.linger)
        loop.close()
    finally:
        device.close()
    return 0 if summary["failed"] == 0 and summary["completed"] > 0 else 1


def _linger(loop: Any, clock: Any, seconds: float) -> None:
    """Keep the hosts on the wire a while (closing the TAP flushes the kernel's view)."""
    until = clock() + seconds
    try:
        while clock() < until:
            loop.run_once(min(0.25, max(0.0, until - clock())))
    except KeyboardInterrupt:
        pass
