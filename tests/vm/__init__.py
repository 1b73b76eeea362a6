"""A real Linux guest under QEMU, its virtio-net NIC on any -netdev, driven by a script.

guest.py is the rig (API in its docstring); kernel.py, initramfs.py and cpio.py make what it
boots; guest_scripts.py and hostserver.py are the two ends of the measuring steps, shared
with benchmarks/vm_gateway.py.
"""
