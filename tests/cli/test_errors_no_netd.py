"""Every command without netd - none at the socket, or netd gone mid-operation - says so in
one line that names what to do, with its command's exit status (2 for the iputils-style
ones, 7 for fetch as curl's "failed to connect", 255 for ssh/sftp as OpenSSH)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_error_lines import one_line
from tests.netd_rig import PEER, cli_env, memory_netd
from vipernet.cli.netd_common import NETD_LOST, plain


def vipernet(socket_path: Path, *argv: str) -> tuple[int, str]:
    env = cli_env(VIPERNET_SOCKET=str(socket_path))
    env.pop("VIPERNET_TRANSPORT", None)
    env.pop("VIPER_KERNEL_ENABLE_NET", None)
    done = subprocess.run([sys.executable, "-m", "vipernet.cli.main", *argv], env=env,
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    return done.returncode, one_line(done.stderr)


@pytest.mark.parametrize(("argv", "status"), [
    (["ping", "-c", "1", PEER], 2),
    (["dig", "example.test"], 2),
    (["info"], 2),
    (["stat"], 2),
    (["fetch", f"http://{PEER}/"], 7),
    (["ssh", f"root@{PEER}", "true"], 255),
    (["sftp", f"root@{PEER}"], 255),
])
def test_no_netd_is_one_line_naming_the_socket_and_the_fix(argv: list[str], status: int,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "netd.sock"
    code, line = vipernet(path, *argv)
    assert code == status
    prefix = f"vipernet {argv[0]}: " + (f"http://{PEER}/: " if argv[0] == "fetch" else "")
    assert line == (f"{prefix}netd is not running (no socket at {path}); start it with "
                    "'vipernet netd' or set VIPERNET_SOCKET")


def test_ping_when_netd_stops_mid_run_exits_2_in_one_line(tmp_path: Path) -> None:
    env = cli_env()
    env.pop("VIPER_KERNEL_ENABLE_NET", None)
    with memory_netd(tmp_path) as path:
        ping = subprocess.Popen([sys.executable, "-m", "vipernet.cli.main", "ping", PEER,
                                 "-i", "0.2", "--socket", path], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert ping.stdout is not None
            assert ping.stdout.readline().startswith(f"PING {PEER}")
            assert ping.stdout.readline().startswith(f"64 bytes from {PEER}: icmp_seq=1")
        except BaseException:
            ping.kill()
            raise
    # memory_netd's exit stopped netd: its clients' channels closed under them
    _out, err = ping.communicate(timeout=30)
    assert ping.returncode == 2
    assert one_line(err) == f"vipernet ping: {NETD_LOST}"


@pytest.mark.parametrize(("text", "said"), [
    ("receive failed: [Errno 104] lost netd: Connection reset by peer", NETD_LOST),
    ("netd closed the channel", NETD_LOST),
    ("cannot connect to 10.0.2.2:81: [Errno 111] Connection refused",
     "cannot connect to 10.0.2.2:81: Connection refused"),
    ("cannot resolve 'x.test': [Errno -2] Name or service not known",
     "cannot resolve 'x.test': Name or service not known"),
])
def test_plain_drops_python_errno_tags_and_names_a_lost_netd(text: str, said: str) -> None:
    assert plain(text) == said
