"""``vipernet dig NAME``: resolve a name with netd's stub resolver.

    vipernet dig NAME [A|AAAA] [-t A|AAAA] [+short] [--timeout SECONDS]

Prints the A records found (NET_DNS_RESOLVE), or with ``-t AAAA`` the AAAA records
(NET_DNS_RESOLVE_ALL), dig style; ``+short`` prints only the addresses.  Exit status
0 when the name resolved, 1 when it does not exist or the lookup failed, 2 when netd
could not be reached, the name is not a valid host name or the timeout is not positive.

``--timeout`` is the deadline of the whole lookup, every retry and server included (netd
caps it at 60 s): a silent server makes dig fail after that long, not after a fixed
number of tries.  A server that only sends malformed replies fails the lookup at once,
in one line that counts them and says why (exit 1)::

    vipernet dig: x.test: 10.0.2.3 sent 3 malformed replies (compression pointer loop)
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from typing import Any

from vipernet.cli.netd_common import add_socket_option, fail, open_client


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dig", help="resolve a host name through netd",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("words", nargs="+", metavar="NAME [+short]",
                        help="the name to resolve; +short prints the addresses only")
    parser.add_argument("-t", "--type", dest="rdtype", default=None, type=str.upper,
                        choices=("A", "AAAA"), help="the record type (A)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds for the whole lookup, retries included (5; at most 60)")
    add_socket_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = [w for w in args.words if w.startswith("+")]
    names = [w for w in args.words if not w.startswith("+")]
    types = [w.upper() for w in names[1:] if w.upper() in ("A", "AAAA")]  # dig's NAME TYPE
    names = [w for i, w in enumerate(names) if i == 0 or w.upper() not in ("A", "AAAA")]
    rdtype = args.rdtype or (types[-1] if types else "A")
    short = "+short" in options
    unknown = [o for o in options if o != "+short"]
    if unknown or len(names) != 1:
        what = f"unknown option {unknown[0]}" if unknown else "give exactly one NAME"
        print(f"vipernet dig: {what}", file=sys.stderr)
        return 2
    args.name = names[0]
    if not args.timeout > 0:  # also NaN; 0 would mean "no timeout" on the wire
        print(f"vipernet dig: --timeout must be positive, not {args.timeout:g}",
              file=sys.stderr)
        return 2
    try:
        client = open_client(args)
    except OSError as exc:
        return fail("vipernet dig", exc)
    from vipernet.netd.protocol import WANT_AAAA

    started = time.monotonic()
    try:
        if rdtype == "AAAA":
            addresses = client.resolve_all(args.name, WANT_AAAA, args.timeout)
        else:
            addresses = client.resolve(args.name, args.timeout)
    except OSError as exc:
        if "netd" in (exc.strerror or "") and exc.errno in (errno.ENOENT, errno.ECONNREFUSED,
                                                            errno.ECONNRESET):
            return fail("vipernet dig", exc)
        reason = {errno.ENOENT: "NXDOMAIN (name not found)",
                  errno.ETIMEDOUT: "timed out, no server answered"}.get(
            exc.errno or 0, exc.strerror or str(exc))
        # netd's texts start with the name ("x.test: malformed reply ..."): say it once.
        reason = reason.removeprefix(f"{args.name.rstrip('.').lower()}: ")
        print(f"vipernet dig: {args.name!r}: {reason}" if exc.errno == errno.EINVAL
              else f"vipernet dig: {args.name}: {reason}", file=sys.stderr)
        return 2 if exc.errno == errno.EINVAL else 1  # EINVAL: a name DNS cannot carry
    elapsed = (time.monotonic() - started) * 1000
    if short:
        for ip in addresses:
            print(ip)
        return 0
    fqdn = args.name if args.name.endswith(".") else args.name + "."
    print(f";; QUESTION SECTION:\n;{fqdn}\t\tIN\t{rdtype}\n")
    print(";; ANSWER SECTION:")
    for ip in addresses:
        print(f"{fqdn}\t\tIN\t{rdtype}\t{ip}")
    print(f"\n;; Query time: {elapsed:.0f} msec")
    print(";; SERVER: netd's resolver")
    return 0
