"""Shell the guest runs: the udhcpc lease script and measuring steps that print RESULT lines.

A guest script is :data:`PRELUDE` (shell functions, busybox ash) followed by steps; build one
with :func:`compose` and the step helpers below, which quote their arguments::

    script = compose(dhcp(), ping("10.0.2.2", count=5), download(url, "/tmp/blob"),
                     upload("/tmp/blob", "10.0.2.2", sink.port))

Each measuring step prints one machine-readable line, ``RESULT <step> key=value ...``, which
:func:`parse_results` turns into :class:`Result` objects::

    RESULT dhcp ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3
    RESULT ping host=10.0.2.2 sent=20 received=20 rtt_min_ms=0.2 rtt_avg_ms=0.3 rtt_max_ms=0.5
    RESULT download bytes=8388608 seconds=0.12 sha256=<hex>
    RESULT upload bytes=8388608 seconds=0.10 peer_bytes=8388608 peer_sha256=<hex>
    RESULT connect count=50 failures=0 seconds=0.40
    RESULT resolve name=vm-host.test address=192.0.2.7

``upload`` reports the size of the file it sent and what the host sink says it received; the
file's hash is known already (from the ``download`` that made it), and hashing it again would
cost a TCG guest seconds per 100 MB.  Uploads go through ``nc``, not ``wget --post-file``:
busybox's wget reads that file as a C string and sends only the bytes before its first NUL.

Times come from /proc/uptime, whose 10 ms resolution is plenty for transfers of megabytes
(busybox's ``date`` has no ``%N``).  ``download`` to a file times the transfer alone and
hashes afterwards; without a file the bytes stream through ``tee`` and ``sha256sum``, whose
cost the time includes (under TCG that makes it CPU-bound: use a file to measure the network).
``connect_rate`` starts one busybox ``nc`` per connection, so its figure includes a fork and
exec per connection, the same in every run it is compared with.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

GATEWAY = "10.0.2.2"  # the host, as QEMU's user networking (and vipernet's gateway) lays out
DNS_SERVER = "10.0.2.3"
GUEST_IP = "10.0.2.15"
UDHCPC_SCRIPT_PATH = "/etc/udhcpc.script"
READY = "READY"

# udhcpc runs this with $1 = deconfig | bound | renew | nak | leasefail and the lease in
# variables: $ip, $mask (a prefix length), $router and $dns (space-separated lists).
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do
        ip route replace default via "$gateway" dev "$interface"
        break
    done
    : >/etc/resolv.conf
    for server in $dns; do
        echo "nameserver $server" >>/etc/resolv.conf
    done
    routers=$(echo $router | tr ' ' ',')
    servers=$(echo $dns | tr ' ' ',')
    echo "RESULT dhcp ip=$ip mask=${mask:-24} router=${routers:-none} dns=${servers:-none}"
    ;;
esac
exit 0
"""

PRELUDE = r"""
vn_now() { read -r vn_up _ </proc/uptime; echo "$vn_up"; }
vn_seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
vn_result() { echo "RESULT $*"; }

vn_dhcp() {
    udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /etc/udhcpc.script
}

vn_ping() {  # host count interval
    vn_out=$(ping -c "$2" -i "$3" "$1"); vn_rc=$?
    echo "$vn_out" | awk -v host="$1" '
        /packets transmitted/ { sent = $1; received = $4 }
        /round-trip/ { split($4, t, "/") }
        END {
            printf "RESULT ping host=%s sent=%d received=%d", host, sent, received
            printf " rtt_min_ms=%s rtt_avg_ms=%s rtt_max_ms=%s\n", t[1] == "" ? "none" : t[1],
                   t[2] == "" ? "none" : t[2], t[3] == "" ? "none" : t[3]
        }'
    return $vn_rc
}

vn_download() {  # url [file]
    vn_start=$(vn_now)
    if [ -n "$2" ]; then
        wget -q -O "$2" "$1" || return 1
        vn_end=$(vn_now)
        vn_bytes=$(wc -c <"$2")
        vn_sum=$(sha256sum "$2")
    else
        vn_fifo=/tmp/.vn_download.$$
        mkfifo "$vn_fifo"
        sha256sum <"$vn_fifo" >"$vn_fifo.sum" &
        vn_hasher=$!
        vn_bytes=$(set -o pipefail; wget -q -O - "$1" | tee "$vn_fifo" | wc -c) || {
            wait "$vn_hasher"; rm -f "$vn_fifo" "$vn_fifo.sum"; return 1; }
        wait "$vn_hasher"
        vn_end=$(vn_now)
        vn_sum=$(cat "$vn_fifo.sum")
        rm -f "$vn_fifo" "$vn_fifo.sum"
    fi
    vn_result download bytes="$vn_bytes" seconds="$(vn_seconds "$vn_start" "$vn_end")" \
        sha256="${vn_sum%% *}"
}

vn_upload() {  # file host port: the host's sink answers "<bytes> <sha256>" after our EOF
    vn_bytes=$(wc -c <"$1")
    vn_start=$(vn_now)
    vn_reply=$(nc "$2" "$3" <"$1") || return 1
    vn_end=$(vn_now)
    set -- $vn_reply
    vn_result upload bytes="$vn_bytes" seconds="$(vn_seconds "$vn_start" "$vn_end")" \
        peer_bytes="${1:-none}" peer_sha256="${2:-none}"
}

vn_resolve() {  # name [server]: the first A record
    vn_out=$(nslookup -type=a "$1" ${2:+"$2"}) || { echo "$vn_out"; return 1; }
    echo "$vn_out" | awk -v name="$1" '
        /^Name:/ { found = 1 }
        found && /^Address:/ { print "RESULT resolve name=" name " address=" $2; exit }'
}

vn_connect_rate() {  # host port count
    vn_i=0; vn_failures=0
    vn_start=$(vn_now)
    while [ "$vn_i" -lt "$3" ]; do
        nc -w 5 "$1" "$2" </dev/null >/dev/null 2>&1 || vn_failures=$((vn_failures + 1))
        vn_i=$((vn_i + 1))
    done
    vn_end=$(vn_now)
    vn_result connect count="$3" failures="$vn_failures" \
        seconds="$(vn_seconds "$vn_start" "$vn_end")"
}

vn_wait_listening() {  # port [tries of 0.1 s]: returns once something listens on TCP port
    vn_i=0
    while ! netstat -ltn | grep -q ":$1 "; do
        vn_i=$((vn_i + 1))
        [ "$vn_i" -lt "${2:-100}" ] || return 1
        sleep 0.1
    done
}

vn_serve_sha256() {  # port: hashes one connection's bytes and answers the hash to it
    nc -l -p "$1" -e sha256sum &
    vn_wait_listening "$1"
}
"""


def _quote(*args: object) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in args)


def compose(*steps: str, exit_on_error: bool = True) -> str:
    """A whole guest script: the prelude's functions, then ``steps`` in order.

    With ``exit_on_error`` the first failing step ends the script with its status (which the
    guest reports as its exit status)."""
    head = "set -e\n" if exit_on_error else ""
    return PRELUDE + "\n" + head + "\n".join(steps) + "\n"


def dhcp() -> str:
    return "vn_dhcp"


def ping(host: str = GATEWAY, *, count: int = 20, interval: float = 0.2) -> str:
    return "vn_ping " + _quote(host, count, interval)


def download(url: str, path: str | None = None) -> str:
    return "vn_download " + _quote(url, *([path] if path else []))


def upload(path: str, host: str, port: int) -> str:
    return "vn_upload " + _quote(path, host, port)


def resolve(name: str, server: str | None = None) -> str:
    """Looks ``name`` up (A) through ``server``, or the resolv.conf DHCP wrote."""
    return "vn_resolve " + _quote(name, *([server] if server else []))


def connect_rate(host: str, port: int, count: int) -> str:
    return "vn_connect_rate " + _quote(host, port, count)


def serve_sha256(port: int) -> str:
    """Listen on ``port`` in the background for one connection, hash its bytes and answer
    ``<sha256>  -``; returns once listening (follow it with :func:`say` (READY))."""
    return "vn_serve_sha256 " + _quote(port)


def say(text: str) -> str:
    return "echo " + _quote(text)


def wait_background() -> str:
    """Waits for the steps started in the background (e.g. :func:`serve_sha256`)."""
    return "wait"


@dataclass(frozen=True)
class Result:
    step: str
    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def number(self, key: str) -> float:
        return float(self.values[key])


def parse_results(output: str) -> list[Result]:
    """Every ``RESULT`` line in ``output``, in order (other lines are ignored)."""
    results = []
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "RESULT":
            values = dict(word.partition("=")[::2] for word in words[2:] if "=" in word)
            results.append(Result(words[1], values))
    return results


def result(output: str, step: str) -> Result:
    """The one RESULT line of ``step`` in ``output`` (AssertionError if none or several)."""
    found = [r for r in parse_results(output) if r.step == step]
    assert len(found) == 1, f"expected one RESULT {step} line, found {len(found)}:\n{output}"
    return found[0]
