"""``provbackup migrate-engine`` end to end on the loop-mounted btrfs.

Accounts are made by the rsnapshot engine (``process`` against the real
slapd, then real rsnapshot through ``provbackup snapshot``), uploads come
from real customer uids (``setpriv``), and after the move the btrfs engine
(``[backup] engine = btrfs``) takes over: snapshot runner, usage, restore.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from btrfs_image import BtrfsImage, customer, is_subvolume, read_only, subvolume_ids
from support import (
    account_dir,
    home_of,
    modify_entry,
    provision_account,
    read_entry,
    run,
    write_config,
)

from provbackup.work import btrfs_ioctl

MIB = 1 << 20
OLD_MTIME = 1_500_000_000  # 2017-07-14: a file's time the restore must give back


def setup_for(tmp_path: Path, server, root: Path, engine: str):
    return write_config(tmp_path, server, f"[backup]\nroot = {root}\nengine = {engine}\n")


def as_customer(uid: str, *argv: str) -> subprocess.CompletedProcess[str]:
    result = customer(int(uid), int(uid), *argv)
    assert result.returncode == 0, result.stderr
    return result


def write_as_customer(uid: str, target: Path, data: bytes) -> None:
    as_customer(uid, "mkdir", "-p", str(target.parent))
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "dd", f"of={target}",
         "status=none", "bs=1M"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def qgroup(path: Path, level: int, field: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.sync()
        number = btrfs_ioctl.subvolume_id(fd)
        return btrfs_ioctl.read_qgroup(btrfs_ioctl.fsid(fd), btrfs_ioctl.qgroup_id(level, number),
                                       field)  # fmt: skip
    finally:
        os.close(fd)


def test_rsnapshot_account_moves_to_btrfs_keeps_snapshots_and_restores_exactly(
    tmp_path: Path, ldap_server, btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    old = setup_for(tmp_path, ldap_server, btrfs_root, "rsnapshot")
    uid = "1000301"
    dn = provision_account(ldap_server, old, btrfs_root, uid, quota=48 * MIB,
                   intervals={"daily": 3, "weekly": 1})  # fmt: skip
    home = home_of(btrfs_root, uid)
    incoming = home / "incoming"
    big = os.urandom(8 * MIB)
    write_as_customer(uid, incoming / "laptop" / "big.bin", big)
    write_as_customer(uid, incoming / "laptop" / "docs" / "letter.txt", b"version 1\n")
    letter = incoming / "laptop" / "docs" / "letter.txt"
    as_customer(uid, "chmod", "0640", str(letter))
    as_customer(uid, "touch", "-h", "-d", f"@{OLD_MTIME}", str(letter))
    as_customer(uid, "ln", "-s", "docs/letter.txt", str(incoming / "laptop" / "latest"))
    as_customer(uid, "ln", "-s", "/etc/shadow", str(incoming / "laptop" / "bait"))
    assert run(old, "snapshot", "daily").code == 0
    write_as_customer(uid, letter, b"version 2, ransomware\n")
    assert run(old, "snapshot", "daily").code == 0
    snapshots = home / ".snapshots"
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]
    old_times = {name: (snapshots / name).stat().st_mtime_ns for name in ("daily.0", "daily.1")}
    (tmp_path / "quota.log").unlink()

    # The plan: a table on stdout, nothing changed.
    plan = run(old, "migrate-engine", "--uid", uid, "--dry-run")
    assert plan.code == 0, plan.out + plan.err
    assert re.search(rf"^{uid}\s+would\s+rsnapshot\s+daily\.0 daily\.1\s+{48 * MIB}\s", plan.out,
                     re.M), plan.out  # fmt: skip
    assert (
        not is_subvolume(incoming)
        and not (account_dir(btrfs_root, uid) / "engine-migration").exists()
    )
    assert not (tmp_path / "quota.log").exists()

    moved = run(old, "migrate-engine", "--uid", uid)
    assert moved.code == 0, moved.out + moved.err
    assert re.search(rf"^{uid}\s+migrated\s", moved.out, re.M), moved.out
    # incoming/: a subvolume in its own qgroup, the quota applied, the customer's
    assert is_subvolume(incoming)
    status = incoming.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (
        int(uid),
        int(uid),
        0o700,
    )
    assert qgroup(incoming, 1, "max_referenced") == 48 * MIB
    assert (incoming / "laptop" / "big.bin").read_bytes() == big
    # the snapshots: read-only subvolumes, root:gidNumber 0750, their old times
    for name in ("daily.0", "daily.1"):
        status = (snapshots / name).stat()
        assert is_subvolume(snapshots / name) and read_only(snapshots / name)
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, int(uid), 0o750)
        assert status.st_mtime_ns == old_times[name]
    # the data is shared, not copied: rsnapshot's copy (both snapshots, one hard-linked
    # inode) and the upload are 2 x 8 MiB of extents; copied, the 3 names would be 24 MiB
    assert 16 * MIB <= qgroup(incoming, 1, "referenced") < 20 * MIB
    # the rsnapshot engine's quota released ([quota] command with 0)
    assert f"{uid} {uid} {uid} 0 0 /srv" in (tmp_path / "quota.log").read_text()
    assert not (account_dir(btrfs_root, uid) / "engine-migration").exists()
    fd = os.open(btrfs_root, os.O_RDONLY)
    try:  # the move keeps full qgroups' figures exact: no rescan needed
        assert not btrfs_ioctl.quota_state(btrfs_ioctl.fsid(fd))[2], "qgroups inconsistent"
    finally:
        os.close(fd)
    # the customer can neither change nor delete a migrated snapshot
    refused = customer(int(uid), int(uid), "rm", "-f", str(snapshots / "daily.1/laptop/big.bin"))
    assert refused.returncode != 0

    again = run(old, "migrate-engine", "--uid", uid)
    assert again.code == 0 and re.search(rf"^{uid}\s+already\s", again.out, re.M), again.out

    # Still [backup] engine = rsnapshot: the runner refuses the moved account, naming the fix.
    stale = run(old, "snapshot", "daily")
    assert stale.code == 1 and re.search(rf"^failed\s+{uid}\s.*set \[backup\] engine = btrfs",
                                         stale.out, re.M), stale.out  # fmt: skip
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]

    # The btrfs engine takes over: a new snapshot, rotation, usage written back.
    new = setup_for(tmp_path, ldap_server, btrfs_root, "btrfs")
    daily = run(new, "snapshot", "daily")
    assert daily.code == 0, daily.out + daily.err
    assert re.search(rf"^done\s+{uid}\s", daily.out, re.M)
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1", "daily.2"]
    assert all(read_only(snapshots / name) for name in os.listdir(snapshots))
    assert (snapshots / "daily.0" / "laptop" / "docs" / "letter.txt").read_bytes() == (
        b"version 2, ransomware\n"
    )
    entry = read_entry(ldap_server, dn)
    assert int(entry["sstbackupsize"][0]) >= 8 * MIB
    usage = (account_dir(btrfs_root, uid) / "chroot/etc/provbackup/usage").read_text().split()
    assert int(usage[0]) == 48 * MIB and int(usage[1]) >= 8 * MIB

    # A restore from the oldest, migrated snapshot gives back bytes, mode, time and the link.
    restored = incoming / "restored"
    as_customer(uid, "rsync", "-a", f"{snapshots}/daily.2/laptop/", f"{restored}/")
    letter_back = restored / "docs" / "letter.txt"
    assert letter_back.read_bytes() == b"version 1\n"
    assert stat.S_IMODE(letter_back.stat().st_mode) == 0o640
    assert letter_back.stat().st_mtime == OLD_MTIME
    assert os.path.islink(restored / "latest") and os.readlink(restored / "latest") == (
        "docs/letter.txt"
    )
    assert os.path.islink(restored / "bait") and os.readlink(restored / "bait") == "/etc/shadow"
    assert (restored / "big.bin").read_bytes() == big

    # a modify through the btrfs engine changes the moved account's qgroup limit
    modify_entry(ldap_server, dn, {"sstQuota": [str(64 * MIB)], "sstProvisioningMode": ["modify"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    modified = run(new, "process")
    assert modified.code == 0, modified.out + modified.err
    assert qgroup(incoming, 1, "max_referenced") == 64 * MIB

    # and the account goes away cleanly, every subvolume with it
    run(new, "reset", "--uid", uid, "--mode", "delete", "--now", "--any-status")
    deleted = run(new, "process")
    assert deleted.code == 0, deleted.out + deleted.err
    assert not account_dir(btrfs_root, uid).exists()
    assert subvolume_ids(btrfs_image.mount) - before == set()


def test_all_moves_every_account_and_skips_the_moved_ones(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    old = setup_for(tmp_path, ldap_server, btrfs_root, "rsnapshot")
    first, second = "1000311", "1000312"
    for uid in (first, second):
        provision_account(ldap_server, old, btrfs_root, uid, quota=16 * MIB)
        write_as_customer(uid, home_of(btrfs_root, uid) / "incoming" / "h" / "f", uid.encode())
    assert run(old, "snapshot", "daily").code == 0
    assert run(old, "migrate-engine", "--uid", first).code == 0
    check = run(old, "check")
    assert re.search(r"WARNING.*both", check.out + check.err), check.out + check.err

    result = run(old, "migrate-engine", "--all")
    assert result.code == 0, result.out + result.err
    assert re.search(rf"^{first}\s+already\s", result.out, re.M), result.out
    assert re.search(rf"^{second}\s+migrated\s", result.out, re.M), result.out
    for uid in (first, second):
        home = home_of(btrfs_root, uid)
        assert is_subvolume(home / "incoming")
        assert (home / ".snapshots" / "daily.0" / "h" / "f").read_bytes() == uid.encode()
    new = setup_for(tmp_path, ldap_server, btrfs_root, "btrfs")
    check = run(new, "check")
    assert "both" not in check.out + check.err


def test_refused_where_the_root_is_not_btrfs(tmp_path: Path, ldap_server) -> None:
    if btrfs_ioctl.is_btrfs(os.open(tmp_path, os.O_RDONLY)):
        pytest.skip("the temporary directory is on btrfs here")
    setup = write_config(tmp_path, ldap_server)
    result = run(setup, "migrate-engine", "--all")
    assert result.code == 78
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "is not on a btrfs filesystem" in lines[0], result.err


def test_refused_where_quotas_are_off(tmp_path: Path, ldap_server) -> None:
    with BtrfsImage(tmp_path / "noquota", 160 << 20) as image:
        subprocess.run(["btrfs", "quota", "disable", str(image.mount)], check=True)
        setup = write_config(tmp_path, ldap_server, f"[backup]\nroot = {image.mount}\n")
        result = run(setup, "migrate-engine", "--uid", "1000321")
    assert result.code == 78
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "quotas are not enabled" in lines[0], result.err


def test_an_account_of_the_btrfs_engine_is_left_alone(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = setup_for(tmp_path, ldap_server, btrfs_root, "btrfs")
    uid = "1000331"
    provision_account(ldap_server, setup, btrfs_root, uid, quota=16 * MIB)
    incoming = home_of(btrfs_root, uid) / "incoming"
    number = os.stat(incoming).st_dev
    result = run(setup, "migrate-engine", "--uid", uid)
    assert result.code == 0, result.out + result.err
    assert re.search(rf"^{uid}\s+already\s+btrfs\s", result.out, re.M), result.out
    assert os.stat(incoming).st_dev == number  # the same subvolume, untouched


def test_a_held_account_lock_leaves_the_account_as_it_is(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    from provbackup.accountlock import account_lock
    from provbackup.config import load_config

    setup = write_config(
        tmp_path, ldap_server, f"[backup]\nroot = {btrfs_root}\n[snapshot]\nlock_wait = 0.5\n"
    )
    uid = "1000341"
    provision_account(ldap_server, setup, btrfs_root, uid, quota=16 * MIB)
    with account_lock(load_config(setup.config), uid, 0):
        result = run(setup, "migrate-engine", "--uid", uid)
    assert result.code == 1 and re.search(rf"^{uid}\s+busy\s", result.out, re.M), result.out
    assert not is_subvolume(home_of(btrfs_root, uid) / "incoming")


def test_an_inactive_account_stays_closed_after_the_move(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = setup_for(tmp_path, ldap_server, btrfs_root, "rsnapshot")
    uid = "1000351"
    provision_account(ldap_server, setup, btrfs_root, uid, quota=16 * MIB, active=False)
    incoming = home_of(btrfs_root, uid) / "incoming"
    result = run(setup, "migrate-engine", "--all")
    assert result.code == 0 and re.search(rf"^{uid}\s+migrated\s", result.out, re.M), result.out
    status = incoming.stat()
    assert is_subvolume(incoming)
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, int(uid), 0o700)


def test_the_copy_forces_the_owner_drops_set_id_bits_and_goes_deep(btrfs_root: Path) -> None:
    from provbackup.work.safe import open_root
    from provbackup.work.treecopy import MAX_OPEN_DIRECTORIES, copy_tree

    source, target = btrfs_root / "source", btrfs_root / "target"
    deep = source.joinpath(*[f"d{n}" for n in range(3 * MAX_OPEN_DIRECTORIES)])
    deep.mkdir(parents=True)
    (deep / "bottom").write_bytes(b"deep down")
    (source / "tool").write_bytes(b"#!/bin/sh\n")
    os.chown(source / "tool", 0, 0)
    (source / "tool").chmod(0o4755)  # root's set-uid file in a customer's tree
    os.mkfifo(source / "pipe")
    (source / "d0" / "sibling").write_bytes(b"after the deep branch")
    target.mkdir()
    with open_root(source) as opened_source, open_root(target) as opened_target:
        count, _top = copy_tree(opened_source, opened_target, 61001, 61002)
    copied = target.joinpath(*[f"d{n}" for n in range(3 * MAX_OPEN_DIRECTORIES)])
    assert (copied / "bottom").read_bytes() == b"deep down"
    assert (target / "d0" / "sibling").read_bytes() == b"after the deep branch"
    tool = (target / "tool").stat()
    assert (tool.st_uid, tool.st_gid, stat.S_IMODE(tool.st_mode)) == (61001, 61002, 0o755)
    assert not (target / "pipe").exists() and count.left_out == 1
    assert count.directories == 3 * MAX_OPEN_DIRECTORIES and count.files == 3
    assert (copied.stat().st_uid, copied.stat().st_gid) == (61001, 61002)


def test_snapshots_still_in_the_first_release_layout_are_refused(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = setup_for(tmp_path, ldap_server, btrfs_root, "rsnapshot")
    uid = "1000361"
    provision_account(ldap_server, setup, btrfs_root, uid, quota=16 * MIB)
    (account_dir(btrfs_root, uid) / "snapshot-layout-pending").write_text("daily.0\n")
    result = run(setup, "migrate-engine", "--uid", uid)
    assert result.code == 1, result.out
    assert re.search(rf"^{uid}\s+failed\s.*first release's layout", result.out, re.M), result.out
    assert not is_subvolume(home_of(btrfs_root, uid) / "incoming")
    assert not (account_dir(btrfs_root, uid) / "engine-migration").exists()
