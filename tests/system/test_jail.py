"""The jail on disk: the template shared by hard links that no user can change,
the per-account passwd/group/usage files, and ``provbackup jail-template``
building a real template with jailkit and re-applying it to every account."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import make_account, plan_of, run, write_config

from provbackup import work
from provbackup.config import BackupConfig, Config, DeleteConfig, LdapConfig, RsnapshotConfig
from provbackup.errors import WorkError
from provbackup.model import Account
from provbackup.paths import account_paths
from provbackup.work.jail import GETQUOTA_SCRIPT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the jail work chowns: run as root")

FIRST, SECOND = ("3723707", 5001), ("3723708", 5002)


def account(root: Path, uid: str, number: int, **changes: object) -> Account:
    home = account_paths(root, "stoney", uid).expected_home_directory
    made = make_account(uid, root=root, uid_number=number, gid_number=number,
                        home_directory=home, quota_bytes=3 * 1024**3)  # fmt: skip
    return replace(made, **changes)


def config_for(root: Path, template: Path | None) -> Config:
    return Config(
        source=Path("test"),
        ldap=LdapConfig(uris=("ldap://x",), base_dn="dc=x"),
        backup=BackupConfig(root=root, jail_template=template),
        rsnapshot=RsnapshotConfig(configtest="no"),
        delete=DeleteConfig(quarantine_days=0),
    )


def apply(config: Config, made: Account, verb: str = "add") -> list[str]:
    return work.apply_plan(plan_of(made, verb, config), config, now=datetime.now(UTC))


def as_user(number: int, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, user=number, group=number, extra_groups=[], capture_output=True,
                          check=False)  # fmt: skip


@pytest.fixture
def base() -> Iterator[Path]:
    """Root and template on one filesystem, reachable by the test users (not 0700 tmp)."""
    top = Path(tempfile.mkdtemp(prefix="provbackup-jail-", dir="/var/lib"))
    top.chmod(0o755)
    (top / "backup").mkdir(mode=0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def small_template(top: Path) -> Path:
    template = top / "template"
    (template / "bin").mkdir(parents=True, mode=0o755)
    (template / "etc").mkdir(mode=0o755)
    (template / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (template / "bin" / "tool").chmod(0o755)
    (template / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (template / "etc" / "motd").write_text("welcome\n")
    return template


def test_accounts_share_template_files_by_hard_links_no_user_can_change(base: Path) -> None:
    root, template = base / "backup", small_template(base)
    config = config_for(root, template)
    for uid, number in (FIRST, SECOND):
        apply(config, account(root, uid, number))
    tool = template / "bin" / "tool"
    jails = [account_paths(root, "stoney", uid).chroot for uid, _ in (FIRST, SECOND)]
    for jail in jails:
        assert (jail / "bin" / "tool").stat().st_ino == tool.stat().st_ino
    assert tool.stat().st_nlink == 3  # the template and two accounts: no copies
    # The per-account files are the account's own, not links.
    assert (jails[0] / "etc" / "passwd").stat().st_nlink == 1
    assert (
        (jails[0] / "etc" / "passwd")
        .read_text()
        .endswith(f"{FIRST[0]}:x:{FIRST[1]}:{FIRST[1]}::/home/{FIRST[0]}:/bin/sh\n")
    )
    shared = jails[0] / "bin" / "tool"
    number = FIRST[1]
    assert as_user(number, "cat", str(shared)).returncode == 0
    for argv in (
        ["sh", "-c", f"echo evil >> {shared}"],
        ["mv", str(shared), str(shared.with_name("moved"))],
        ["rm", "-f", str(shared)],
        ["chmod", "0777", str(shared)],
        ["touch", str(jails[0] / "bin" / "planted")],
        ["ln", str(shared), str(account_paths(root, "stoney", FIRST[0]).incoming / "x")],
    ):
        assert as_user(number, *argv).returncode != 0, argv
    assert tool.read_text() == "#!/bin/sh\necho tool\n"
    assert (jails[1] / "bin" / "tool").stat().st_ino == tool.stat().st_ino


def test_a_changed_template_is_linked_again_on_modify_and_nothing_is_copied(base: Path) -> None:
    root, template = base / "backup", small_template(base)
    config = config_for(root, template)
    apply(config, account(root, *FIRST))
    jail = account_paths(root, "stoney", FIRST[0]).chroot
    steps = apply(config, account(root, *FIRST), "modify")
    assert not any("jail template" in step for step in steps)
    # Rebuilding puts a new file (a new inode) in the template: the jail follows on modify.
    (template / "bin" / "tool").unlink()
    (template / "bin" / "tool").write_text("#!/bin/sh\necho new\n")
    (template / "bin" / "tool").chmod(0o755)
    apply(config, account(root, *FIRST), "modify")
    assert (jail / "bin" / "tool").read_text() == "#!/bin/sh\necho new\n"
    assert (jail / "bin" / "tool").stat().st_ino == (template / "bin" / "tool").stat().st_ino


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda path: os.chown(path, 4242, 0), "owned by uid 4242"),
        (lambda path: path.chmod(0o775), "writable by group or others"),
        (lambda path: path.chmod(0o4755), "set-id"),
        (
            lambda path: (path.unlink(), os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(8, 0))),
            "device 8,0",
        ),
        (
            lambda path: (path.unlink(), os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 1))),
            "device 1,1",
        ),
    ],
)
def test_a_template_entry_no_jail_may_share_fails_the_account(base: Path, change, message) -> None:
    root, template = base / "backup", small_template(base)
    change(template / "bin" / "tool")
    with pytest.raises(WorkError, match=message) as caught:
        apply(config_for(root, template), account(root, *FIRST))
    assert caught.value.return_value == 20
    assert not (account_paths(root, "stoney", FIRST[0]).chroot / "bin" / "tool").exists()


def test_a_template_on_another_filesystem_is_copied(base: Path) -> None:
    root = base / "backup"
    template = small_template(Path(tempfile.mkdtemp(dir="/dev/shm")))
    try:
        apply(config_for(root, template), account(root, *FIRST))
        copied = account_paths(root, "stoney", FIRST[0]).chroot / "bin" / "tool"
        assert copied.read_text() == "#!/bin/sh\necho tool\n"
        assert copied.stat().st_nlink == 1
        assert (copied.stat().st_uid, stat.S_IMODE(copied.stat().st_mode)) == (0, 0o755)
    finally:
        shutil.rmtree(template.parent)


def test_usage_file_gets_the_quota_and_keeps_the_snapshot_runners_figures(base: Path) -> None:
    root = base / "backup"
    config = config_for(root, None)
    apply(config, account(root, *FIRST))
    usage = account_paths(root, "stoney", FIRST[0]).chroot / "etc/provbackup/usage"
    assert usage.read_text() == f"{3 * 1024**3} 0 0\n"
    status = usage.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, FIRST[1], 0o640)
    usage.write_text("1 700 900\n")  # as the snapshot runner would
    apply(config, account(root, *FIRST, quota_bytes=2 * 1024**3), "modify")
    assert usage.read_text() == f"{2 * 1024**3} 700 900\n"
    number = FIRST[1]
    assert as_user(number, "cat", str(usage)).returncode == 0
    assert as_user(number, "sh", "-c", f"echo 1 > {usage}").returncode != 0
    assert as_user(SECOND[1], "cat", str(usage)).returncode != 0


@pytest.mark.parametrize(
    ("content", "printed"),
    [
        (f"{5 * 1024**3} 1 {1024**2 + 1}\n", "5120 1 2"),  # quota down, usage up
        (f"{1024**2 - 1} 0 0", "0 0 0"),  # no newline
        ("12345678901234 3 4 extra words\n", "11773756 1 1"),
        ("abc -5 1.5\n", "0 0 0"),
        ("", "0 0 0"),
        (None, "0 0 0"),  # not written yet
    ],
)
def test_getquota_prints_mib(tmp_path: Path, content: str | None, printed: str) -> None:
    usage = tmp_path / "usage"
    if content is not None:
        usage.write_text(content)
    script = tmp_path / "getQuota"
    script.write_text(GETQUOTA_SCRIPT.replace("/etc/provbackup/usage", str(usage)))
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=True)
    assert done.stdout == printed + "\n"
    assert done.stderr == ""


# ------------------------------------------------------------------ jail-template (real jailkit)


def test_jail_template_builds_with_jailkit_and_apply_relinks_every_account(base: Path) -> None:
    setup = write_config(base, None, extra=f"[backup]\njail_template = {base / 'template'}\n",
                         base_dn="dc=example,dc=com")  # fmt: skip
    built = run(setup, "jail-template")
    assert built.code == 0, built.err
    template = base / "template"
    for top, directories, files in os.walk(template):
        for name in directories + files:
            status = Path(top, name).lstat()
            assert status.st_uid == 0, name
            if not stat.S_ISLNK(status.st_mode) and not stat.S_ISCHR(status.st_mode):
                assert not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID), name
    quota = subprocess.run(["chroot", str(template), "/bin/getQuota"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert quota.stdout == "0 0 0\n"
    config = config_for(setup.root, template)
    apply(config, account(setup.root, *FIRST))
    jail = account_paths(setup.root, "stoney", FIRST[0]).chroot
    old = (jail / "usr" / "bin" / "rsync").stat().st_ino
    assert old == (template / "usr" / "bin" / "rsync").stat().st_ino
    # A rebuild makes new files and leaves the account's (in use) alone until applied.
    rebuilt = run(setup, "jail-template", "--apply")
    assert rebuilt.code == 0, rebuilt.err
    assert "applied to 1 accounts: 1 changed, 0 failed" in rebuilt.out
    new = (template / "usr" / "bin" / "rsync").stat()
    assert new.st_ino != old
    assert (jail / "usr" / "bin" / "rsync").stat().st_ino == new.st_ino
    assert not [name for name in os.listdir(base) if name.startswith(".template")]
    login = subprocess.run(["chroot", str(jail), "/bin/sh", "-c", "echo LoggedIn; rsync --version"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert login.stdout.startswith("LoggedIn\nrsync  version"), login.stderr


def test_jail_template_refuses_a_jail_without_rsync_and_keeps_the_old_one(base: Path) -> None:
    setup = write_config(base, None, base_dn="dc=example,dc=com",
                         extra="[jail]\nsections = basicshell\n")  # fmt: skip
    template = base / "template"
    template.mkdir()
    (template / "marker").write_text("old")
    failed = run(setup, "jail-template", str(template))
    assert failed.code == 1
    assert "missing: rsync" in failed.err
    assert (template / "marker").read_text() == "old"
    assert sorted(os.listdir(base)) == sorted(["backup", "template", "provbackup.conf",
                                               "record-quota", "run"])  # fmt: skip
    sections = "[jail]\nsections = basicshell, rsync, nosuchsection\n"
    unknown = write_config(base, None, base_dn="dc=example,dc=com", extra=sections)
    refused = run(unknown, "jail-template", str(template))
    assert refused.code == 1 and "nosuchsection" in refused.err


def test_the_build_never_writes_through_a_link_out_of_the_new_jail(tmp_path: Path) -> None:
    from provbackup.actions.jail import _add_own_files
    from provbackup.errors import JailTemplateError

    staging = tmp_path / "staging"
    staging.mkdir()
    outside = tmp_path / "host-bin"
    outside.mkdir()
    os.symlink(outside, staging / "bin")
    with pytest.raises(JailTemplateError, match="outside the jail"):
        _add_own_files(staging)
    assert os.listdir(outside) == []


def test_a_missing_template_fails_the_account_and_says_how_to_build_it(base: Path) -> None:
    root = base / "backup"
    with pytest.raises(WorkError, match="build it: provbackup jail-template") as caught:
        apply(config_for(root, base / "not-built"), account(root, *FIRST))
    assert caught.value.return_value == 20
