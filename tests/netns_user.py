"""Running namespace tools as an unprivileged user, the way they are meant to be used.

``vipernet run --netns``, pasta and slirp4netns are rootless tools: the test of the first
(tests/slirp/test_netns_run.py) and the benchmark comparing all three
(benchmarks/vm_gateway.py) run them as ``nobody``.  What both need for that:

* :func:`as_nobody` - an argv run with nobody's uid and gid and no supplementary groups.
* :func:`tun_open_to_everyone` - /dev/net/tun at mode 0666, as udev leaves it on a
  distribution (a bare VM's devtmpfs may make it 0600); the old mode is put back.
* :func:`user_namespace_refusal` - why nobody cannot make a user + network namespace
  here, or None when it can.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator

from tests.testbed import require_binary

TUN = "/dev/net/tun"
NOBODY = 65534


def as_nobody(*argv: str) -> list[str]:
    return [require_binary("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}",
            "--clear-groups", *argv]


@contextlib.contextmanager
def tun_open_to_everyone() -> Iterator[None]:
    """Widens /dev/net/tun to 0666 for the duration (needs root to change it)."""
    mode = stat.S_IMODE(os.stat(TUN).st_mode)
    if mode & 0o666 != 0o666:
        os.chmod(TUN, mode | 0o666)
    try:
        yield
    finally:
        os.chmod(TUN, mode)


def user_namespace_refusal() -> str | None:
    probe = subprocess.run(as_nobody("unshare", "--user", "--net", "--map-root-user", "true"),
                           capture_output=True, text=True, cwd="/", check=False)
    if probe.returncode == 0:
        return None
    return f"no unprivileged user namespaces here: {probe.stderr.strip()}"
