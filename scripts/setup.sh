#!/usr/bin/env bash
# Installs what vipernet and its tests need on a fresh Debian machine (as root):
# the Debian packages of the real peers, then vipernet itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

DEBIAN_PACKAGES=(
    iproute2 nftables iputils-ping procps      # namespaces, TAP, impairment, kernel ping
    dnsmasq-base                               # DNS (and DHCP) peer
    openssh-server openssh-client ssh-audit    # SSH peer, sftp CLI reference, audit
    openssl gnutls-bin                         # TLS peers
    nginx-light                                # HTTP peer
    tshark                                     # capture checks
    passt                                      # user-mode peer speaking the QEMU stream protocol
    tmux                                       # driving interactive sessions
    gcc libc6-dev                              # builds the LD_PRELOAD library (below)
    curl wget netcat-openbsd git               # non-Python programs under `vipernet run`
    qemu-system-x86 busybox-static             # the Linux guest (tests/vm): QEMU, its initramfs
    slirp4netns uidmap                         # user-mode networking peers for unprivileged runs
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install Debian packages: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q -o DPkg::Lock::Timeout=600
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

# The guest kernel for tests/vm: Debian's own, the versioned image package that
# linux-image-amd64 points at, unpacked into build/vm/ (never installed on this machine, so
# the host's boot is untouched).  Skipped once build/vm/vmlinuz is there; `rm -rf build/vm`
# fetches the current one again.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}' || true
}
if [ ! -e build/vm/vmlinuz ]; then
    kernel_pkg=$(kernel_package)
    if [ -z "$kernel_pkg" ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update -q -o DPkg::Lock::Timeout=600
        kernel_pkg=$(kernel_package)
    fi
    if [ -z "$kernel_pkg" ]; then
        echo "setup: cannot tell which kernel package linux-image-amd64 depends on" >&2
        exit 1
    fi
    mkdir -p build
    download=$(mktemp -d build/vm-download.XXXXXX)
    trap 'rm -rf "$download"' EXIT
    (cd "$download" && apt-get download -q "$kernel_pkg")
    dpkg-deb -x "$download/$kernel_pkg"_*.deb "$download/root"
    ln -s "boot/vmlinuz-${kernel_pkg#linux-image-}" "$download/root/vmlinuz"
    echo "$kernel_pkg" >"$download/root/PACKAGE"
    rm -rf build/vm
    mv "$download/root" build/vm
    rm -rf "$download"
    trap - EXIT
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test,bench]'

# `vipernet run`'s LD_PRELOAD library for non-Python programs, built from source (never
# committed).  Written beside the target and renamed into place: rewriting a library in
# place would crash programs that have it loaded.
mkdir -p build
cc -std=c11 -O2 -g -Wall -Wextra -Werror -fPIC -shared \
    -o build/libvipernet_preload.so.new src/vipernet/preload/vipernet_preload.c -ldl -lpthread
mv -f build/libvipernet_preload.so.new build/libvipernet_preload.so
