"""``[backup] engine = btrfs`` end to end: process, snapshot, show and delete on a real btrfs.

Accounts come from entries in a real slapd through ``process``; snapshots
from ``provbackup snapshot``; customers are real uids (``setpriv``); the
backup root is a directory on the suite's loop-mounted btrfs.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from btrfs_image import BtrfsImage, customer, subvolume_ids
from support import (
    account_dir,
    home_of,
    modify_entry,
    provision_account,
    read_entry,
    run,
    write_config,
)

from provbackup.engines.btrfs import MAX_NESTED_SUBVOLUMES
from provbackup.work import btrfs_ioctl
from provbackup.work.purge import purge_quarantine
from sandbox import account_entry, jailkit_home_directory

MIB = 1 << 20


def btrfs_setup(tmp_path: Path, server, root: Path, extra: str = ""):
    return write_config(
        tmp_path, server, f"[backup]\nroot = {root}\nengine = btrfs\n{extra}"
    )  # fmt: skip


def ids(uid: str) -> tuple[int, int]:
    """The uidNumber and gidNumber sandbox.account_entry gives ``uid``."""
    return int(uid), int(uid)


def write_as_customer(uid: str, target: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    number, group = ids(uid)
    made = customer(number, group, "mkdir", "-p", str(target.parent))
    assert made.returncode == 0, made.stderr
    return subprocess.run(
        ["setpriv", f"--reuid={number}", f"--regid={group}", "--clear-groups", "dd",
         f"of={target}", "status=none", "bs=1M"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip


def qgroup(path: Path, field: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.sync()
        number = btrfs_ioctl.subvolume_id(fd)
        return btrfs_ioctl.read_qgroup(
            btrfs_ioctl.fsid(fd), btrfs_ioctl.qgroup_id(1, number), field
        )  # fmt: skip
    finally:
        os.close(fd)


def test_add_snapshot_modify_and_delete_an_account(
    tmp_path: Path, ldap_server, btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root)
    uid = "1000101"
    dn = provision_account(
        ldap_server, setup, btrfs_root, uid, quota=24 * MIB, intervals={"daily": 2, "weekly": 1}
    )
    home = home_of(btrfs_root, uid)
    incoming = home / "incoming"
    assert incoming.stat().st_ino == btrfs_ioctl.SUBVOLUME_ROOT_INODE
    status = incoming.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (
        int(uid),
        int(uid),
        0o700,
    )
    assert qgroup(incoming, "max_referenced") == 24 * MIB
    assert not (tmp_path / "quota.log").exists()  # the qgroup, not the [quota] command

    # The customer's upload, Sepiola's marker, and one upload too many.
    assert write_as_customer(uid, incoming / "laptop" / "backup" / "f", b"v1").returncode == 0
    write_as_customer(uid, incoming / "laptop" / ".sepiola_backup" / "backupTime", b"TODAY")
    too_big = write_as_customer(uid, incoming / "laptop" / "big", os.urandom(30 * MIB))
    assert too_big.returncode != 0 and b"Disk quota exceeded" in too_big.stderr
    customer(int(uid), int(uid), "rm", "-f", str(incoming / "laptop" / "big"))

    daily = run(setup, "snapshot", "daily")
    assert daily.code == 0, daily.out + daily.err
    assert re.search(rf"^done\s+{uid}\s", daily.out, re.M)
    snapshot = home / ".snapshots" / "daily.0"
    fd = os.open(snapshot, os.O_RDONLY)
    try:
        assert btrfs_ioctl.is_read_only(fd)
    finally:
        os.close(fd)
    assert (snapshot / "laptop" / "backup" / "f").read_bytes() == b"v1"
    fixed = (snapshot / "laptop" / ".sepiola_backup" / "backupTime").read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", fixed)
    assert (incoming / "laptop" / ".sepiola_backup" / "backupTime").read_bytes() == b"TODAY"
    usage = (account_dir(btrfs_root, uid) / "chroot/etc/provbackup/usage").read_text().split()
    assert int(usage[0]) == 24 * MIB and int(usage[1]) > 0

    shown = run(setup, "show", uid)
    assert "btrfs (experimental)" in shown.out
    assert re.search(r"qgroup 1/\d+: \d+ bytes referenced, limit 25165824 bytes", shown.out)

    modify_entry(ldap_server, dn, {"sstQuota": [str(64 * MIB)], "sstProvisioningMode": ["modify"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0
    assert qgroup(incoming, "max_referenced") == 64 * MIB
    assert write_as_customer(uid, incoming / "laptop" / "big", os.urandom(30 * MIB)).returncode == 0

    modify_entry(ldap_server, dn, {"sstProvisioningMode": ["delete"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    deleted = run(setup, "process")
    assert deleted.code == 0, deleted.out + deleted.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not account_dir(btrfs_root, uid).exists()
    assert subvolume_ids(btrfs_image.mount) == before


def test_quarantined_btrfs_account_is_purged_with_its_subvolumes(
    tmp_path: Path, ldap_server, btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root, "[delete]\nquarantine_days = 7\n")
    uid = "1000102"
    dn = provision_account(ldap_server, setup, btrfs_root, uid)
    write_as_customer(uid, home_of(btrfs_root, uid) / "incoming" / "h" / "f", b"x")
    assert run(setup, "snapshot", "daily").code == 0
    modify_entry(ldap_server, dn, {"sstProvisioningMode": ["delete"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0
    (moved,) = os.listdir(btrfs_root / ".deleted")
    assert len(subvolume_ids(btrfs_image.mount) - before) == 2  # incoming/, daily.0
    later = datetime.now(UTC) + timedelta(days=8)
    assert purge_quarantine(btrfs_root, 7, later).removed == [btrfs_root / ".deleted" / moved]
    assert subvolume_ids(btrfs_image.mount) == before


def test_dry_run_says_what_btrfs_would_do_and_does_nothing(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root)
    dn, attributes = account_entry(
        "1000103", base_dn=ldap_server.accounts_dn,
        home_directory=jailkit_home_directory(btrfs_root, "1000103"), quota=8 * MIB,
    )  # fmt: skip
    ldap_server.add_entries([(dn, attributes)])
    planned = run(setup, "process", "--dry-run")
    assert planned.code == 0, planned.err
    assert "incoming a btrfs subvolume in its own qgroup" in planned.out
    assert "btrfs qgroup of incoming/ and its snapshots limited to 8388608 bytes" in planned.out
    assert not home_of(btrfs_root, "1000103").exists()
    assert run(setup, "process").code == 0
    result = run(setup, "snapshot", "daily", "--dry-run")
    assert result.code == 0, result.err
    assert re.search(r"^would\s+1000103\s.*btrfs: read-only daily\.0", result.out, re.M)
    assert os.listdir(home_of(btrfs_root, "1000103") / ".snapshots") == []


def test_btrfs_engine_on_another_filesystem_exits_78(tmp_path: Path, ldap_server) -> None:
    root = tmp_path / "backup"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    try:
        if btrfs_ioctl.is_btrfs(fd):
            pytest.skip("the temporary directory is on btrfs here")
    finally:
        os.close(fd)
    setup = btrfs_setup(tmp_path, ldap_server, root)
    dn, attributes = account_entry("1000104", base_dn=ldap_server.accounts_dn)
    ldap_server.add_entries([(dn, attributes)])
    for command in (("process",), ("snapshot", "daily")):
        result = run(setup, *command)
        assert result.code == 78, (command, result.out, result.err)
        assert "not on a btrfs filesystem" in result.err
    # nothing claimed
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"]


def test_a_full_account_can_still_be_deactivated_and_its_quota_changed(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root)
    uid = "1000105"
    dn = provision_account(ldap_server, setup, btrfs_root, uid, quota=8 * MIB)
    incoming = home_of(btrfs_root, uid) / "incoming"
    assert write_as_customer(uid, incoming / "h" / "fill", os.urandom(12 * MIB)).returncode != 0
    modify_entry(ldap_server, dn, {"sstIsActive": ["FALSE"], "sstQuota": [str(6 * MIB)],
                                   "sstProvisioningMode": ["modify"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    status = incoming.stat()
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (0, 0o700)  # closed to the customer
    assert qgroup(incoming, "max_referenced") == 6 * MIB


def test_rsnapshot_engine_on_btrfs_deletes_as_before(
    tmp_path: Path, ldap_server, btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    before = subvolume_ids(btrfs_image.mount)
    setup = write_config(tmp_path, ldap_server, f"[backup]\nroot = {btrfs_root}\n")
    uid = "1000106"
    dn = provision_account(ldap_server, setup, btrfs_root, uid)
    incoming = home_of(btrfs_root, uid) / "incoming"
    assert incoming.stat().st_ino != btrfs_ioctl.SUBVOLUME_ROOT_INODE  # a plain directory
    (incoming / "h").mkdir()
    (incoming / "h" / "f").write_bytes(b"x")
    assert run(setup, "snapshot", "daily").code == 0
    assert (home_of(btrfs_root, uid) / ".snapshots" / "daily.0" / "h" / "f").is_file()
    modify_entry(ldap_server, dn, {"sstProvisioningMode": ["delete"],
                                   "sstProvisioningState": ["0"]})  # fmt: skip
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    assert not account_dir(btrfs_root, uid).exists()
    assert subvolume_ids(btrfs_image.mount) == before


def test_check_warns_when_a_customer_made_the_qgroup_figures_inconsistent(
    tmp_path: Path, ldap_server, btrfs_image: BtrfsImage, btrfs_root: Path
) -> None:
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root)
    uid = "1000107"
    provision_account(ldap_server, setup, btrfs_root, uid)
    assert "qgroup figures inconsistent" not in run(setup, "check").out
    incoming = home_of(btrfs_root, uid) / "incoming"
    write_as_customer(uid, incoming / "h" / "f", os.urandom(MIB))
    # A snapshot the customer makes of their own incoming/ joins no qgroup: the kernel
    # can then no longer keep the shared figures exact.
    made = customer(int(uid), int(uid), "btrfs", "subvolume", "snapshot", str(incoming),
                    str(incoming / "mine"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    os.sync()
    try:
        assert "btrfs qgroup figures inconsistent" in run(setup, "check").out
    finally:
        rescan = subprocess.run(
            ["btrfs", "quota", "rescan", "-w", str(btrfs_image.mount)], capture_output=True
        )
        assert rescan.returncode == 0, rescan.stderr
    assert "qgroup figures inconsistent" not in run(setup, "check").out


def test_customer_made_subvolumes_past_the_limit_fail_their_account_with_the_reason(
    tmp_path: Path, ldap_server, btrfs_root: Path
) -> None:
    setup = btrfs_setup(tmp_path, ldap_server, btrfs_root)
    uid, other = "1000108", "1000109"
    provision_account(ldap_server, setup, btrfs_root, uid)
    provision_account(ldap_server, setup, btrfs_root, other)
    incoming = home_of(btrfs_root, uid) / "incoming"
    write_as_customer(uid, incoming / "h" / "f", b"x")
    assert run(setup, "snapshot", "daily").code == 0
    number, group = ids(uid)
    script = "; ".join(
        f"btrfs subvolume create s{n} >/dev/null" for n in range(MAX_NESTED_SUBVOLUMES + 8)
    )
    made = customer(number, group, "sh", "-ec", script, cwd=incoming)
    assert made.returncode == 0, made.stderr
    result = run(setup, "snapshot", "daily")
    assert result.code == 1, result.out + result.err
    row = re.search(rf"^failed\s+{uid}\s.*$", result.out, re.M)
    assert row, result.out
    assert str(account_dir(btrfs_root, uid)) in row[0]
    assert f"more than {MAX_NESTED_SUBVOLUMES} subvolumes made inside incoming/" in row[0]
    assert f"counting stopped at {MAX_NESTED_SUBVOLUMES + 1}" in row[0]
    # the other account is snapshotted as usual; the refused one keeps its snapshot
    assert re.search(rf"^done\s+{other}\s", result.out, re.M)
    assert os.listdir(home_of(btrfs_root, uid) / ".snapshots") == ["daily.0"]
    # the operator deletes them (as root): the next run snapshots the account again
    for n in range(MAX_NESTED_SUBVOLUMES + 8):
        deleted = subprocess.run(
            ["btrfs", "subvolume", "delete", str(incoming / f"s{n}")], capture_output=True
        )
        assert deleted.returncode == 0, deleted.stderr
    again = run(setup, "snapshot", "daily")
    assert again.code == 0, again.out + again.err
    assert re.search(rf"^done\s+{uid}\s", again.out, re.M)


def test_check_names_the_btrfs_quota_feature_it_found(
    tmp_path: Path, ldap_server, btrfs_root: Path, btrfs_simple_image: BtrfsImage
) -> None:
    full = run(btrfs_setup(tmp_path, ldap_server, btrfs_root), "check")
    assert "btrfs engine: full qgroups" in full.out, full.out
    assert "simple quotas" not in full.out
    root = btrfs_simple_image.mount / f"check-{os.getpid()}"
    root.mkdir()
    other = tmp_path / "simple"
    other.mkdir()
    simple = run(btrfs_setup(other, ldap_server, root), "check")
    assert "btrfs engine: simple quotas (squota)" in simple.out, simple.out
    assert "full qgroups" not in simple.out
