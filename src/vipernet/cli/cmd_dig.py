"""``vipernet dig NAME``: resolve a name with netd's stub resolver.

    vipernet dig NAME [A|AAAA] [-t A|AAAA] [+short] [--timeout SECONDS] [--mdns]

Prints the A records found (NET_DNS_RESOLVE), or with ``-t AAAA`` the AAAA records
(NET_DNS_RESOLVE_ALL), dig style; ``+short`` prints only the addresses.  Exit status
0 when the name resolved, 1 when it does not exist or the lookup failed, 2 when netd
could not be reached, the name is not a valid host name or the timeout is not positive.

``--timeout`` is the deadline of the whole lookup, every retry and server included (netd
caps it at 60 s): a silent server makes dig fail after that long, not after a fixed
number of tries.  A server that only sends malformed replies fails the lookup at once,
in one line that counts them and says why (exit 1)::

    vipernet dig: x.test: 10.0.2.3 sent 3 malformed replies (compression pointer loop)

``--mdns`` asks the link instead (RFC 6762): one query for NAME to 224.0.0.251:5353 (TTL
255) from a stack UDP socket on an ephemeral port, with the question's QU bit set, so responders
answer by unicast to that port (5.4; a query from a port other than 5353 is answered so
anyway, 6.7).  The first reply holding records for NAME is printed; none within
``--timeout`` is exit 1.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import struct
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
    parser.add_argument("--mdns", action="store_true",
                        help="ask the link by multicast DNS (224.0.0.251:5353) instead")
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
    if args.mdns:
        return _mdns(client, args.name, rdtype, short, args.timeout)
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


MDNS_GROUP = ("224.0.0.251", 5353)
_QU = 0x8000  # the question class's top bit: "unicast response, please" (RFC 6762 5.4)
_TYPES = {"A": (1, 4, ipaddress.IPv4Address), "AAAA": (28, 16, ipaddress.IPv6Address)}


def mdns_query(name: str, rdtype: str) -> bytes:
    """A one-shot mDNS query: ID 0, no flags, one QU question (RFC 6762 18)."""
    import dns.name

    qtype = _TYPES[rdtype][0]
    wire = dns.name.from_text(name).to_wire() or b""  # no compression table: always bytes
    return struct.pack("!6H", 0, 0, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, _QU | 1)


def mdns_answers(reply: bytes, name: str, rdtype: str) -> list[str]:
    """The addresses of type ``rdtype`` for ``name`` in a response (any section: RFC 6762
    6 lets a responder put them in additionals); [] for anything that does not parse or
    is not a response.  The class is IN with the cache-flush bit (0x8001) or plain IN."""
    import dns.exception
    import dns.message
    import dns.name

    qtype, size, kind = _TYPES[rdtype]
    try:
        message = dns.message.from_wire(reply, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return []
    if not message.flags & 0x8000:  # QR: another querier's question, not an answer
        return []
    wanted = dns.name.from_text(name)
    found = []
    for rrset in (*message.answer, *message.additional):
        if rrset.name != wanted or rrset.rdtype != qtype or rrset.rdclass & 0x7FFF != 1:
            continue
        for rdata in rrset:
            raw = getattr(rdata, "data", None)
            if raw is None:  # a class dnspython knows (plain IN): its own text
                found.append(rdata.to_text())
            elif len(raw) == size:
                found.append(str(kind(raw)))
    return found


def _mdns(client: Any, name: str, rdtype: str, short: bool, timeout: float) -> int:
    from vipernet import socket as vsocket

    started = time.monotonic()
    deadline = started + timeout
    sock = vsocket.socket(vsocket.AF_INET, vsocket.SOCK_DGRAM, client=client)
    try:
        sock.bind(("0.0.0.0", 0))
        # RFC 6762 11 wants 255 on mDNS packets; 224.0.0.251 is link-local anyway.
        sock.setsockopt(vsocket.IPPROTO_IP, vsocket.IP_MULTICAST_TTL, 255)
        sock.sendto(mdns_query(name, rdtype), MDNS_GROUP)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"vipernet dig: {name}: no mDNS answer within {timeout:g} s",
                      file=sys.stderr)
                return 1
            sock.settimeout(left)
            try:
                reply, source = sock.recvfrom(9000)
            except TimeoutError:
                continue
            addresses = mdns_answers(reply, name, rdtype)
            if addresses:
                break
    except OSError as exc:
        return fail("vipernet dig", exc)
    finally:
        sock.close()
    if short:
        for ip in addresses:
            print(ip)
        return 0
    fqdn = name if name.endswith(".") else name + "."
    print(f";; QUESTION SECTION:\n;{fqdn}\t\tIN\t{rdtype}\n")
    print(";; ANSWER SECTION:")
    for ip in addresses:
        print(f"{fqdn}\t\tIN\t{rdtype}\t{ip}")
    print(f"\n;; Query time: {(time.monotonic() - started) * 1000:.0f} msec")
    print(f";; SERVER: {source[0]}#{source[1]} (mDNS, {MDNS_GROUP[0]}#{MDNS_GROUP[1]})")
    return 0
