"""SFTP v3 against OpenSSH's sftp server: transfers, directory operations, errors, rekey."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh.sshd import Sshd
from vipernet.ssh.client import SSHClient
from vipernet.ssh.sftp.client import SFTPClient
from vipernet.ssh.sftp.protocol import Attributes, OpenFlags, SFTPError, SFTPNoSuchFile

pytestmark = pytest.mark.testbed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


@pytest.fixture
def sftp(sshd: Sshd, tmp_path: Path) -> Iterator[SFTPClient]:
    client = SSHClient.connect("127.0.0.1", sshd.port, username="root",
                               key_filename=str(sshd.user_keys["ed25519"]),
                               known_hosts=str(tmp_path / "kh"))
    try:
        with client.open_sftp() as s:
            yield s
    finally:
        client.close()


def test_get_and_put_of_200_mb_are_sha256_equal(sftp: SFTPClient, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 200 * 1024 * 1024)
    remote = tmp_path / "remote.bin"
    down = tmp_path / "down.bin"
    try:
        assert sftp.put(src, str(remote)) == src.stat().st_size
        assert sha256(remote) == sha256(src)
        assert sftp.get(str(remote), down) == src.stat().st_size
        assert sha256(down) == sha256(src)
    finally:  # pytest keeps recent tmp dirs; 600 MB of them is not welcome on a shared disk
        for p in (src, remote, down):
            p.unlink(missing_ok=True)


def test_small_and_odd_sized_files_round_trip(sftp: SFTPClient, tmp_path: Path) -> None:
    for size in (0, 1, 4095, 258048, 258049, 1_000_003):
        src = random_file(tmp_path / f"s{size}", size)
        sftp.put(src, str(tmp_path / f"r{size}"))
        sftp.get(str(tmp_path / f"r{size}"), tmp_path / f"d{size}")
        assert sha256(tmp_path / f"d{size}") == sha256(src), size


def test_listing_rename_remove_mkdir_rmdir(sftp: SFTPClient, tmp_path: Path) -> None:
    d = tmp_path / "dir"
    sftp.mkdir(str(d), 0o750)
    assert stat.S_IMODE(d.stat().st_mode) == 0o750
    for name in ("b", "a", "c"):
        (d / name).write_bytes(name.encode() * 10)
    assert sftp.listdir(str(d)) == ["a", "b", "c"]
    entries = sftp.listdir_attr(str(d))
    assert [e.attrs.size for e in entries] == [10, 10, 10]
    assert all(e.attrs.is_file and e.longname.startswith("-rw") for e in entries)
    sftp.rename(str(d / "a"), str(d / "z"))
    assert sorted(os.listdir(d)) == ["b", "c", "z"]
    sftp.remove(str(d / "b"))
    assert sftp.listdir(str(d)) == ["c", "z"]
    with pytest.raises(SFTPError):
        sftp.rmdir(str(d))  # not empty
    for name in ("c", "z"):
        sftp.remove(str(d / name))
    sftp.rmdir(str(d))
    assert not d.exists()


def test_rename_refuses_an_existing_target_but_posix_rename_replaces_it(
        sftp: SFTPClient, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"old")
    with pytest.raises(SFTPError):
        sftp.rename(str(tmp_path / "a"), str(tmp_path / "b"))
    sftp.posix_rename(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"new" and not (tmp_path / "a").exists()


def test_stat_lstat_fstat_setstat_and_symlinks(sftp: SFTPClient, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1234)
    sftp.symlink(str(f), str(tmp_path / "link"))
    assert os.readlink(tmp_path / "link") == str(f)
    assert sftp.readlink(str(tmp_path / "link")) == str(f)
    assert sftp.stat(str(tmp_path / "link")).size == 1234
    assert sftp.lstat(str(tmp_path / "link")).is_link
    sftp.setstat(str(f), Attributes(permissions=0o600, atime=1_000_000, mtime=2_000_000))
    st = f.stat()
    assert (stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (0o600, 2_000_000)
    handle = sftp.open(str(f))
    try:
        assert sftp.fstat(handle).size == 1234
        assert sftp.read(handle, 1230, 100) == b"xxxx"
        assert sftp.read(handle, 5000, 10) == b""  # EOF
    finally:
        sftp.close_handle(handle)
    sftp.setstat(str(f), Attributes(size=10))
    assert f.stat().st_size == 10
    assert sftp.realpath(str(tmp_path / "." / "f")) == str(f)


def test_status_codes_map_to_exception_classes(sftp: SFTPClient, tmp_path: Path) -> None:
    with pytest.raises(SFTPNoSuchFile) as info:
        sftp.stat(str(tmp_path / "missing"))
    assert info.value.code == 2 and isinstance(info.value, FileNotFoundError)
    with pytest.raises(SFTPNoSuchFile):
        sftp.get(str(tmp_path / "missing"), tmp_path / "x")
    with pytest.raises(SFTPError) as err:
        sftp.mkdir(str(tmp_path))  # exists
    assert err.value.code == 4
    assert not sftp.exists(str(tmp_path / "missing"))


def test_interrupted_get_and_put_resume_from_where_they_stopped(sftp: SFTPClient,
                                                                tmp_path: Path) -> None:
    src = random_file(tmp_path / "src", 5_000_000)
    data = src.read_bytes()
    partial = tmp_path / "partial"
    partial.write_bytes(data[:1_234_567])  # what an interrupted download left
    assert sftp.get(str(src), partial, resume=True) == len(data)
    assert sha256(partial) == sha256(src)
    remote = tmp_path / "remote"
    remote.write_bytes(data[:3_000_001])  # what an interrupted upload left
    written: list[int] = []
    sftp.put(src, str(remote), resume=True, progress=lambda done, total: written.append(done))
    assert sha256(remote) == sha256(src)
    assert written[0] > 3_000_001 and written[-1] == len(data)


def test_writes_with_many_requests_in_flight_land_at_their_offsets(sftp: SFTPClient,
                                                                   tmp_path: Path) -> None:
    src = random_file(tmp_path / "src", 3_000_000)
    sftp.put(src, str(tmp_path / "r"), block=4096, max_requests=200)
    sftp.get(str(tmp_path / "r"), tmp_path / "d", block=3000, max_requests=300)
    assert sha256(tmp_path / "d") == sha256(src)


def test_single_requests_open_write_read_and_close_a_file(sftp: SFTPClient,
                                                         tmp_path: Path) -> None:
    path = str(tmp_path / "w")
    handle = sftp.open(path, OpenFlags.WRITE | OpenFlags.CREAT | OpenFlags.TRUNC)
    sftp.write(handle, 0, b"hello ")
    sftp.write(handle, 6, b"world")
    sftp.close_handle(handle)
    assert (tmp_path / "w").read_bytes() == b"hello world"
    handle = sftp.open(path)
    assert sftp.read(handle, 6, 100) == b"world"
    assert sftp.read(handle, 11, 100) == b""
    sftp.close_handle(handle)
    with pytest.raises(SFTPError):  # the handle is gone
        sftp.read(handle, 0, 1)


def test_the_client_rekeys_on_its_own_after_rekey_bytes(sshd: Sshd, tmp_path: Path) -> None:
    # The pinned sshd has no RekeyLimit (AES's default is gigabytes): every key exchange
    # here is one the client started because 1 MiB had gone by.
    src = random_file(tmp_path / "src", 6 * 1024 * 1024)
    with SSHClient.connect("127.0.0.1", sshd.port, username="root",
                           key_filename=str(sshd.user_keys["ed25519"]),
                           known_hosts=str(tmp_path / "kh"), rekey_bytes=1 << 20) as client:
        with client.open_sftp() as s:
            s.put(src, str(tmp_path / "up"))
        assert sha256(tmp_path / "up") == sha256(src)
        assert client.conn.transport.kex_count >= 4  # 1 + one per MiB, give or take one


def test_a_forced_rekey_every_megabyte_mid_transfer_keeps_data_intact(tmp_path: Path) -> None:
    server = Sshd(extra="RekeyLimit 1M\n")
    try:
        with SSHClient.connect("127.0.0.1", server.port, username="root",
                               key_filename=str(server.user_keys["ed25519"]),
                               known_hosts=str(tmp_path / "kh"), rekey_bytes=3 << 20) as client:
            src = random_file(tmp_path / "src", 24 * 1024 * 1024)
            with client.open_sftp() as s:
                s.put(src, str(tmp_path / "up"))
                s.get(str(tmp_path / "up"), tmp_path / "down")
            assert sha256(tmp_path / "up") == sha256(src) == sha256(tmp_path / "down")
            # 48 MB through a server rekeying every MB: dozens of key exchanges.
            assert client.conn.transport.kex_count > 20
            for name in ("src", "up", "down"):
                (tmp_path / name).unlink()
    finally:
        server.stop()
