"""A real QEMU guest (virtio-net) on ``vipernet gateway``, over each QEMU backend.

For ``-netdev stream``, ``-netdev dgram`` and ``-netdev vhost-user`` alike, the guest (a
Debian kernel with busybox, :mod:`tests.vm.guest`) gets 10.0.2.15 by DHCP, resolves a name
through 10.0.2.3 (relayed to a dnsmasq on host loopback), pings 10.0.2.2, downloads 100 MB
from an HTTP server on host loopback and uploads it back to a hashing sink (sha256 end to
end, both ways), then serves a port the host reaches through the gateway's
``--forward``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.gateway_proc import BACKENDS, GatewayProcess
from tests.vm import guest_scripts as steps
from tests.vm.guest import Guest
from tests.vm.guest_scripts import GATEWAY, GUEST_IP, READY, compose, result
from tests.vm.hostserver import (
    HashingSink,
    LoopbackDns,
    PayloadHttpServer,
    free_port,
    payload_chunks,
    payload_sha256,
)

pytestmark = pytest.mark.testbed

PAYLOAD = 100 * 1024 * 1024
SERVED = 1024 * 1024
DNS_NAME, DNS_ADDRESS = "vm-gateway.test", "192.0.2.8"


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDns]:
    with LoopbackDns(tmp_path_factory.mktemp("dns"), {DNS_NAME: DNS_ADDRESS},
                     address="127.83.0.55") as server:
        yield server


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_guest_on_the_gateway_does_everything_a_libslirp_guest_does(
        backend: str, guest_initramfs: Path, dns: LoopbackDns, tmp_path: Path) -> None:
    host_port, guest_port = free_port(), 8080
    with PayloadHttpServer() as http, HashingSink() as sink:
        gateway = GatewayProcess(backend, tmp_path, "--forward", f"tcp:{host_port}:{guest_port}",
                                 "--dns-upstream", f"{dns.address}:53")
        try:
            script = compose(
                steps.dhcp(), steps.resolve(DNS_NAME), steps.ping(GATEWAY, count=5),
                steps.download(http.url(PAYLOAD, seed=4), "/tmp/payload"),
                steps.upload("/tmp/payload", GATEWAY, sink.port), "rm /tmp/payload",
                steps.serve_sha256(guest_port), steps.say(READY), steps.wait_background())
            with Guest(script=script, initramfs=guest_initramfs, mem_mb=768, timeout=240,
                       **gateway.guest_args()) as guest:
                guest.wait_for(rf"(?m)^{READY}$")
                reply = _send_through_forward(host_port)
                status, output = guest.wait_exit(timeout=30)
        finally:
            gateway.close()
        assert status == 0, output
        lease = result(output, "dhcp")
        assert (lease["ip"], lease["router"], lease["dns"]) == (GUEST_IP, GATEWAY, "10.0.2.3")
        assert result(output, "resolve")["address"] == DNS_ADDRESS
        ping = result(output, "ping")
        assert (ping["sent"], ping["received"]) == ("5", "5")
        download = result(output, "download")
        assert (download["bytes"], download["sha256"]) == \
            (str(PAYLOAD), payload_sha256(PAYLOAD, 4))
        [received] = sink.received.snapshot()
        assert (received.bytes, received.sha256) == (PAYLOAD, payload_sha256(PAYLOAD, 4))
        assert reply.split() == [payload_sha256(SERVED, seed=5).encode(), b"-"]


def _send_through_forward(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        for chunk in payload_chunks(SERVED, seed=5):
            connection.sendall(chunk)
        connection.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := connection.recv(4096):
            reply += chunk
    return reply
