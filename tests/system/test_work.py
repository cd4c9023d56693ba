"""The work on a real filesystem: tree, ownership, rsnapshot, quota, hooks, delete, safety.

Runs as root (chown really happens) against pytest's tmp_path as the backup
root, with the real /usr/bin/rsnapshot and real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import (
    RSNAPSHOT,
    TEST_GROUP,
    TEST_UID,
    TEST_USER,
    make_config,
    plan_of,
)
from support import make_account as make_account

from provbackup import work
from provbackup.config import (
    BackupConfig,
    Config,
    DeleteConfig,
    HooksConfig,
    QuotaConfig,
    RsnapshotConfig,
)
from provbackup.entry import LdapEntry
from provbackup.errors import (
    RETURN_HOOK,
    RETURN_QUOTA,
    RETURN_RSNAPSHOT,
    RETURN_UNSAFE_PATH,
    UnsafePathError,
    WorkError,
)
from provbackup.model import Account
from provbackup.paths import account_paths

USER = TEST_USER
GROUP = TEST_GROUP
UID = TEST_UID
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the work chowns: run the tests as root"),
    pytest.mark.skipif(not os.path.exists(RSNAPSHOT), reason="needs rsnapshot installed"),
]


# --------------------------------------------------------------------------- helpers


def apply(config: Config, account: Account, verb: str = "add", **options: object) -> list[str]:
    options.setdefault("now", NOW)
    return work.apply_plan(plan_of(account, verb, config), config, **options)  # type: ignore[arg-type]


def tree(path: Path) -> list[tuple]:
    """Every entry below (and including) ``path``: relative path, type, mode, owner, content."""
    entries = []
    for directory, names, files in os.walk(path):
        for name in [".", *names, *files]:
            full = Path(directory) / name if name != "." else Path(directory)
            status = full.lstat()
            if stat.S_ISREG(status.st_mode):
                content = hashlib.sha256(full.read_bytes()).hexdigest()
            elif stat.S_ISLNK(status.st_mode):
                content = os.readlink(full)
            else:
                content = None
            entries.append(
                (
                    str(full.relative_to(path)),
                    stat.S_IFMT(status.st_mode),
                    stat.S_IMODE(status.st_mode),
                    status.st_uid,
                    status.st_gid,
                    content,
                )
            )
    return sorted(set(entries))


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    status = path.lstat()
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def as_user(*argv: str) -> int:
    """Run ``argv`` as the account's user (no supplementary groups); return its exit status."""
    return subprocess.run(
        argv, user=USER, group=GROUP, extra_groups=[], capture_output=True, check=False
    ).returncode


@pytest.fixture
def root(tmp_path: Path) -> Path:
    backup = tmp_path / "backup"
    backup.mkdir()
    return backup


@pytest.fixture
def config(root: Path) -> Config:
    return make_config(root)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the backup root that nothing may ever touch."""
    directory = tmp_path / "outside"
    (directory / "sub").mkdir(parents=True)
    (directory / "secret").write_text("do not touch\n")
    (directory / "sub" / "file").write_text("nor this\n")
    for path in (directory, directory / "sub", directory / "secret", directory / "sub" / "file"):
        os.chown(path, 4242, 4343)
    directory.chmod(0o711)
    (directory / "secret").chmod(0o604)
    return directory


@pytest.fixture
def user_reachable_root() -> Iterator[Path]:
    """A backup root the test user can reach (pytest's tmp_path is 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="provbackup-test-"))
    base.chmod(0o755)
    (base / "backup").mkdir(mode=0o755)
    try:
        yield base / "backup"
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- add / modify


def test_add_creates_the_tree_with_owners_and_modes(config: Config, root: Path) -> None:
    steps = apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    assert owner_and_mode(root / "7") == (0, 0, 0o755)
    assert owner_and_mode(root / "7/707") == (0, 0, 0o755)
    assert owner_and_mode(root / "7/707/723") == (0, 0, 0o755)
    assert owner_and_mode(paths.account) == (0, 0, 0o755)
    assert owner_and_mode(paths.chroot) == (0, 0, 0o755)
    assert owner_and_mode(paths.chroot / "home") == (0, 0, 0o755)
    assert owner_and_mode(paths.home) == (0, GROUP, 0o750)
    assert owner_and_mode(paths.incoming) == (USER, GROUP, 0o700)
    assert owner_and_mode(paths.ssh) == (USER, GROUP, 0o700)
    assert owner_and_mode(paths.snapshots) == (0, GROUP, 0o750)
    assert owner_and_mode(paths.rsnapshot_conf) == (0, 0, 0o644)
    assert paths.rsnapshot_conf.read_text() == plan_of(make_account(), "add", config).rsnapshot_conf
    assert not paths.rsnapshot_conf_inactive.exists()
    assert sorted(os.listdir(paths.home)) == [".snapshots", ".ssh", "incoming"]
    assert any(step.startswith("created") for step in steps)
    assert any(step.startswith("wrote") for step in steps)


def test_add_twice_gives_the_identical_tree(config: Config, root: Path) -> None:
    apply(config, make_account())
    first = tree(root)
    steps = apply(config, make_account(), "modify")
    assert tree(root) == first
    assert not [s for s in steps if s.startswith(("created", "corrected", "wrote", "removed"))]


def test_rerun_after_a_crash_converges(config: Config, root: Path) -> None:
    apply(config, make_account())
    clean = tree(root)
    paths = account_paths(root, "stoney", UID)
    # What a crash half-way and some tampering leave behind.
    paths.account.chmod(0o777)
    os.chown(paths.chroot, USER, GROUP)
    os.chown(paths.home, USER, GROUP)
    paths.home.chmod(0o2777)
    paths.snapshots.rmdir()
    paths.ssh.rmdir()
    paths.rsnapshot_conf.unlink()
    (paths.account / ".provbackup-tmp.rsnapshot.conf.0123456789ab").write_text("half")
    steps = apply(config, make_account())
    assert tree(root) == clean
    assert any("stale temporary" in step for step in steps)
    assert any(step.startswith(f"corrected {paths.home}") for step in steps)


def test_user_data_is_kept_on_modify(config: Config, root: Path) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    (paths.incoming / "data").write_text("mine")
    os.chown(paths.incoming / "data", USER, GROUP)
    (paths.ssh / "authorized_keys").write_text("ssh-ed25519 AAAA")
    apply(config, make_account(retain=(("daily", 3),)), "modify")
    assert (paths.incoming / "data").read_text() == "mine"
    assert (paths.ssh / "authorized_keys").read_text() == "ssh-ed25519 AAAA"
    assert "retain\tdaily\t3\n" in paths.rsnapshot_conf.read_text()
    assert "weekly" not in paths.rsnapshot_conf.read_text()


def test_written_configuration_passes_rsnapshot_configtest(config: Config, root: Path) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    assert work.configtest_file(paths.rsnapshot_conf, config.rsnapshot) == "Syntax OK"


def test_rsnapshot_daily_snapshots_incoming(config: Config, root: Path, outside: Path) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    (paths.incoming / "documents").mkdir()
    (paths.incoming / "documents" / "letter.txt").write_text("dear")
    (paths.incoming / "top.txt").write_text("top")
    os.symlink(outside, paths.incoming / "link-out")
    before = tree(outside)
    subprocess.run(
        [RSNAPSHOT, "-c", str(paths.rsnapshot_conf), "daily"], check=True, capture_output=True
    )
    daily = paths.snapshots / "daily.0"
    # The layout "./": what the client uploaded is at the snapshot's top.
    assert sorted(os.listdir(daily)) == ["documents", "link-out", "top.txt"]
    assert (daily / "documents" / "letter.txt").read_text() == "dear"
    assert (daily / "top.txt").read_text() == "top"
    # A user's symlink is kept as a symlink, not followed.
    assert os.readlink(daily / "link-out") == str(outside)
    assert tree(outside) == before
    # Snapshots are the account group's to read, nobody's to change.
    assert owner_and_mode(daily / "top.txt")[:2] == (0, GROUP)
    assert not owner_and_mode(daily / "top.txt")[2] & 0o022
    assert owner_and_mode(daily)[:2] == (0, GROUP)
    assert not owner_and_mode(daily)[2] & 0o027
    assert not paths.rsnapshot_lock.exists()


def test_user_permissions_and_deactivation(user_reachable_root: Path) -> None:
    root = user_reachable_root
    config = make_config(root)
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    # Active: the user uploads into incoming/ but cannot touch the rest of the home.
    assert as_user("touch", str(paths.incoming / "upload")) == 0
    assert as_user("mkdir", str(paths.incoming / "folder")) == 0
    assert as_user("touch", str(paths.home / "elsewhere")) != 0
    assert as_user("mv", str(paths.snapshots), str(paths.home / "moved")) != 0
    assert as_user("touch", str(paths.snapshots / "planted")) != 0
    assert as_user("touch", str(paths.rsnapshot_conf)) != 0
    subprocess.run([RSNAPSHOT, "-c", str(paths.rsnapshot_conf), "daily"], check=True)
    snapshot = paths.snapshots / "daily.0"
    assert as_user("ls", str(snapshot)) == 0
    assert as_user("touch", str(snapshot / "planted")) != 0
    assert as_user("cat", str(snapshot / "upload")) == 0
    assert as_user("touch", str(snapshot / "upload")) != 0
    assert as_user("rm", "-f", str(snapshot / "upload")) != 0
    assert as_user("touch", str(snapshot / "folder" / "new")) != 0
    assert (snapshot / "upload").exists()

    # Inactive: no uploads anywhere below incoming/, snapshots skipped, data kept.
    steps = apply(config, make_account(active=False), "modify")
    assert as_user("touch", str(paths.incoming / "upload2")) != 0
    assert as_user("touch", str(paths.incoming / "folder" / "inner")) != 0
    assert (paths.incoming / "upload").exists()
    assert not paths.rsnapshot_conf.exists()
    assert paths.rsnapshot_conf_inactive.exists()
    assert owner_and_mode(paths.incoming) == (0, GROUP, 0o700)
    assert as_user("cat", str(snapshot / "upload")) == 0
    assert f"removed {paths.rsnapshot_conf}" in steps

    # Active again: restored.
    apply(config, make_account(active=True), "modify")
    assert as_user("touch", str(paths.incoming / "upload3")) == 0
    assert paths.rsnapshot_conf.exists()
    assert not paths.rsnapshot_conf_inactive.exists()
    assert owner_and_mode(paths.incoming) == (USER, GROUP, 0o700)


def test_inactive_on_add(config: Config, root: Path) -> None:
    apply(config, make_account(active=False))
    paths = account_paths(root, "stoney", UID)
    assert owner_and_mode(paths.incoming) == (0, GROUP, 0o700)
    assert paths.rsnapshot_conf_inactive.exists()
    assert not paths.rsnapshot_conf.exists()


# --------------------------------------------------------------------------- quota


@pytest.fixture
def quota_recorder(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "quota.record"
    script = write_script(
        tmp_path / "setquota",
        "#!/usr/bin/python3\nimport json, sys\n"
        f"with open({str(record)!r}, 'a') as handle:\n"
        "    handle.write(json.dumps(sys.argv[1:]) + '\\n')\n",
    )
    return script, record


def recorded(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_quota_command_runs_with_kib_rounded_up_and_zero_on_delete(
    root: Path, quota_recorder: tuple[Path, Path]
) -> None:
    script, record = quota_recorder
    template = (
        str(script),
        "-u",
        "{uid}",
        "{uidnumber}",
        "{quota_bytes}",
        "{quota_kib}",
        "{filesystem}",
    )
    config = make_config(root, quota=QuotaConfig(command=template, filesystem="/srv"))
    apply(config, make_account(quota_bytes=1025))
    apply(config, make_account(quota_bytes=None), "modify")  # no sstQuota: not run
    apply(config, make_account(quota_bytes=1025), "delete")
    assert recorded(record) == [
        ["-u", UID, "5001", "1025", "2", "/srv"],
        ["-u", UID, "5001", "0", "0", "/srv"],
    ]


def test_failing_quota_command_fails_the_entry(root: Path, tmp_path: Path) -> None:
    script = write_script(
        tmp_path / "badquota", "#!/bin/sh\necho 'setquota: no quota on /srv' >&2\nexit 3\n"
    )
    config = make_config(root, quota=QuotaConfig(command=(str(script), "{uid}")))
    with pytest.raises(WorkError, match="no quota on /srv") as caught:
        apply(config, make_account(quota_bytes=1))
    assert caught.value.return_value == RETURN_QUOTA
    assert "exited with 3" in str(caught.value)


def test_missing_quota_command_is_a_clear_error(root: Path) -> None:
    config = make_config(root, quota=QuotaConfig(command=("/nonexistent/setquota", "{uid}")))
    with pytest.raises(WorkError, match="command not found: /nonexistent/setquota") as caught:
        apply(config, make_account(quota_bytes=1))
    assert caught.value.return_value == RETURN_QUOTA


def test_failed_quota_on_add_converges_on_rerun(
    root: Path, tmp_path: Path, quota_recorder: tuple[Path, Path]
) -> None:
    bad = write_script(tmp_path / "badquota", "#!/bin/sh\nexit 1\n")
    with pytest.raises(WorkError):
        apply(
            make_config(root, quota=QuotaConfig(command=(str(bad),))), make_account(quota_bytes=1)
        )
    script, _ = quota_recorder
    config = make_config(root, quota=QuotaConfig(command=(str(script),)))
    apply(config, make_account(quota_bytes=1))
    once = tree(root)
    fresh = make_config(tmp_path / "fresh", quota=QuotaConfig(command=(str(script),)))
    (tmp_path / "fresh").mkdir()
    apply(fresh, make_account(quota_bytes=1))
    assert [entry[1:5] for entry in once] == [entry[1:5] for entry in tree(tmp_path / "fresh")]


# --------------------------------------------------------------------------- hooks


def hook_script(tmp_path: Path, name: str, body: str = "") -> Path:
    record = tmp_path / f"{name}.json"
    return write_script(
        tmp_path / name,
        "#!/usr/bin/python3\nimport json, os, sys\n"
        "values = {k: v for k, v in os.environ.items() if k.startswith('PROVBACKUP_')}\n"
        "values['exists'] = os.path.exists(os.environ['PROVBACKUP_HOME'])\n"
        f"open({str(record)!r}, 'w').write(json.dumps(values))\n" + body,
    )


def test_hooks_get_the_entry_in_their_environment(
    config: Config, root: Path, tmp_path: Path
) -> None:
    hooks = HooksConfig(
        commands={
            "pre_add": (str(hook_script(tmp_path, "pre_add")),),
            "post_add": (str(hook_script(tmp_path, "post_add")),),
            "post_delete": (str(hook_script(tmp_path, "post_delete")),),
        }
    )
    config = replace(config, hooks=hooks)
    account = make_account(dn="uid=3723707,ou=a b,dc=x")
    steps = apply(config, account)
    paths = account_paths(root, "stoney", UID)
    before = json.loads((tmp_path / "pre_add.json").read_text())
    after = json.loads((tmp_path / "post_add.json").read_text())
    # Each command's own token, which tells whose a process is (work/commands.py).
    assert re.fullmatch(r"[0-9a-f]{16}", before.pop("PROVBACKUP_COMMAND_ID"))
    # Hooks inherit provbackup's environment: a PROVBACKUP_* variable of the caller's
    # (PROVBACKUP_STONEY_SCHEMA for this suite, say) passes through unchanged.
    for name, value in os.environ.items():
        if name.startswith("PROVBACKUP_") and before.get(name) == value:
            del before[name]
    assert before == {
        "PROVBACKUP_ACTION": "add",
        "PROVBACKUP_UID": UID,
        "PROVBACKUP_DN": "uid=3723707,ou=a b,dc=x",
        "PROVBACKUP_UIDNUMBER": str(USER),
        "PROVBACKUP_GIDNUMBER": str(GROUP),
        "PROVBACKUP_ACCOUNT_DIR": str(paths.account),
        "PROVBACKUP_HOME": str(paths.home),
        "PROVBACKUP_ACTIVE": "TRUE",
        "exists": False,
    }
    assert after["exists"] is True
    assert steps[0].startswith("hook pre_add") and steps[-1].startswith("hook post_add")
    apply(config, account, "delete")
    deleted = json.loads((tmp_path / "post_delete.json").read_text())
    assert deleted["PROVBACKUP_ACTION"] == "delete" and deleted["exists"] is False


def test_failing_pre_hook_stops_the_entry_before_any_work(
    config: Config, root: Path, tmp_path: Path
) -> None:
    script = hook_script(tmp_path, "pre_add", "print('hook says no'); sys.exit(4)\n")
    config = replace(config, hooks=HooksConfig(commands={"pre_add": (str(script),)}))
    with pytest.raises(WorkError, match="hook says no") as caught:
        apply(config, make_account())
    assert caught.value.return_value == RETURN_HOOK
    assert "exited with 4" in str(caught.value)
    assert os.listdir(root) == []


def test_hook_timeout_kills_it(config: Config, tmp_path: Path) -> None:
    script = write_script(tmp_path / "slow", "#!/bin/sh\nsleep 30\n")
    config = replace(config, hooks=HooksConfig(commands={"post_add": (str(script),)}, timeout=0.5))
    started = datetime.now(UTC)
    with pytest.raises(WorkError, match="timed out") as caught:
        apply(config, make_account())
    assert caught.value.return_value == RETURN_HOOK
    assert datetime.now(UTC) - started < timedelta(seconds=10)


# --------------------------------------------------------------------------- delete


def test_delete_with_quarantine_moves_the_account(root: Path) -> None:
    config = make_config(root, delete=DeleteConfig(quarantine_days=7))
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    (paths.incoming / "keep").write_text("data")
    steps = apply(config, make_account(), "delete", now=NOW)
    assert not paths.account.exists()
    quarantined = root / ".deleted" / f"{UID}.20260102T030405Z"
    assert (quarantined / "chroot/home" / UID / "incoming/keep").read_text() == "data"
    assert (quarantined / "rsnapshot.conf.inactive").exists()
    assert not (quarantined / "rsnapshot.conf").exists()
    assert owner_and_mode(root / ".deleted") == (0, 0, 0o700)
    assert sorted(os.listdir(root)) == [".deleted"]  # empty layout directories removed
    assert any(step.startswith(f"moved {paths.account}") for step in steps)
    # A second delete of the same uid in the same second gets its own name.
    apply(config, make_account())
    apply(config, make_account(), "delete", now=NOW)
    assert sorted(os.listdir(root / ".deleted")) == [
        f"{UID}.20260102T030405Z",
        f"{UID}.20260102T030405Z.1",
    ]


def test_delete_at_once_removes_the_account_and_empty_parents(config: Config, root: Path) -> None:
    apply(config, make_account())
    apply(config, make_account("1723707"))  # shares 7/707/723
    apply(config, make_account(), "delete")
    assert not (root / "7/707/723" / UID).exists()
    assert (root / "7/707/723/1723707").is_dir()
    apply(config, make_account("1723707"), "delete")
    assert os.listdir(root) == []


def test_delete_of_a_missing_account_is_done_already(config: Config, root: Path) -> None:
    steps = apply(config, make_account(), "delete")
    assert os.listdir(root) == []
    assert any("nothing to remove" in step for step in steps)
    apply(config, make_account())
    apply(config, make_account(), "delete")
    apply(config, make_account(), "delete")
    assert os.listdir(root) == []


def test_delete_refuses_while_rsnapshot_runs(config: Config, root: Path) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    paths.rsnapshot_lock.write_text(f"{os.getpid()}\n")
    with pytest.raises(WorkError, match=r"rsnapshot \(pid \d+\) is running"):
        apply(config, make_account(), "delete")
    assert paths.home.is_dir()
    paths.rsnapshot_lock.unlink()
    apply(config, make_account(), "delete")
    assert not paths.account.exists()


def test_purge_quarantine_after_the_days(root: Path, outside: Path) -> None:
    config = make_config(root, delete=DeleteConfig(quarantine_days=7))
    apply(config, make_account())
    apply(config, make_account(), "delete", now=NOW)
    quarantine = root / ".deleted"
    (quarantine / "notes").write_text("operator's")
    os.symlink(outside, quarantine / "1000.20200101T000000Z")
    before = tree(outside)
    assert work.purge_quarantine(root, 7, NOW + timedelta(days=6, hours=23)).removed == [
        quarantine / "1000.20200101T000000Z"
    ]
    assert (quarantine / f"{UID}.20260102T030405Z").is_dir()
    assert work.purge_quarantine(root, 7, NOW + timedelta(days=7)).removed == [
        quarantine / f"{UID}.20260102T030405Z"
    ]
    assert sorted(os.listdir(quarantine)) == ["notes"]
    assert tree(outside) == before
    naive = (NOW + timedelta(days=30)).replace(tzinfo=None)
    assert work.purge_quarantine(root, 7, naive).removed == []
    (root / "empty").mkdir()
    assert work.purge_quarantine(root / "empty", 7, NOW).removed == []  # no .deleted: nothing to do


# --------------------------------------------------------------------------- safety


def test_account_directory_symlinked_outside_fails_and_touches_nothing(
    config: Config, root: Path, outside: Path
) -> None:
    paths = account_paths(root, "stoney", UID)
    paths.account.parent.mkdir(parents=True)
    os.symlink(outside, paths.account)
    before = tree(outside)
    with pytest.raises(UnsafePathError, match="symbolic link") as caught:
        apply(config, make_account())
    assert str(paths.account) in str(caught.value)
    assert caught.value.return_value == RETURN_UNSAFE_PATH
    assert tree(outside) == before
    assert os.readlink(paths.account) == str(outside)
    with pytest.raises(UnsafePathError):
        apply(config, make_account(), "delete")
    assert tree(outside) == before
    assert paths.account.is_symlink()


def test_layout_directory_symlinked_outside_fails(
    config: Config, root: Path, outside: Path
) -> None:
    os.symlink(outside, root / "7")
    before = tree(outside)
    with pytest.raises(UnsafePathError, match=str(root / "7")):
        apply(config, make_account())
    with pytest.raises(UnsafePathError):
        apply(config, make_account(), "delete")
    assert tree(outside) == before


def test_account_directory_as_a_file_fails(config: Config, root: Path) -> None:
    paths = account_paths(root, "stoney", UID)
    paths.account.parent.mkdir(parents=True)
    paths.account.write_text("not a directory")
    with pytest.raises(UnsafePathError, match="regular file") as caught:
        apply(config, make_account())
    assert str(paths.account) in str(caught.value)
    assert paths.account.read_text() == "not a directory"
    with pytest.raises(UnsafePathError):
        apply(config, make_account(), "delete")
    assert paths.account.read_text() == "not a directory"


@pytest.mark.parametrize("name", [".snapshots", "incoming", ".ssh"])
def test_home_entry_replaced_by_a_symlink_fails_the_modify(
    config: Config, root: Path, outside: Path, name: str
) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    (paths.incoming / "data").write_text("user data")
    if name == "incoming":
        shutil.move(paths.incoming, paths.home / "incoming.old")
    else:
        (paths.home / name).rmdir()
    os.symlink(outside, paths.home / name)
    before = tree(outside)
    for account in (make_account(), make_account(active=False)):
        with pytest.raises(UnsafePathError, match="symbolic link") as caught:
            apply(config, account, "modify")
        assert str(paths.home / name) in str(caught.value)
        assert tree(outside) == before
    assert os.readlink(paths.home / name) == str(outside)
    data = paths.home / ("incoming.old" if name == "incoming" else "incoming") / "data"
    assert data.read_text() == "user data"


def test_symlink_inside_incoming_is_left_on_modify_and_removed_on_delete(
    config: Config, root: Path, outside: Path
) -> None:
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    os.symlink(outside, paths.incoming / "out")
    os.symlink(outside / "secret", paths.incoming / "secret-link")
    (paths.incoming / "sub").mkdir()
    os.symlink(outside / "sub", paths.incoming / "sub" / "deeper")
    before = tree(outside)
    apply(config, make_account(active=False), "modify")
    apply(config, make_account(), "modify")
    assert os.readlink(paths.incoming / "out") == str(outside)
    assert tree(outside) == before
    apply(config, make_account(), "delete")
    assert not paths.account.exists()
    assert tree(outside) == before


def test_symlink_inside_incoming_survives_quarantine_and_purge(root: Path, outside: Path) -> None:
    config = make_config(root, delete=DeleteConfig(quarantine_days=1))
    apply(config, make_account())
    paths = account_paths(root, "stoney", UID)
    os.symlink(outside, paths.incoming / "out")
    before = tree(outside)
    apply(config, make_account(), "delete", now=NOW)
    assert work.purge_quarantine(root, 1, NOW + timedelta(days=2)).removed
    assert os.listdir(root / ".deleted") == []
    assert tree(outside) == before


def test_backup_root_must_exist(tmp_path: Path) -> None:
    config = make_config(tmp_path / "not-mounted")
    with pytest.raises(WorkError, match="does not exist"):
        apply(config, make_account())
    assert not (tmp_path / "not-mounted").exists()


# --------------------------------------------------------------------------- configtest


@pytest.fixture
def counting_rsnapshot(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "rsnapshot.calls"
    script = write_script(
        tmp_path / "rsnapshot-wrapper",
        f'#!/bin/sh\necho "$*" >> {log}\nexec {RSNAPSHOT} "$@"\n',
    )
    return script, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_config_tester_runs_configtest_once_per_shape(
    root: Path, counting_rsnapshot: tuple[Path, Path]
) -> None:
    script, log = counting_rsnapshot
    config = make_config(root, rsnapshot=RsnapshotConfig(command=str(script), configtest="yes"))
    with work.WorkSession(config) as session:
        for number in range(3723700, 3723720):
            session.apply(plan_of(make_account(str(number)), "add", config), NOW)
        assert len(calls(log)) == 1
        assert calls(log)[0].endswith("configtest")
        # A broken shape (daily 1 with a second level) still fails, and is tested once.
        broken = make_account("3723799", retain=(("daily", 1), ("weekly", 4)))
        for _ in range(2):
            with pytest.raises(WorkError, match="retention count set to 1") as caught:
                session.apply(plan_of(broken, "add", config), NOW)
            assert caught.value.return_value == RETURN_RSNAPSHOT
        assert len(calls(log)) == 2
        broken_paths = account_paths(root, "stoney", "3723799")
        assert not broken_paths.rsnapshot_conf.exists()
        assert session.tester.invocations == 2
    # Each written file really passes.
    for number in (3723700, 3723719):
        paths = account_paths(root, "stoney", str(number))
        assert work.configtest_file(paths.rsnapshot_conf, config.rsnapshot) == "Syntax OK"
    # The failed add converges once the entry is fixed.
    fixed = make_account("3723799", retain=(("daily", 2), ("weekly", 4)))
    apply(config, fixed)
    assert work.configtest_file(broken_paths.rsnapshot_conf, config.rsnapshot) == "Syntax OK"


def test_strict_tester_checks_each_file_and_keeps_a_failing_one_out(
    root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls"
    # Fails the configtest of any account's own (temporary) file, passes the canonical ones.
    script = write_script(
        tmp_path / "picky-rsnapshot",
        f'#!/bin/sh\necho "$*" >> {log}\n'
        'case "$2" in *provbackup-tmp*) echo "ERROR: picky says no"; exit 1;; esac\n'
        f'exec {RSNAPSHOT} "$@"\n',
    )
    config = make_config(root, rsnapshot=RsnapshotConfig(command=str(script), configtest="yes"))
    tester = work.ConfigTester(config.rsnapshot, strict=True)
    with pytest.raises(WorkError, match="picky says no") as caught:
        apply(config, make_account(), tester=tester)
    assert caught.value.return_value == RETURN_RSNAPSHOT
    paths = account_paths(root, "stoney", UID)
    # No conf, no temporary file; the ownership record is written before any of it.
    assert sorted(os.listdir(paths.account)) == [".provbackup-owner", "chroot"]
    assert len(log.read_text().splitlines()) == 2
    tester.close()


@pytest.mark.parametrize("name", ["back up", "back(up"])
def test_unusual_root_paths_get_each_file_configtested(
    tmp_path: Path, counting_rsnapshot: tuple[Path, Path], name: str
) -> None:
    # A path rsnapshot might read differently is not covered by the shape test.
    script, log = counting_rsnapshot
    root = tmp_path / name
    root.mkdir()
    config = make_config(root, rsnapshot=RsnapshotConfig(command=str(script), configtest="yes"))
    with work.WorkSession(config) as session:
        plan = plan_of(make_account(), "add", config)
        if "(" in name:
            # rsnapshot puts backup sources into a Perl regex: "(" breaks it.
            with pytest.raises(WorkError, match=r"Unmatched \(") as caught:
                session.apply(plan, NOW)
            assert caught.value.return_value == RETURN_RSNAPSHOT
            assert not plan.paths.rsnapshot_conf.exists()
        else:
            session.apply(plan, NOW)
            session.apply(plan, NOW)
            assert plan.paths.rsnapshot_conf.exists()
    assert len(calls(log)) == (2 if "(" in name else 3)


def test_configtest_auto_skips_a_missing_rsnapshot_and_yes_fails(root: Path) -> None:
    auto = make_config(root, rsnapshot=RsnapshotConfig(command="/nonexistent/rsnapshot"))
    steps = apply(auto, make_account())
    assert "configtest skipped (rsnapshot not installed)" in steps
    strict = make_config(
        root, rsnapshot=RsnapshotConfig(command="/nonexistent/rsnapshot", configtest="yes")
    )
    with pytest.raises(WorkError, match="not found") as caught:
        apply(strict, make_account(), "modify")
    assert caught.value.return_value == RETURN_RSNAPSHOT


def test_configtest_file_reports_the_error_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("config_version\t1.2\nsnapshot_root\t/nonexistent/\nno_create_root\t1\n")
    with pytest.raises(WorkError, match=r"rsnapshot configtest failed: .*ERROR") as caught:
        work.configtest_file(conf, RsnapshotConfig(command=RSNAPSHOT))
    assert caught.value.return_value == RETURN_RSNAPSHOT


# --------------------------------------------------------------------------- jail template


def jailed(root: Path, uid: str = UID, **changes: object) -> Account:
    home = account_paths(root, "stoney", uid).expected_home_directory
    return make_account(uid, home_directory=home, **changes)


def test_jail_template_is_copied_without_following_links(
    root: Path, tmp_path: Path, outside: Path
) -> None:
    template = tmp_path / "template"
    (template / "bin").mkdir(parents=True)
    (template / "lib").mkdir()
    (template / "etc").mkdir()
    (template / "home" / "intruder").mkdir(parents=True)
    (template / "bin" / "tool").write_text("#!/bin/sh\n")
    (template / "bin" / "tool").chmod(0o755)
    (template / "etc" / "passwd").write_text(f"root:x:0:0::/root:/bin/sh\n{UID}:x:1:1::/:/x\n")
    os.symlink("lib", template / "lib64")
    os.symlink(outside, template / "escape")
    os.mkfifo(template / "etc" / "pipe")
    config = make_config(root, backup=BackupConfig(root=root, jail_template=template))
    steps = apply(config, jailed(root))
    chroot = account_paths(root, "stoney", UID).chroot
    assert (chroot / "bin" / "tool").read_text() == "#!/bin/sh\n"
    assert owner_and_mode(chroot / "bin" / "tool") == (0, 0, 0o755)
    assert os.readlink(chroot / "lib64") == "lib"
    assert os.readlink(chroot / "escape") == str(outside)
    assert stat.S_ISFIFO((chroot / "etc" / "pipe").lstat().st_mode)
    assert not (chroot / "home" / "intruder").exists()
    assert any(step.startswith(f"jail template {template}") for step in steps)
    # The account's own line replaces the template's line for that name.
    passwd = (chroot / "etc" / "passwd").read_text()
    assert passwd == f"root:x:0:0::/root:/bin/sh\n{UID}:x:{USER}:{GROUP}::/home/{UID}:/bin/sh\n"
    assert (chroot / "etc" / "group").read_text().endswith(f"{UID}:x:{GROUP}:\n")
    assert (chroot / "etc" / "passwd").stat().st_nlink == 1
    # A changed template file is replaced; a jail file the template lacks stays.
    (chroot / "etc" / "local").write_text("operator's")
    once = tree(root)
    steps = apply(config, jailed(root), "modify")
    assert tree(root) == once
    assert not any("jail template" in step for step in steps)
    (template / "etc" / "passwd").write_text("root:x:0:0:changed:/root:/bin/sh\n")
    apply(config, jailed(root), "modify")
    assert (chroot / "etc" / "passwd").read_text().startswith("root:x:0:0:changed:")
    assert (chroot / "etc" / "local").read_text() == "operator's"


def test_jail_template_never_writes_through_a_jail_symlink(
    root: Path, tmp_path: Path, outside: Path
) -> None:
    template = tmp_path / "template"
    (template / "etc").mkdir(parents=True)
    (template / "etc" / "passwd").write_text("x\n")
    config = make_config(root, backup=BackupConfig(root=root, jail_template=template))
    apply(config, jailed(root))
    chroot = account_paths(root, "stoney", UID).chroot
    shutil.rmtree(chroot / "etc")
    os.symlink(outside, chroot / "etc")
    before = tree(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        apply(config, jailed(root), "modify")
    assert tree(outside) == before


# --------------------------------------------------------------------------- inspect


def test_inspect_account(config: Config, root: Path, outside: Path) -> None:
    paths = account_paths(root, "stoney", UID)
    missing = work.inspect_account(paths)
    assert missing["exists"] is False
    assert missing["entries"]["home"]["type"] == "missing"
    assert missing["rsnapshot_conf"] == "missing"
    apply(config, make_account())
    view = work.inspect_account(paths)
    assert view["exists"] is True
    assert view["entries"]["home"] == {
        "path": str(paths.home),
        "type": "directory",
        "owner": 0,
        "group": GROUP,
        "mode": "0750",
    }
    assert view["rsnapshot_conf"] == "active"
    assert view["newest_snapshot"] is None
    subprocess.run([RSNAPSHOT, "-c", str(paths.rsnapshot_conf), "daily"], check=True)
    assert work.inspect_account(paths)["newest_snapshot"]["name"] == "daily.0"
    json.dumps(work.inspect_account(paths))
    entry = LdapEntry.from_values("uid=3723707,dc=x", {"uid": [UID]})
    by_entry = work.inspect_entry(entry, config)
    # The entry's view adds whom the directory is recorded for (no entryUUID here).
    # The server that made it (the host's name: [backup] server_name is not set here).
    assert by_entry.pop("owner") == (
        f"entryUUID None, uidNumber 5001, gidNumber 5002, server {socket.getfqdn()}"
    )
    assert by_entry == work.inspect_account(paths)
    apply(config, make_account(active=False), "modify")
    assert work.inspect_account(paths)["rsnapshot_conf"] == "inactive"
    shutil.rmtree(paths.snapshots)
    os.symlink(outside, paths.snapshots)
    view = work.inspect_account(paths)
    assert view["entries"]["snapshots"]["type"] == "symbolic link"
    assert view["newest_snapshot"] is None
    shutil.rmtree(paths.incoming)
    os.symlink(outside, paths.home / "incoming")
    assert work.inspect_account(paths)["entries"]["incoming"]["type"] == "symbolic link"
