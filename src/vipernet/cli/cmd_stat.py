"""``vipernet stat``: netd's socket table, like ``ss`` (NET STAT extension).

    vipernet stat [-i] [--json]

One row per socket: netd id, owning client (and its pid), kind, local and remote address,
state, receive/send queue bytes, parked requests, STALLED: seconds a connection that owes
something (unacknowledged data, a hole, an ACK) has made no progress (or ``-``), FD: whether
its bytes flow through a descriptor (netd's fd data plane), and the owning program's
command line.  ``-i`` adds, under each TCP connection, what ``ss -ti`` shows: smoothed RTT,
RTO and its backoff, cwnd and ssthresh, retransmissions, bytes in flight, the windows each
way, out-of-order and unread bytes, and whether loss recovery is under way.
"""

from __future__ import annotations

import argparse
from typing import Any

from vipernet.cli.netd_common import add_socket_option, print_report

COLUMNS = (("ID", "id", 4), ("CLIENT", "client", 6), ("PID", "pid", 7), ("KIND", "kind", 5),
           ("LOCAL", "local", 21), ("REMOTE", "remote", 21), ("STATE", "state", 12),
           ("RECV-Q", "recv_queue", 7), ("SEND-Q", "send_queue", 7), ("PARKED", "waiting", 6),
           ("STALLED", "stalled", 7), ("FD", "fd", 3), ("COMMAND", "command", 0))


COMMAND_WIDTH = 40  # the command line is cut here in the table (--json has it whole)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("stat", help="list netd's sockets, like ss",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON")
    parser.add_argument("-i", "--info", action="store_true",
                        help="TCP internals under each connection (srtt, cwnd, ...), like ss -ti")
    add_socket_option(parser)
    parser.set_defaults(func=run)


def tcp_info(tcp: dict[str, Any]) -> str:
    """One ``ss -ti``-style line of a connection's TCP state."""
    srtt = tcp.get("srtt_ms")
    parts = [f"srtt:{'-' if srtt is None else srtt}ms",
             f"rto:{tcp.get('rto_ms')}ms", f"backoff:{tcp.get('backoff')}",
             f"cwnd:{tcp.get('cwnd')}", f"ssthresh:{tcp.get('ssthresh')}",
             f"retrans:{tcp.get('retransmits')}",
             f"unacked:{int(tcp.get('snd_nxt', 0)) - int(tcp.get('snd_una', 0))}",
             f"snd_wnd:{tcp.get('snd_wnd')}", f"rcv_wnd:{tcp.get('rcv_wnd')}",
             f"ooo:{tcp.get('out_of_order')}", f"unread:{tcp.get('unread')}"]
    if tcp.get("in_recovery"):
        parts.append("recovery")
    return "\t " + " ".join(parts)


def render(report: dict[str, Any], *, info: bool = False) -> str:
    header = " ".join(f"{title:<{width}}" for title, _, width in COLUMNS).rstrip()
    lines = [header]
    for row in report.get("sockets", []):
        cells = []
        for _, key, width in COLUMNS:
            value = row.get(key)
            if key == "fd":
                value = "fd" if value else "-"
            elif key == "command" and value:
                value = str(value)[:COMMAND_WIDTH]
            blank = "-" if key in ("stalled", "command") else "*"
            cells.append(f"{blank if value is None else value!s:<{width}}")
        lines.append(" ".join(cells).rstrip())
        if info and isinstance(row.get("tcp"), dict):
            lines.append(tcp_info(row["tcp"]))
    clients = report.get("clients", [])
    lines.append(f"{len(report.get('sockets', []))} sockets, {len(clients)} clients")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return print_report(args, "vipernet stat", lambda client: client.stat(),
                        lambda report: render(report, info=args.info))
