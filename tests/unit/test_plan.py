"""The pure plan: account paths, homeDirectory checks, rsnapshot.conf text, quota argv."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support import TEST_ROOT, make_account, make_config, plan_of

from provbackup import plan as planning
from provbackup.config import BackupConfig, DeleteConfig, QuotaConfig, RsnapshotConfig
from provbackup.errors import RETURN_UNSAFE_PATH, InvalidEntryError, UnsafePathError
from provbackup.paths import account_paths, check_home_directory

ROOT = TEST_ROOT
QUOTA_TEMPLATE = ("setquota", "-u", "{uid}", "0", "{quota_kib}", "0", "0", "{filesystem}")


def test_stoney_layout_documented_example() -> None:
    paths = account_paths(ROOT, "stoney", "3723707")
    account = Path("/var/backup/7/707/723/3723707")
    assert paths.account == account
    assert paths.chroot == account / "chroot"
    assert paths.home == account / "chroot/home/3723707"
    assert paths.incoming == account / "chroot/home/3723707/incoming"
    assert paths.ssh == account / "chroot/home/3723707/.ssh"
    assert paths.snapshots == account / "chroot/home/3723707/.snapshots"
    assert paths.rsnapshot_conf == account / "rsnapshot.conf"
    assert paths.rsnapshot_conf_inactive == account / "rsnapshot.conf.inactive"
    assert paths.rsnapshot_lock == account / "rsnapshot.pid"
    assert paths.expected_home_directory == "/var/backup/7/707/723/3723707/chroot/./home/3723707"
    assert paths.layout_directories == (
        ROOT / "7",
        ROOT / "7/707",
        ROOT / "7/707/723",
    )


@pytest.mark.parametrize(
    ("uid", "relative"),
    [
        ("42", "2/042/000/42"),
        ("123456", "6/456/123/123456"),
        ("1000", "0/000/001/1000"),
        ("98765432", "2/432/765/98765432"),
    ],
)
def test_stoney_layout_pads_to_six_digits(uid: str, relative: str) -> None:
    assert account_paths(ROOT, "stoney", uid).account == ROOT / relative


def test_stoney_layout_needs_a_numeric_uid() -> None:
    with pytest.raises(InvalidEntryError, match="stoney layout needs a numeric uid") as caught:
        account_paths(ROOT, "stoney", "alice")
    assert caught.value.attribute == "uid"
    assert caught.value.value == "alice"


def test_flat_layout() -> None:
    paths = account_paths(ROOT, "flat", "alice")
    assert paths.account == ROOT / "alice"
    assert paths.home == ROOT / "alice/chroot/home/alice"
    assert paths.layout_directories == ()


@pytest.mark.parametrize("uid", ["..", "a/b", ".hidden", "", "x\ny"])
def test_unsafe_uid_is_refused(uid: str) -> None:
    with pytest.raises(InvalidEntryError):
        account_paths(ROOT, "flat", uid)


@pytest.mark.parametrize(
    "home",
    [
        "/var/backup/7/707/723/3723707/chroot/./home/3723707",
        "/var/backup/7/707/723/3723707/chroot/home/3723707",
        "/var/backup/7/707/723/3723707/chroot/home/3723707/",
        "/var/backup//7/707/723/3723707/chroot/./home/3723707",
    ],
)
def test_home_directory_in_the_jail_is_accepted(home: str) -> None:
    paths = account_paths(ROOT, "stoney", "3723707")
    check_home_directory(home, paths)  # raises UnsafePathError when refused
    # The same home one character off is not accepted: the check compares, not trusts.
    with pytest.raises(UnsafePathError):
        check_home_directory(home.replace("3723707", "3723708", 1), paths)


@pytest.mark.parametrize(
    ("home", "reason"),
    [
        ("/home/3723707", "outside the backup root"),
        ("/var/backupx/7/707/723/3723707/chroot/./home/3723707", "outside the backup root"),
        ("/var/backup/7/707/723/3723707/chroot/home/x/../3723707", "contains '..'"),
        ("/var/backup/../etc", "contains '..'"),
        ("/var/backup/3723707/chroot/./home/3723707", "not this account's home"),
        ("/var/backup/7/707/723/3723708/chroot/./home/3723708", "not this account's home"),
        ("/var/backup/7/707/723/3723707", "not this account's home"),
        ("relative/path", "not an absolute path"),
    ],
)
def test_home_directory_elsewhere_is_unsafe(home: str, reason: str) -> None:
    with pytest.raises(UnsafePathError, match=reason) as caught:
        check_home_directory(home, account_paths(ROOT, "stoney", "3723707"))
    assert caught.value.attribute == "homeDirectory"
    assert caught.value.value == home
    assert caught.value.return_value == RETURN_UNSAFE_PATH
    assert "homeDirectory" in str(caught.value)
    assert repr(home) in str(caught.value)


def test_rsnapshot_conf_fields_are_tab_separated() -> None:
    text = plan_of(make_account()).rsnapshot_conf
    home = "/var/backup/7/707/723/3723707/chroot/home/3723707"
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == "config_version\t1.2"
    assert f"snapshot_root\t{home}/.snapshots/" in lines
    assert "no_create_root\t1" in lines
    assert "cmd_rsync\t/usr/bin/rsync" in lines
    assert "one_fs\t1" in lines
    assert "lockfile\t/var/backup/7/707/723/3723707/rsnapshot.pid" in lines
    assert lines[-1] == f"backup\t{home}/incoming/\t./"
    # rsync must not rebuild the server's absolute path below the snapshot.
    long_args = next(line for line in lines if line.startswith("rsync_long_args\t"))
    assert "--relative" not in long_args
    assert "--chown=0:5002" in long_args
    assert "ug-s" in long_args
    for line in lines:
        assert "  " not in line and " \t" not in line
        assert "\t" in line


def test_retain_lines_are_the_accounts_intervals_in_order() -> None:
    account = make_account(retain=(("hourly", 2), ("daily", 7), ("monthly", 3), ("yearly", 1)))
    text = plan_of(account).rsnapshot_conf
    retains = [line for line in text.splitlines() if line.startswith("retain")]
    assert retains == [
        "retain\thourly\t2",
        "retain\tdaily\t7",
        "retain\tmonthly\t3",
        "retain\tyearly\t1",
    ]


def test_a_delete_writes_no_configuration() -> None:
    plan = plan_of(make_account(retain=()), "delete")
    assert (plan.rsnapshot_conf, plan.directories) == ("", ())


def test_dn_with_newlines_cannot_add_configuration_lines() -> None:
    dn = "uid=3723707,ou=a\nbackup\t/etc/\tetc/\r\u2028cmd_rsync\t/bin/sh,dc=x"
    text = plan_of(make_account(dn=dn)).rsnapshot_conf
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("backup")] == [
        "backup\t/var/backup/7/707/723/3723707/chroot/home/3723707/incoming/\t./"
    ]
    assert [line for line in lines if line.startswith("cmd_rsync")] == ["cmd_rsync\t/usr/bin/rsync"]
    comment = lines[0]
    assert comment.startswith("#") and "\\n" in comment and "\\t" in comment
    assert "\\u2028" in comment


def test_quota_argv_from_template_rounds_kib_up() -> None:
    config = make_config(quota=QuotaConfig(command=QUOTA_TEMPLATE, filesystem="/srv"))
    for quota_bytes, kib in ((1025, "2"), (1024, "1"), (1, "1"), (0, "0")):
        plan = plan_of(make_account(quota_bytes=quota_bytes), "add", config)
        assert plan.quota_argv == ("setquota", "-u", "3723707", "0", kib, "0", "0", "/srv")


def test_quota_placeholders_and_default_filesystem() -> None:
    template = ("q", "{uid}", "{uidnumber}", "{gidnumber}", "{quota_bytes}", "{filesystem}")
    config = make_config(quota=QuotaConfig(command=template))
    plan = plan_of(make_account(quota_bytes=2048), "modify", config)
    assert plan.quota_argv == ("q", "3723707", "5001", "5002", "2048", "/var/backup")


def test_quota_on_delete_is_zero() -> None:
    config = make_config(quota=QuotaConfig(command=QUOTA_TEMPLATE, filesystem="/srv"))
    plan = plan_of(make_account(quota_bytes=10**9), "delete", config)
    assert plan.quota_argv == ("setquota", "-u", "3723707", "0", "0", "0", "0", "/srv")
    plan = plan_of(make_account(quota_bytes=None), "delete", config)
    assert plan.quota_argv is not None and plan.quota_argv[4] == "0"


def test_no_quota_attribute_means_no_quota_command() -> None:
    config = make_config(quota=QuotaConfig(command=QUOTA_TEMPLATE))
    plan = plan_of(make_account(quota_bytes=None), "add", config)
    assert plan.quota_argv is None
    assert "sstQuota" in plan.quota_note
    assert any("sstQuota" in line for line in planning.describe(plan))


def test_quota_disabled_without_command() -> None:
    plan = plan_of(make_account(quota_bytes=4096))
    assert plan.quota_argv is None
    assert "[quota] command" in plan.quota_note


def test_ownership_and_modes_of_an_active_account() -> None:
    specs = {spec.path: spec for spec in plan_of(make_account()).directories}
    paths = account_paths(ROOT, "stoney", "3723707")
    expected = {
        ROOT / "7": (0, 0, 0o755),
        ROOT / "7/707": (0, 0, 0o755),
        ROOT / "7/707/723": (0, 0, 0o755),
        paths.account: (0, 0, 0o755),
        paths.chroot: (0, 0, 0o755),
        paths.chroot / "home": (0, 0, 0o755),
        paths.home: (0, 5002, 0o750),
        paths.incoming: (5001, 5002, 0o700),
        paths.ssh: (5001, 5002, 0o700),
        paths.snapshots: (0, 5002, 0o750),
    }
    assert {path: (spec.uid, spec.gid, spec.mode) for path, spec in specs.items()} == expected
    # Parents come before children: the work creates them in this order.
    order = [spec.path for spec in plan_of(make_account()).directories]
    for index, path in enumerate(order):
        assert path.parent == ROOT or path.parent in order[:index]


def test_inactive_account_closes_incoming_and_parks_the_configuration() -> None:
    plan = plan_of(make_account(active=False), "modify")
    incoming = next(spec for spec in plan.directories if spec.path == plan.paths.incoming)
    assert (incoming.uid, incoming.gid, incoming.mode) == (0, 5002, 0o700)
    assert plan.conf_path == plan.paths.rsnapshot_conf_inactive
    assert plan.stale_conf_path == plan.paths.rsnapshot_conf
    active = plan_of(make_account(active=True), "modify")
    assert active.conf_path == active.paths.rsnapshot_conf
    assert active.stale_conf_path == active.paths.rsnapshot_conf_inactive


def test_plan_takes_rsync_quota_and_quarantine_from_the_config() -> None:
    config = make_config(
        rsnapshot=RsnapshotConfig(rsync="/opt/rsync"),
        quota=QuotaConfig(command=("q", "{quota_kib}", "{filesystem}")),
        backup=BackupConfig(root=ROOT, jail_template=Path("/etc/provbackup/jail")),
    )
    config = replace(config, delete=replace(config.delete, quarantine_days=3))
    added = plan_of(make_account(quota_bytes=4096), "add", config)
    assert "cmd_rsync\t/opt/rsync" in added.rsnapshot_conf
    assert added.quota_argv == ("q", "4", "/var/backup")
    assert added.jail_template == Path("/etc/provbackup/jail")
    assert plan_of(make_account(), "delete", config).quarantine_days == 3


def test_describe_add_names_every_directory_and_the_quota() -> None:
    config = make_config(quota=QuotaConfig(command=QUOTA_TEMPLATE, filesystem="/srv"))
    plan = plan_of(make_account(quota_bytes=1025, active=False), "add", config)
    text = "\n".join(planning.describe(plan))
    for spec in plan.directories:
        assert str(spec.path) in text
    assert "root:5002 0750" in text
    assert str(plan.paths.rsnapshot_conf_inactive) in text
    assert "inactive" in text
    assert "setquota -u 3723707 0 2 0 0 /srv" in text


def test_describe_delete_names_the_quarantine() -> None:
    config = make_config(delete=DeleteConfig(quarantine_days=7))
    plan = plan_of(make_account(), "delete", config)
    text = "\n".join(planning.describe(plan))
    assert "/var/backup/.deleted/3723707.<UTC time>" in text
    assert "purged after 7 days" in text
    immediate = plan_of(
        make_account(), "delete", make_config(delete=DeleteConfig(quarantine_days=0))
    )
    assert "no quarantine" in "\n".join(planning.describe(immediate))
