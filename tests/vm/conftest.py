"""The guest's base initramfs, built once per test session (a tenth of a second, but shared)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed import require_root
from tests.vm.guest import require_guest
from tests.vm.initramfs import build_initramfs
from tests.vm.kernel import GuestKernel


@pytest.fixture(scope="session")
def guest_kernel() -> GuestKernel:
    require_root()  # /dev/kvm, and the mount namespace of host_resolv_conf
    return require_guest()


@pytest.fixture(scope="session")
def guest_initramfs(guest_kernel: GuestKernel) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vipernet-initramfs-") as workdir:
        yield build_initramfs(Path(workdir), guest_kernel)
