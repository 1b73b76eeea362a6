"""Interop with real QEMU: a Linux guest's virtio-net-pci NIC on our vhost-user back-end.

The guest (``tests.vm.guest``: Debian's kernel, busybox) boots with ``-netdev vhost-user``
on a socket our :class:`VhostUserDevice` listens at, and shared guest memory.  On our side a
vipernet :class:`Stack` at 10.0.2.2, driven by a :class:`Runtime` on the device, answers
ARP and ping and serves TCP: the guest pings it, downloads a payload over HTTP from a stack
listener and uploads the same bytes to another, with byte counts and sha256 checked at
both ends.  The negotiated features and the measured rates are printed (``pytest -s``).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from tests.stack_calls import StackCalls
from tests.testbed import require_root
from tests.vm import guest_scripts as steps
from tests.vm.guest import Guest, accelerator, require_guest
from tests.vm.guest_scripts import GATEWAY, GUEST_IP, compose, result
from tests.vm.initramfs import build_initramfs
from vipernet.link.vhost_user import Feature, VhostUserDevice, feature_names
from vipernet.runtime import Runtime
from vipernet.stack import Stack, StackConfig

pytestmark = pytest.mark.testbed

GATEWAY_MAC = bytes.fromhex("525400123502")
HTTP_PORT, SINK_PORT = 8080, 9000
PAYLOAD = 8 * 1024 * 1024
SEED = 11


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def initramfs() -> Iterator[Path]:
    require_root()
    kernel = require_guest()
    with tempfile.TemporaryDirectory(prefix="vipernet-vu-initramfs-") as workdir:
        yield build_initramfs(Path(workdir), kernel)


class StackSide(StackCalls):
    """The stack at 10.0.2.2 on the device, with blocking helpers for server threads."""

    def __init__(self, device: VhostUserDevice) -> None:
        config = StackConfig(mac=GATEWAY_MAC, ip=IPv4Interface(f"{GATEWAY}/24"), gateway=None,
                             dns=())
        self.stack = Stack(config, capabilities=device.capabilities, now=time.monotonic(),
                           rng=random.Random(1))
        self.runtime = Runtime(self.stack, device)
        self.runtime.start_thread("vhost-user-test")
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def listen(self, port: int) -> Any:
        def make() -> Any:
            sock = self.stack.tcp_socket()
            sock.bind(("", port))
            sock.listen(4)
            return sock
        return self.call(make)

    def serve(self, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self.errors.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def http_server(self, port: int, body: bytes, timeout: float) -> None:
        """Answer one GET with ``body``."""
        listener = self.listen(port)

        def run() -> None:
            conn = self.accept(listener, timeout)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = self.recv_some(conn, timeout)
                assert chunk, "the client closed before its request ended"
                request += chunk
            assert request.startswith(b"GET /"), request[:80]
            head = (f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            self.sendall(conn, head + body, timeout)
            self.call(lambda: conn.close(self.now()))
        self.serve(run)

    def hashing_sink(self, port: int, timeout: float, received: list[tuple[int, str]]) -> None:
        """Hash one connection's bytes to EOF and answer ``<bytes> <sha256>``."""
        listener = self.listen(port)

        def run() -> None:
            conn = self.accept(listener, timeout)
            digest, count = hashlib.sha256(), 0
            while chunk := self.recv_some(conn, timeout):
                digest.update(chunk)
                count += len(chunk)
            received.append((count, digest.hexdigest()))
            self.sendall(conn, f"{count} {digest.hexdigest()}\n".encode(), timeout)
            self.call(lambda: conn.shutdown(1, self.now()))
            self.call(lambda: conn.close(self.now()))
        self.serve(run)

    def close(self) -> None:
        self.runtime.close()


def device_args() -> str:
    """QEMU 7.2 under TCG (no irqfd) crashes in vhost_net_start while it routes MSI-X
    vectors to a vhost-user device's call eventfds (a NULL dereference under
    msix_set_vector_notifiers); with legacy INTx interrupts it relays them fine."""
    return "vectors=0" if accelerator() == "tcg" else ""


# the stack starts once the driver is up, a moment before the script runs: wait for it
WAIT_FOR_STACK = f"for i in $(seq 20); do ping -c 1 -W 1 {GATEWAY} >/dev/null 2>&1 && break; done"
# A device reset from inside the guest: the driver lets go of the NIC and takes it again,
# so QEMU stops both rings (GET_VRING_BASE) and sets them up afresh.
RESET_DEVICE = (
    "vn_dev=$(basename $(readlink /sys/class/net/eth0/device))\n"
    "echo $vn_dev >/sys/bus/virtio/drivers/virtio_net/unbind\n"
    "echo $vn_dev >/sys/bus/virtio/drivers/virtio_net/bind\n"
    "for i in $(seq 50); do ip link set eth0 up 2>/dev/null && break; sleep 0.1; done\n"
    f"ip addr add {GUEST_IP}/24 dev eth0")


def guest_script(*, reset: bool = False) -> str:
    return compose(
        f"ip addr add {GUEST_IP}/24 dev eth0",
        WAIT_FOR_STACK,
        *([f"ping -c 2 {GATEWAY} >/dev/null", RESET_DEVICE, WAIT_FOR_STACK] if reset else []),
        steps.ping(GATEWAY, count=3),
        steps.download(f"http://{GATEWAY}:{HTTP_PORT}/payload", "/tmp/payload"),
        steps.upload("/tmp/payload", GATEWAY, SINK_PORT),
        'echo "RESULT nic rx_errors=$(cat /sys/class/net/eth0/statistics/rx_errors)'
        ' rx_dropped=$(cat /sys/class/net/eth0/statistics/rx_dropped)'
        ' tx_errors=$(cat /sys/class/net/eth0/statistics/tx_errors)"',
    )


class Run:
    """What one guest run left: its output, the negotiated features, the device counters."""

    def __init__(self, output: str, negotiated: int, counters: dict[str, int], accel: str,
                 received: list[tuple[int, str]]) -> None:
        self.output, self.negotiated, self.counters = output, negotiated, counters
        self.accel, self.received = accel, received


def run_guest(initramfs: Path, script: str, body: bytes, *, extra_device_args: str = "") -> Run:
    """Boot the guest on a listening device, serve ``body`` and a sink from the stack."""
    with tempfile.TemporaryDirectory(prefix="vipernet-vu-") as workdir:
        path = os.path.join(workdir, "vhost.sock")
        device = VhostUserDevice.listen(path)
        side: StackSide | None = None
        try:
            args = ",".join(a for a in (device_args(), extra_device_args) if a)
            with Guest("vhost-user,chardev=vu0", script, initramfs=initramfs,
                       shared_memory=True, timeout=60, device_args=args,
                       extra_qemu=["-chardev", f"socket,id=vu0,path={path}"]) as guest:
                assert device.wait_ready(60 * guest.time_scale), guest.output[-2000:]
                negotiated = device.negotiated
                assert negotiated is not None
                side = StackSide(device)
                limit = 60 * guest.time_scale
                received: list[tuple[int, str]] = []
                side.http_server(HTTP_PORT, body, limit)
                side.hashing_sink(SINK_PORT, limit, received)
                status, output = guest.wait_exit(timeout=120)
                for thread in side.threads:
                    thread.join(timeout=10)
            assert not side.errors, side.errors
            assert status == 0, output
        finally:
            if side is not None:
                side.close()
            counters = device.counters.as_dict()
            device.close()
    return Run(output, negotiated, counters, guest.accel, received)


def check_transfers(run: Run, size: int, expected: str) -> None:
    output = run.output
    ping = result(output, "ping")
    assert (ping["sent"], ping["received"]) == ("3", "3")
    download = result(output, "download")
    assert (download["bytes"], download["sha256"]) == (str(size), expected)
    upload = result(output, "upload")
    assert (upload["peer_bytes"], upload["peer_sha256"]) == (str(size), expected)
    assert run.received == [(size, expected)]
    nic = result(output, "nic")
    assert (nic["rx_errors"], nic["tx_errors"]) == ("0", "0"), nic
    assert run.counters["bad_chains"] == 0 and run.counters["protocol_errors"] == 0


def test_guest_pings_and_moves_payloads_through_the_vhost_user_device(initramfs: Path) -> None:
    body = payload(PAYLOAD, SEED)
    expected = hashlib.sha256(body).hexdigest()
    run = run_guest(initramfs, guest_script(), body)
    check_transfers(run, PAYLOAD, expected)
    negotiated, output, counters = run.negotiated, run.output, run.counters
    ping = result(output, "ping")
    assert (ping["sent"], ping["received"]) == ("3", "3")
    # what a Linux guest takes of what we offer
    for feature in (Feature.VERSION_1, Feature.MRG_RXBUF, Feature.RING_EVENT_IDX,
                    Feature.CSUM, Feature.GUEST_CSUM, Feature.HOST_TSO4, Feature.GUEST_TSO4):
        assert negotiated & feature, feature_names(negotiated)
    megabits = {name: PAYLOAD * 8 / 1e6 / max(result(output, name).number("seconds"), 0.01)
                for name in ("download", "upload")}
    print(f"\nvhost-user: negotiated {' '.join(feature_names(negotiated))}")
    print(f"vhost-user: ping avg {ping['rtt_avg_ms']} ms; guest download "
          f"{megabits['download']:.0f} Mbit/s, upload {megabits['upload']:.0f} Mbit/s "
          f"({run.accel}); counters {counters}")


def test_a_guest_without_offloads_survives_a_device_reset(initramfs: Path) -> None:
    """The guest turns every offload and mergeable buffers down, so the device completes
    checksums and takes frames one buffer each; and it resets the NIC half-way."""
    size = 1024 * 1024
    body = payload(size, SEED + 1)
    offloads_off = ",".join(f"{name}=off" for name in (
        "csum", "guest_csum", "gso", "guest_tso4", "guest_tso6", "host_tso4", "host_tso6",
        "mrg_rxbuf"))
    run = run_guest(initramfs, guest_script(reset=True), body, extra_device_args=offloads_off)
    check_transfers(run, size, hashlib.sha256(body).hexdigest())
    for feature in (Feature.MRG_RXBUF, Feature.CSUM, Feature.GUEST_CSUM, Feature.HOST_TSO4,
                    Feature.GUEST_TSO4):
        assert not run.negotiated & feature, feature_names(run.negotiated)
    # the reset stopped and restarted both rings on the same connection
    assert run.counters["sessions"] == 1 and run.counters["ring_stops"] >= 2, run.counters
