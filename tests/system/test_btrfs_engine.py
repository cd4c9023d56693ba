"""The btrfs engine on a real, loop-mounted btrfs: subvolumes, qgroups, snapshots, deletion.

Customers are real uids (``setpriv``) writing through the kernel, so
"Disk quota exceeded", "Read-only file system" and "Operation not
permitted" below are the kernel's answers, not the engine's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from btrfs_image import BtrfsImage, customer, read_only, subvolume_ids

from provbackup.engines import btrfs
from provbackup.engines.btrfs import MAX_NESTED_SUBVOLUMES
from provbackup.engines.btrfs_snapshot import (
    HEADROOM,
    MAX_RAISES,
    STAGING_DIRECTORY,
    take_snapshot,
)
from provbackup.errors import ConfigError, WorkError
from provbackup.work import btrfs_ioctl
from provbackup.work.backuptime import MAX_HOSTS, fix_backup_time
from provbackup.work.safe import OpenDirectory, open_directory, open_root, remove_tree

UID = 61001
GID = 61001
MIB = 1 << 20
RETAIN = (("daily", 3), ("weekly", 2))
MOMENT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def make_account(root: Path, uid: int = UID, gid: int = GID) -> Path:
    """Lay out an account the way process does (root-owned home), incoming a subvolume."""
    home = root / str(uid) / "chroot" / "home" / str(uid)
    home.mkdir(parents=True)
    os.chown(home, 0, gid)
    home.chmod(0o750)
    (home / ".snapshots").mkdir(mode=0o750)
    os.chown(home / ".snapshots", 0, gid)
    with open_root(home) as directory:
        steps: list[str] = []
        btrfs.ensure_incoming(directory, steps)
    os.chown(home / "incoming", uid, gid)
    (home / "incoming").chmod(0o700)
    return root / str(uid)


@contextlib.contextmanager
def opened(account: Path, uid: int = UID) -> Iterator[tuple[OpenDirectory, OpenDirectory]]:
    with open_root(account) as directory, open_root(account / "chroot" / "home" / str(uid)) as home:
        yield directory, home


def snap(account: Path, interval: str = "daily", retain=RETAIN, fix=None) -> list[str]:
    with opened(account) as (directory, home):
        return take_snapshot(directory, home, retain, interval, MOMENT, fix or (lambda _d: []))


def write_as_customer(target: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Write ``data`` to ``target`` as the customer (parents made as the customer too)."""
    made = customer(UID, GID, "mkdir", "-p", str(target.parent))
    assert made.returncode == 0, made.stderr
    return subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "dd", f"of={target}",
         "status=none", "bs=1M"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip


def qgroup_figure(path: Path, level: int, field: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.sync()
        number = btrfs_ioctl.subvolume_id(fd)
        return btrfs_ioctl.read_qgroup(
            btrfs_ioctl.fsid(fd), btrfs_ioctl.qgroup_id(level, number), field
        )
    finally:
        os.close(fd)


def home_of(account: Path) -> Path:
    return account / "chroot" / "home" / str(UID)


# -- the filesystem check -------------------------------------------------------------------


def test_backup_root_not_on_btrfs_is_a_config_error(tmp_path: Path) -> None:
    if btrfs_ioctl.is_btrfs(os.open(tmp_path, os.O_RDONLY)):
        pytest.skip("the temporary directory is on btrfs here")
    with pytest.raises(ConfigError, match="not on a btrfs filesystem") as raised:
        btrfs.check_backup_root(tmp_path)
    assert raised.value.exit_code == 78


def test_backup_root_on_btrfs_reports_quota_mode(btrfs_root: Path) -> None:
    found = btrfs.check_backup_root(btrfs_root)
    assert found.quota_mode == "qgroup"
    assert (Path("/sys/fs/btrfs") / found.uuid / "qgroups").is_dir()


# -- quotas ---------------------------------------------------------------------------------


def test_customer_writing_past_the_quota_gets_edquot(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    with opened(account) as (_directory, home):
        assert btrfs.set_limit(home, 20 * MIB).endswith("limit 20971520 bytes")
    result = write_as_customer(home_of(account) / "incoming" / "big", os.urandom(30 * MIB))
    assert result.returncode != 0
    assert b"Disk quota exceeded" in result.stderr
    assert qgroup_figure(home_of(account) / "incoming", 1, "referenced") <= 20 * MIB
    # modify raises the quota: the same upload now fits
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 40 * MIB)
    assert (
        write_as_customer(home_of(account) / "incoming" / "big", os.urandom(30 * MIB)).returncode
        == 0
    )


def test_incoming_is_a_subvolume_in_its_own_qgroup_idempotently(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    assert incoming.stat().st_ino == btrfs_ioctl.SUBVOLUME_ROOT_INODE
    with open_root(home_of(account)) as home:
        steps: list[str] = []
        btrfs.ensure_incoming(home, steps)
    assert steps == []  # the second time: nothing to do


def test_plain_incoming_directory_is_refused(btrfs_root: Path) -> None:
    home = btrfs_root / "home"
    (home / "incoming").mkdir(parents=True)
    with open_root(home) as directory, pytest.raises(WorkError, match="not a btrfs subvolume"):
        btrfs.ensure_incoming(directory, [])


# -- snapshots ------------------------------------------------------------------------------


def test_snapshots_are_read_only_root_owned_and_rotate(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming, snapshots = home_of(account) / "incoming", home_of(account) / ".snapshots"
    for day in range(4):
        assert write_as_customer(incoming / "host" / "day", f"{day}".encode()).returncode == 0
        snap(account)
    names = sorted(os.listdir(snapshots))
    assert names == ["daily.0", "daily.1", "daily.2"]
    # rotated: daily.N holds what was uploaded N snapshots ago; day 0 fell off
    assert [(snapshots / f"daily.{n}" / "host" / "day").read_text() for n in range(3)] == [
        "3", "2", "1"
    ]  # fmt: skip
    for name in names:
        status = (snapshots / name).stat()
        assert read_only(snapshots / name)
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, GID, 0o750)
        assert status.st_mtime == MOMENT.timestamp()
    assert os.listdir(account / STAGING_DIRECTORY) == []


def test_higher_interval_takes_the_last_of_the_lower_one(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming, snapshots = home_of(account) / "incoming", home_of(account) / ".snapshots"
    assert "not there yet" in " ".join(snap(account, "weekly"))
    assert not (snapshots / "weekly.0").exists()
    for day in range(3):
        write_as_customer(incoming / "host" / "day", f"{day}".encode())
        snap(account)
    snap(account, "weekly")
    assert (snapshots / "weekly.0" / "host" / "day").read_text() == "0"  # was daily.2
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1", "weekly.0"]
    assert read_only(snapshots / "weekly.0")


def test_lowered_retention_prunes_and_dropped_interval_goes(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    for _ in range(3):
        snap(account)
    snap(account, "weekly")
    snap(account, retain=(("daily", 1),))
    assert sorted(os.listdir(home_of(account) / ".snapshots")) == ["daily.0"]


def test_customer_cannot_change_or_delete_a_snapshot(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / "file", b"precious")
    snap(account)
    snapshot = home_of(account) / ".snapshots" / "daily.0"
    attempts = {
        "append": customer(UID, GID, "sh", "-c", f"echo x >> {snapshot}/host/file"),
        "remove": customer(UID, GID, "rm", "-f", f"{snapshot}/host/file"),
        "chmod": customer(UID, GID, "chmod", "0777", f"{snapshot}/host/file"),
        "clear read-only": customer(
            UID, GID, "btrfs", "property", "set", str(snapshot), "ro", "false"
        ),
        "delete": customer(UID, GID, "btrfs", "subvolume", "delete", str(snapshot)),
        "rename": customer(UID, GID, "mv", str(snapshot), f"{snapshot}.x"),
    }
    for what, result in attempts.items():
        assert result.returncode != 0, what
    assert read_only(snapshot)
    assert (snapshot / "host" / "file").read_bytes() == b"precious"
    # and the customer reads it (group through the root, own files below)
    assert customer(UID, GID, "cat", f"{snapshot}/host/file").stdout == "precious"


def test_restore_gives_back_the_bytes(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    original = os.urandom(3 * MIB + 17)
    write_as_customer(incoming / "host" / "backup" / "data.bin", original)
    snap(account)
    write_as_customer(incoming / "host" / "backup" / "data.bin", b"overwritten by ransomware")
    restored = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "cat",
         str(home_of(account) / ".snapshots/daily.0/host/backup/data.bin")],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert restored.returncode == 0 and restored.stdout == original


def test_fix_runs_in_the_staged_snapshot_not_in_incoming(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / ".sepiola_backup" / "backupTime", b"TODAY\n")

    def fix(staged: OpenDirectory) -> list[str]:
        with (
            open_directory(staged, "host") as host,
            open_directory(host, ".sepiola_backup") as meta,
        ):
            os.unlink("backupTime", dir_fd=meta.fd)
            descriptor = os.open("backupTime", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=meta.fd)
            os.write(descriptor, b"2026-12-01 04:00")
            os.close(descriptor)
        return ["fixed"]

    assert "fixed" in snap(account, fix=fix)
    snapshot = home_of(account) / ".snapshots" / "daily.0"
    assert (snapshot / "host/.sepiola_backup/backupTime").read_text() == "2026-12-01 04:00"
    assert (incoming / "host/.sepiola_backup/backupTime").read_text() == "TODAY\n"


def test_full_account_still_gets_its_snapshot_and_keeps_its_limit(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 16 * MIB)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / ".sepiola_backup" / "backupTime", b"TODAY")
    assert write_as_customer(incoming / "host" / "fill", os.urandom(20 * MIB)).returncode != 0
    # root's own write into a full account fails too: the hazard the engine works around
    with pytest.raises(OSError) as refused:
        (incoming / "root-write").write_bytes(os.urandom(MIB))
    assert refused.value.errno == errno.EDQUOT

    def fix(staged: OpenDirectory) -> list[str]:
        with open_directory(staged, "host") as host:
            descriptor = os.open("fixed", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=host.fd)
            os.write(descriptor, os.urandom(64 * 1024))
            os.close(descriptor)
        return ["fixed"]

    steps = snap(account, fix=fix)
    assert any("raised" in step for step in steps)
    assert (home_of(account) / ".snapshots/daily.0/host/fixed").stat().st_size == 64 * 1024
    assert qgroup_figure(incoming, 1, "max_referenced") == 16 * MIB
    assert os.listdir(account / STAGING_DIRECTORY) == []


def full_account_racing_the_runner(
    btrfs_root: Path, uploads: int
) -> tuple[Path, list[tuple[int, bytes, int]], Callable[[OpenDirectory], list[str]]]:
    """A full account (16 MiB) and a fix during which the customer uploads 8 MiB ``uploads`` times.

    Returns the account, the list the fix fills with (dd's exit, its stderr,
    the limit flags seen meanwhile) and the fix (which then runs the real
    backupTime fix).
    """
    account = make_account(btrfs_root)
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 16 * MIB)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / ".sepiola_backup" / "backupTime", b"TODAY")
    assert write_as_customer(incoming / "host" / "fill", os.urandom(20 * MIB)).returncode != 0
    during: list[tuple[int, bytes, int]] = []

    def fix(staged: OpenDirectory) -> list[str]:
        # While the runner works on the staged snapshot of the full account, the
        # customer (another process) uploads 8 MiB more into incoming/, a new file each time.
        if len(during) < uploads:
            target = incoming / "host" / f"more{len(during)}"
            attempt = write_as_customer(target, os.urandom(8 * MIB))
            flags = qgroup_figure(incoming, 1, "limit_flags")
            during.append((attempt.returncode, attempt.stderr, flags))
        return fix_backup_time(staged, MOMENT)

    return account, during, fix


def test_customer_cannot_write_past_the_quota_while_the_runner_fixes_a_full_account(
    btrfs_root: Path,
) -> None:
    account, during, fix = full_account_racing_the_runner(btrfs_root, uploads=1)
    incoming = home_of(account) / "incoming"
    steps = snap(account, fix=fix)
    assert len(during) == 1, "the fix never ran"
    (returncode, stderr, flags) = during[0]
    assert returncode != 0 and b"Disk quota exceeded" in stderr, "wrote past the quota"
    assert flags & 1, "the limit was off while the runner worked"
    assert any("raised by" in step for step in steps), steps
    snapshot = home_of(account) / ".snapshots" / "daily.0"
    assert (snapshot / "host/.sepiola_backup/backupTime").read_text() != "TODAY"
    # at most the raises' headroom past the quota, never the 8 MiB
    referenced = qgroup_figure(incoming, 1, "referenced")
    assert referenced <= 16 * MIB + MAX_RAISES * HEADROOM and referenced < 24 * MIB
    assert qgroup_figure(incoming, 1, "max_referenced") == 16 * MIB
    assert os.listdir(account / STAGING_DIRECTORY) == []


def test_customer_racing_every_raise_only_fails_their_own_snapshot(btrfs_root: Path) -> None:
    account, during, fix = full_account_racing_the_runner(btrfs_root, uploads=MAX_RAISES + 1)
    incoming = home_of(account) / "incoming"
    with pytest.raises(WorkError, match=f"still writing.*{MAX_RAISES} raises") as raised:
        snap(account, fix=fix)
    assert str(account) in str(raised.value)
    assert during and all(code != 0 and b"Disk quota exceeded" in err for code, err, _ in during)
    assert all(flags & 1 for _code, _err, flags in during)
    # each raise gives at most HEADROOM more: 16 MiB + 3 x 4 MiB, not 16 + 4 x 8
    assert qgroup_figure(incoming, 1, "referenced") <= 16 * MIB + MAX_RAISES * HEADROOM
    assert qgroup_figure(incoming, 1, "max_referenced") == 16 * MIB
    assert os.listdir(home_of(account) / ".snapshots") == []
    assert "lifted-limit" not in os.listdir(account / STAGING_DIRECTORY)


def test_backup_time_walk_of_a_full_account_is_capped(
    btrfs_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    hosts = MAX_HOSTS + 20
    made = customer(UID, GID, "sh", "-c",
                    f"for i in $(seq 1000 {999 + hosts}); do mkdir -p h$i/.sepiola_backup; "
                    "echo TODAY > h$i/.sepiola_backup/backupTime; done", cwd=incoming)  # fmt: skip
    assert made.returncode == 0, made.stderr
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 16 * MIB)
    assert write_as_customer(incoming / "fill", os.urandom(20 * MIB)).returncode != 0
    steps = snap(account, fix=lambda staged: fix_backup_time(staged, MOMENT))
    snapshot = home_of(account) / ".snapshots" / "daily.0"
    texts = [
        (snapshot / f"h{n}" / ".sepiola_backup" / "backupTime").read_text().strip()
        for n in range(1000, 1000 + hosts)
    ]
    # the first MAX_HOSTS host directories (sorted) are fixed, the rest is left as it was
    assert all(text != "TODAY" for text in texts[:MAX_HOSTS])
    assert texts[MAX_HOSTS:] == ["TODAY"] * 20
    assert sum("backupTime: TODAY ->" in step for step in steps) == MAX_HOSTS
    assert f"{hosts} host directories, more than {MAX_HOSTS}" in caplog.text
    assert qgroup_figure(incoming, 1, "max_referenced") == 16 * MIB


def test_limit_lifted_by_a_killed_run_is_put_back(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 16 * MIB)
    # what a run killed between lifting and restoring leaves behind
    staging = account / STAGING_DIRECTORY
    staging.mkdir(mode=0o700)
    (staging / "lifted-limit").write_text(f"{16 * MIB}\n")
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, None)
    assert qgroup_figure(home_of(account) / "incoming", 1, "limit_flags") & 1 == 0
    steps = snap(account)
    assert any("put back the limit" in step for step in steps)
    assert qgroup_figure(home_of(account) / "incoming", 1, "max_referenced") == 16 * MIB
    assert os.listdir(staging) == []


def test_usage_comes_from_qgroups(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / "old", os.urandom(8 * MIB))
    snap(account)
    customer(UID, GID, "rm", str(incoming / "host" / "old"))
    write_as_customer(incoming / "host" / "new", os.urandom(4 * MIB))
    os.sync()
    with opened(account) as (_directory, home):
        backup, snapshot = btrfs.usage(home)
    # 4 MiB in incoming/, the 8 MiB only the snapshot still holds
    assert 4 * MIB <= backup < 5 * MIB
    assert 8 * MIB <= snapshot < 9 * MIB


# -- subvolumes a customer makes --------------------------------------------------------------


def test_nested_subvolume_is_counted_in_the_quota_at_the_next_snapshot(
    btrfs_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 24 * MIB)
    made = customer(UID, GID, "btrfs", "subvolume", "create", str(incoming / "escape"))
    assert made.returncode == 0, made.stderr  # no privilege needed: the hazard
    # under full qgroups the new subvolume is outside the account's qgroup: not limited
    assert write_as_customer(incoming / "escape" / "a", os.urandom(20 * MIB)).returncode == 0
    snap(account)
    assert "escape: a subvolume made inside incoming/" in caplog.text
    assert qgroup_figure(incoming, 1, "referenced") >= 20 * MIB
    refused = write_as_customer(incoming / "escape" / "b", os.urandom(8 * MIB))
    assert refused.returncode != 0 and b"Disk quota exceeded" in refused.stderr


def make_subvolumes_as_customer(incoming: Path, names: list[str]) -> None:
    """Create each of ``names`` (relative to incoming/) as a subvolume, as the customer."""
    script = "set -e; " + "; ".join(
        f"mkdir -p {Path(name).parent}; btrfs subvolume create {name} >/dev/null" for name in names
    )
    made = customer(UID, GID, "sh", "-c", script, cwd=incoming)
    assert made.returncode == 0, made.stderr


def test_customer_made_subvolumes_past_the_limit_refuse_the_snapshot(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    snapshots = home_of(account) / ".snapshots"
    write_as_customer(incoming / "host" / "f", b"first")
    snap(account)
    # No privilege needed: subvolumes at the top, in a directory, inside each other.
    names = [f"s{n}" for n in range(MAX_NESTED_SUBVOLUMES)]
    names += [f"d/s{n}" for n in range(10)] + [f"s0/inner{n}" for n in range(10)]
    make_subvolumes_as_customer(incoming, names)
    write_as_customer(incoming / "s1" / "escaped", os.urandom(4 * MIB))
    with pytest.raises(WorkError) as raised:
        snap(account)
    message = str(raised.value)
    assert str(incoming) in message
    limit = MAX_NESTED_SUBVOLUMES
    assert f"more than {limit} subvolumes made inside incoming/" in message
    assert f"(counting stopped at {limit + 1})" in message  # not the 36 there are
    # nothing done for the account: no rotation, no new snapshot, nothing adopted
    assert os.listdir(snapshots) == ["daily.0"]
    assert (snapshots / "daily.0" / "host" / "f").read_bytes() == b"first"
    assert qgroup_figure(incoming, 1, "referenced") < 4 * MIB
    with open_root(incoming) as opened_incoming:
        assert len(btrfs.nested_subvolumes(opened_incoming, most=5)) == 5
        assert len(btrfs.nested_subvolumes(opened_incoming)) == len(names)
    assert os.listdir(account / STAGING_DIRECTORY) == []


def test_customer_made_subvolumes_up_to_the_limit_are_adopted(btrfs_root: Path) -> None:
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    make_subvolumes_as_customer(incoming, [f"s{n}" for n in range(MAX_NESTED_SUBVOLUMES)])
    write_as_customer(incoming / "s1" / "counted", os.urandom(4 * MIB))
    steps = snap(account)
    assert sum("counted subvolume" in step for step in steps) == MAX_NESTED_SUBVOLUMES
    assert qgroup_figure(incoming, 1, "referenced") >= 4 * MIB
    assert os.listdir(home_of(account) / ".snapshots") == ["daily.0"]


def test_nested_subvolume_under_simple_quotas_is_limited_at_once(
    btrfs_simple_image: BtrfsImage,
) -> None:
    root = btrfs_simple_image.mount / f"simple-{os.getpid()}-{secrets.token_hex(3)}"
    root.mkdir()
    assert btrfs.check_backup_root(root).quota_mode == "squota"
    account = make_account(root)
    incoming = home_of(account) / "incoming"
    with opened(account) as (_directory, home):
        btrfs.set_limit(home, 16 * MIB)
    made = customer(UID, GID, "btrfs", "subvolume", "create", str(incoming / "escape"))
    assert made.returncode == 0, made.stderr
    refused = write_as_customer(incoming / "escape" / "a", os.urandom(24 * MIB))
    assert refused.returncode != 0 and b"Disk quota exceeded" in refused.stderr


# -- deletion -------------------------------------------------------------------------------


def test_delete_leaves_no_subvolume_behind(btrfs_image: BtrfsImage, btrfs_root: Path) -> None:
    before = subvolume_ids(btrfs_image.mount)
    account = make_account(btrfs_root)
    incoming = home_of(account) / "incoming"
    write_as_customer(incoming / "host" / "f", b"data")
    for _ in range(2):
        snap(account)
    snap(account, "weekly", retain=(("daily", 1), ("weekly", 1)))
    customer(UID, GID, "btrfs", "subvolume", "create", str(incoming / "n1"))
    customer(UID, GID, "mkdir", str(incoming / "n1" / "d"))
    customer(UID, GID, "btrfs", "subvolume", "create", str(incoming / "n1" / "d" / "n2"))
    # a customer's symlink to the snapshots must not lead the deletion anywhere
    customer(UID, GID, "ln", "-s", str(btrfs_root), str(incoming / "link"))
    # incoming, weekly.0 (the daily.0 it took), n1, n2
    assert len(subvolume_ids(btrfs_image.mount) - before) == 4
    with open_root(account) as directory:
        steps = btrfs.delete_account_subvolumes(directory, str(UID))
    assert any("n1/d/n2" in step for step in steps)
    assert subvolume_ids(btrfs_image.mount) == before
    with open_root(btrfs_root) as parent:
        remove_tree(parent, str(UID))
    assert os.listdir(btrfs_root) == []


def test_quarantined_account_keeps_its_subvolumes_until_purged(
    btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    account = make_account(btrfs_root)
    snap(account)
    quarantine = btrfs_root / ".deleted"
    quarantine.mkdir(mode=0o700)
    os.rename(account, quarantine / f"{UID}.20261201T000000Z")  # subvolumes move along
    moved = quarantine / f"{UID}.20261201T000000Z"
    assert read_only(moved / "chroot/home" / str(UID) / ".snapshots/daily.0")
    with open_root(moved) as directory:
        btrfs.delete_account_subvolumes(directory, str(UID))
    assert subvolume_ids(btrfs_image.mount) == before


# -- kill safety ----------------------------------------------------------------------------

KILLED_CHILD = """
import sys
from datetime import UTC, datetime
from provbackup.engines.btrfs_snapshot import take_snapshot
from provbackup.work.safe import open_root
account, home = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while True:
    with open_root(account) as directory, open_root(home) as opened:
        take_snapshot(directory, opened, (("daily", 3),), "daily", datetime.now(UTC), lambda _d: [])
"""


def test_sigkill_mid_snapshot_converges_on_the_next_run(
    btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    account = make_account(btrfs_root)
    home = home_of(account)
    with opened(account) as (_directory, opened_home):
        btrfs.set_limit(opened_home, 64 * MIB)
    write_as_customer(home / "incoming" / "host" / "f", b"content")
    delays = [0.005 * n for n in range(1, 25)]
    secrets.SystemRandom().shuffle(delays)
    for delay in delays:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_CHILD, str(account), str(home)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(delay)
        child.kill()
        child.wait()
    snap(account, retain=(("daily", 3),))
    snapshots = home / ".snapshots"
    names = sorted(os.listdir(snapshots))
    assert names and set(names) <= {"daily.0", "daily.1", "daily.2"}
    for name in names:
        status = (snapshots / name).stat()
        assert status.st_ino == btrfs_ioctl.SUBVOLUME_ROOT_INODE and read_only(snapshots / name)
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, GID, 0o750)
    assert (snapshots / "daily.0" / "host" / "f").read_bytes() == b"content"
    assert os.listdir(account / STAGING_DIRECTORY) == []
    assert qgroup_figure(home / "incoming", 1, "max_referenced") == 64 * MIB
    # nothing orphaned: incoming/ and the snapshots are all that is left of this account
    assert len(subvolume_ids(btrfs_image.mount) - before) == 1 + len(names)
    fd = os.open(btrfs_root, os.O_RDONLY)
    try:
        assert not btrfs_ioctl.quota_state(btrfs_ioctl.fsid(fd))[2], "qgroups inconsistent"
    finally:
        os.close(fd)
