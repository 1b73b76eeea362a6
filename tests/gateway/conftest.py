"""The guest bed's fixtures (a booted kernel needs its initramfs) for the gateway's VM tests."""

from tests.vm.conftest import guest_initramfs, guest_kernel

__all__ = ["guest_initramfs", "guest_kernel"]
