"""``vipernet info``: netd's interface, addresses, offloads and counters (NET_GET_INFO).

    vipernet info [--json] [--counters]
"""

from __future__ import annotations

import argparse
from typing import Any

from vipernet.cli.netd_common import add_socket_option, print_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("info", help="show netd's interface and configuration",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON")
    parser.add_argument("--counters", action="store_true", help="also list every counter")
    add_socket_option(parser)
    parser.set_defaults(func=run)


def render(info: dict[str, Any], counters: bool = False) -> str:
    offloads = info.get("offloads", {})
    on = {True: "on", False: "off"}
    rows = [
        ("link", f"{info.get('link')} (device {info.get('device')})"),
        ("mac", info.get("mac")),
        ("ipv4", f"{info.get('ip')}/{info.get('prefix')} (netmask {info.get('netmask')})"),
        ("gateway", info.get("gateway") or "none"),
        ("dns", ", ".join(info.get("dns", [])) or "none"),
        ("mtu", info.get("mtu")),
        ("offloads", f"tx-csum {on[bool(offloads.get('tx_csum'))]}, "
                     f"tso {on[bool(offloads.get('tso'))]}, "
                     f"max frame {offloads.get('max_frame')}"),
        ("netd", f"pid {info.get('pid')}, up {info.get('uptime', 0):.1f} s, "
                 f"{info.get('clients')} clients, {info.get('sockets')} sockets"),
    ]
    lines = [f"{name:<10}{value}" for name, value in rows]
    if counters:
        for title in ("counters", "device_counters", "netd_counters"):
            table = info.get(title) or {}
            if table:
                lines.append(f"\n{title.replace('_', ' ')}:")
                lines += [f"  {k:<40}{v}" for k, v in sorted(table.items())]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return print_report(args, "vipernet info", lambda client: client.info(),
                        lambda info: render(info, args.counters))
