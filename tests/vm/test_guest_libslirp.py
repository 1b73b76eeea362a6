"""The guest rig against QEMU's own user networking (``-netdev user``, i.e. libslirp).

libslirp is the reference every vipernet gateway is measured against, and it proves the rig:
a Debian kernel with busybox gets its lease by DHCP, pings the gateway, resolves a name
through 10.0.2.3, moves payloads both ways with sha256 end to end, opens connections in a
loop, and serves a port the host reaches through ``hostfwd``.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm import guest_scripts as steps
from tests.vm.guest import Guest
from tests.vm.guest_scripts import GATEWAY, GUEST_IP, READY, compose, result
from tests.vm.hostserver import (
    ConnectCounter,
    HashingSink,
    LoopbackDns,
    PayloadHttpServer,
    free_port,
    payload_chunks,
    payload_sha256,
)

pytestmark = pytest.mark.testbed

PAYLOAD = 8 * 1024 * 1024
DNS_NAME = "vm-host.test"
DNS_ADDRESS = "192.0.2.7"  # TEST-NET-1: resolvable here only, reachable nowhere


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vipernet-vm-test-") as path:
        yield Path(path)


def test_the_script_status_and_output_come_back_and_failures_show_the_console(
        guest_initramfs: Path) -> None:
    # shared_memory is vhost-user's memory layout; any backend boots with it.
    with Guest("user,restrict=on", "echo alive; exit 7", initramfs=guest_initramfs,
               shared_memory=True) as guest:
        status, output = guest.wait_exit(timeout=30)
        assert (status, output) == (7, "alive\n")
        assert guest.boot_seconds is not None and not guest.running
        with pytest.raises(AssertionError, match=r"(?s)QEMU ended before.*alive"):
            guest.wait_for("never printed", timeout=5)


def test_dhcp_ping_and_dns_through_libslirp(guest_initramfs: Path, workdir: Path) -> None:
    script = compose(steps.dhcp(), steps.ping(GATEWAY, count=5), steps.resolve(DNS_NAME))
    with LoopbackDns(workdir, {DNS_NAME: DNS_ADDRESS}) as dns, \
            Guest("user", script, initramfs=guest_initramfs,
                  host_resolv_conf=dns.resolv_conf) as guest:
        status, output = guest.wait_exit(timeout=60)
    assert status == 0, output
    lease = result(output, "dhcp")
    assert (lease["ip"], lease["mask"], lease["router"], lease["dns"]) == \
        (GUEST_IP, "24", GATEWAY, "10.0.2.3")
    ping = result(output, "ping")
    assert (ping["sent"], ping["received"]) == ("5", "5")
    assert 0 < ping.number("rtt_avg_ms") < 1000
    assert result(output, "resolve")["address"] == DNS_ADDRESS


def test_payloads_cross_both_ways_with_their_sha256(guest_initramfs: Path) -> None:
    with PayloadHttpServer() as http, HashingSink() as sink:
        script = compose(
            steps.dhcp(),
            steps.download(http.url(PAYLOAD, seed=1)),  # streamed into sha256sum
            steps.download(http.url(PAYLOAD, seed=2), "/tmp/payload"),  # into tmpfs
            steps.upload("/tmp/payload", GATEWAY, sink.port),
        )
        with Guest("user", script, initramfs=guest_initramfs) as guest:
            status, output = guest.wait_exit(timeout=90)
        assert status == 0, output
        streamed, saved = [r for r in steps.parse_results(output) if r.step == "download"]
        for download, seed in ((streamed, 1), (saved, 2)):
            assert (download["bytes"], download["sha256"]) == \
                (str(PAYLOAD), payload_sha256(PAYLOAD, seed))
        assert [t.bytes for t in http.downloads.snapshot()] == [PAYLOAD, PAYLOAD]
        upload = result(output, "upload")
        assert (upload["peer_bytes"], upload["peer_sha256"]) == \
            (str(PAYLOAD), payload_sha256(PAYLOAD, 2))
        [received] = sink.received.snapshot()
        assert (received.bytes, received.sha256) == (PAYLOAD, payload_sha256(PAYLOAD, 2))


def test_connection_loop_reaches_the_host_listener(guest_initramfs: Path) -> None:
    connections = 20
    with ConnectCounter() as counter:
        script = compose(steps.dhcp(), steps.connect_rate(GATEWAY, counter.port, connections))
        with Guest("user", script, initramfs=guest_initramfs) as guest:
            status, output = guest.wait_exit(timeout=60)
        assert status == 0, output
        loop = result(output, "connect")
        assert (loop["count"], loop["failures"]) == (str(connections), "0")
        assert loop.number("seconds") > 0
        assert counter.count == connections


def test_host_reaches_a_guest_server_through_hostfwd(guest_initramfs: Path) -> None:
    host_port, guest_port = free_port(), 8080
    size = 1024 * 1024
    script = compose(steps.dhcp(), steps.serve_sha256(guest_port), steps.say(READY),
                     steps.wait_background())
    with Guest(f"user,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}", script,
               initramfs=guest_initramfs) as guest:
        guest.wait_for(rf"(?m)^{READY}$", timeout=60)
        with socket.create_connection(("127.0.0.1", host_port), timeout=30) as connection:
            for chunk in payload_chunks(size, seed=3):
                connection.sendall(chunk)
            connection.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := connection.recv(4096):
                reply += chunk
        status, output = guest.wait_exit(timeout=30)
    assert status == 0, output
    assert reply.split() == [payload_sha256(size, seed=3).encode(), b"-"]
