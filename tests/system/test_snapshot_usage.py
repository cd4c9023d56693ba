"""What a snapshot run writes besides the snapshot: usage, backupTime, last backups.

Usage figures are checked against GNU ``du`` (an independent computation:
``du -s --block-size=1 incoming .snapshots`` counts each inode once across
its arguments, ``-l`` counts every link), on trees with hard links, sparse
files and symlinks, after real rsnapshot runs.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import ldap3
from support import modify_entry, read_entry, run
from test_snapshot import account_dir, home_of, provision, upload, write_config

ENDED = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    "<backup_ended><enddate>{date}</enddate><id>100123</id><success>{success}</success>"
    "<client><identifier>Sepiola</identifier></client></backup_ended>\n"
)


def du(*paths: Path, links: bool = False) -> list[int]:
    """Bytes allocated per argument as GNU du counts them (each inode once across them)."""
    command = ["du", "-s", "--block-size=1", *(["-l"] if links else []), *map(str, paths)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [int(line.split("\t")[0]) for line in output.splitlines()]


def sepiola(root: Path, uid: str, host: str, *, backup_time: str = "TODAY", ended: str = ""):
    metadata = home_of(root, uid) / "incoming" / host / ".sepiola_backup"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "backupTime").write_text(backup_time)
    if ended:
        (metadata / "backupEnded.xml").write_text(ended)


def test_usage_matches_du_and_reaches_ldap_and_the_usage_file(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000101", quota=5_000_000_000)
    home = home_of(setup.root, "1000101")
    usage = account_dir(setup.root, "1000101") / "chroot" / "etc" / "provbackup" / "usage"
    assert usage.read_text() == "5000000000 0 0\n", "process writes the quota at once"
    upload(setup.root, "1000101", files={"a/big": os.urandom(300_000), "a/small": b"x"})
    incoming_host = home / "incoming" / "host1"
    os.link(incoming_host / "a" / "big", incoming_host / "a" / "big-link")  # a hard link
    with open(incoming_host / "sparse", "wb") as handle:  # 10 MB apparent, nearly nothing used
        handle.truncate(10_000_000)
    os.symlink("/etc/shadow", incoming_host / "link-out")
    assert run(setup, "snapshot", "daily").code == 0
    (incoming_host / "a" / "small").write_bytes(b"changed " * 1000)
    (incoming_host / "new").write_bytes(os.urandom(50_000))

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    backup, snapshot = du(home / "incoming", home / ".snapshots")
    entry = read_entry(ldap_server, dns["1000101"])
    assert entry["sstbackupsize"] == [str(backup)]
    assert entry["sstincrementsize"] == [str(snapshot)]
    # The two snapshots share unchanged files by hard links: counted once, so far
    # below what counting every link gives.
    assert snapshot < du(home / ".snapshots", links=True)[0] - 250_000
    assert usage.read_text() == f"5000000000 {backup} {snapshot}\n"
    info = os.lstat(usage)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 1000101, 0o640)
    # A new quota reaches the file with the modify, the sizes stay until the next snapshot.
    modify_entry(ldap_server, dns["1000101"], {"sstQuota": ["6000000000"],
                                              "sstProvisioningMode": ["modify"],
                                              "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0
    assert usage.read_text() == f"6000000000 {backup} {snapshot}\n"


def test_backup_time_replaced_in_the_newest_snapshot_only(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000111")
    sepiola(setup.root, "1000111", "host1")
    outside = tmp_path / "outside"
    outside.write_text("TODAY")
    metadata2 = home_of(setup.root, "1000111") / "incoming" / "host2" / ".sepiola_backup"
    metadata2.mkdir(parents=True)
    os.symlink(outside, metadata2 / "backupTime")  # planted: must not be followed
    snapshots = home_of(setup.root, "1000111") / ".snapshots"

    assert run(setup, "snapshot", "daily").code == 0
    first = snapshots / "daily.0" / "host1" / ".sepiola_backup" / "backupTime"
    first_text = first.read_text()
    first_inode = os.lstat(first).st_ino
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", first_text), first_text
    assert (home_of(setup.root, "1000111") / "incoming" / "host1" / ".sepiola_backup"
            / "backupTime").read_text() == "TODAY"  # fmt: skip
    assert outside.read_text() == "TODAY"
    assert os.path.islink(snapshots / "daily.0" / "host2" / ".sepiola_backup" / "backupTime")
    os.utime(snapshots / "daily.0", (1, 1))  # older, so the next one is certainly newer

    assert run(setup, "snapshot", "daily").code == 0

    older = snapshots / "daily.1" / "host1" / ".sepiola_backup" / "backupTime"
    newest = snapshots / "daily.0" / "host1" / ".sepiola_backup" / "backupTime"
    # The older snapshot's file is untouched: same inode, same text.
    assert os.lstat(older).st_ino == first_inode
    assert older.read_text() == first_text
    assert os.lstat(newest).st_ino != first_inode
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", newest.read_text())
    assert os.lstat(newest).st_nlink == 1
    info = os.lstat(newest)
    assert (info.st_uid, info.st_gid) == (0, 1000111)
    assert outside.read_text() == "TODAY"


def test_last_successful_backups_from_backup_ended_xml(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000121")
    root = setup.root
    sepiola(root, "1000121", "laptop", ended=ENDED.format(date="2013-09-23T08:35:54+02:00",
                                                           success=1))  # fmt: skip
    sepiola(root, "1000121", "desktop.example.com",
            ended=ENDED.format(date="2014-01-02T03:04:05-05:00", success=1))  # fmt: skip
    sepiola(root, "1000121", "failing", ended=ENDED.format(date="2014-01-02T03:04:05Z",
                                                            success=0))  # fmt: skip
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success>"
        "<id>&lol2;</id></backup_ended>"
    )
    sepiola(root, "1000121", "bomb", ended=bomb)
    sepiola(root, "1000121", "huge", ended=ENDED.format(date="2014-01-02T03:04:05Z", success=1)
            + " " * 70_000)  # fmt: skip
    sepiola(root, "1000121", "x" * 70, ended=ENDED.format(date="2014-01-02T03:04:05Z", success=1))

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    entry = read_entry(ldap_server, dns["1000121"])
    assert sorted(entry["sstbackuplastsuccessfulbackup"]) == [
        "desktop.example.com:20140102T080405Z",
        "laptop:20130923T063554Z",
    ]


def strip_backup_class(server, dn: str) -> None:
    """Take sstBackup (and what only it allows) off the entry: usage attributes are refused."""
    connection = server.connection()
    try:
        names = ["sstBackupIntervalHourly", "sstBackupIntervalDaily", "sstBackupIntervalWeekly",
                 "sstBackupIntervalMonthly", "sstBackupIntervalYearly", "sstBackupWarningDays",
                 "sstBackupWarningNumbers", "sstBackupWarningOn", "sstNotificationWarningLevel",
                 "sstNotificationWarningMedium", "sstUseSelfcare", "sstUseSSH",
                 "sstQuota"]  # fmt: skip
        changes = {name: [(ldap3.MODIFY_DELETE, [])] for name in names}
        changes["objectClass"] = [(ldap3.MODIFY_DELETE, ["sstBackup"])]
        assert connection.modify(dn, changes), connection.result
    finally:
        connection.unbind()


def test_ldap_refusing_the_usage_write_warns_and_keeps_the_snapshot(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000131", "1000132")
    for uid in dns:
        upload(setup.root, uid)
        strip_backup_class(ldap_server, dns[uid])

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    assert result.err.count("usage write-back refused") == 1, "warned once per run"
    assert "usage written for 0, refused for 2" in result.out
    for uid in dns:
        assert (home_of(setup.root, uid) / ".snapshots" / "daily.0" / "host1").is_dir()
        assert "sstbackupsize" not in read_entry(ldap_server, dns[uid])
        usage = account_dir(setup.root, uid) / "chroot" / "etc" / "provbackup" / "usage"
        quota, backup, snapshot = usage.read_text().split()
        assert quota == "1073741824", "the entry has no sstQuota now: the last known one stays"
        assert int(backup) > 0 and int(snapshot) > 0


def test_snapshots_run_with_ldap_down(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000141", quota=7_000_000)
    upload(setup.root, "1000141")
    assert run(setup, "snapshot", "daily").code == 0
    ldap_server.stop()

    result = run(setup, "snapshot", "daily")

    assert result.code == 69, result.out + result.err
    assert re.search(r"^done\s+1000141\s", result.out, re.M)
    assert "LDAP unavailable" in result.err
    assert (home_of(setup.root, "1000141") / ".snapshots" / "daily.1").is_dir()
    usage = account_dir(setup.root, "1000141") / "chroot" / "etc" / "provbackup" / "usage"
    assert usage.read_text().startswith("7000000 "), "the last known quota is kept"
