"""``provbackup snapshot``: real rsnapshot over accounts made by a real ``process`` run.

Every account is created by ``process`` from an entry in a real slapd, the
snapshots are made by the real rsnapshot, and what the tests check is read
back from the filesystem, the status file and the directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import (
    REPOSITORY,
    account_dir,
    home_of,
    modify_entry,
    read_entry,
    run,
    run_process,
    write_config,
)

from provbackup.lock import lock_holders
from sandbox import account_entry, jailkit_home_directory


def provision(server, setup, *uids: str, **options) -> dict[str, str]:
    """Add entries for ``uids`` and run ``process``; returns uid -> DN."""
    dns = {}
    for uid in uids:
        dn, attributes = account_entry(
            uid,
            base_dn=server.accounts_dn,
            home_directory=jailkit_home_directory(setup.root, uid),
            **options,
        )
        server.add_entries([(dn, attributes)])
        dns[uid] = dn
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    return dns


def upload(root: Path, uid: str, host: str = "host1", files: dict[str, bytes] | None = None):
    """Put what a client would upload into the account's incoming/<host>/."""
    base = home_of(root, uid) / "incoming" / host
    for name, content in (files or {"data/file.txt": b"hello"}).items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def lines_by_uid(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(done|failed|skipped|busy|would)\s+(\S+)\s", line)
        if match:
            found[match[2]] = match[1]
    return found


def test_runs_accounts_keeping_the_interval_skips_the_rest(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, "[delete]\nquarantine_days = 7\n")
    provision(ldap_server, setup, "1000001", intervals={"daily": 3})
    provision(ldap_server, setup, "1000002", intervals={"hourly": 2, "daily": 3})
    provision(ldap_server, setup, "1000003", active=False)
    gone = provision(ldap_server, setup, "1000004")
    for uid in ("1000001", "1000002", "1000003", "1000004"):
        upload(setup.root, uid)
    modify_entry(ldap_server, gone["1000004"], {"sstProvisioningMode": ["delete"],
                                               "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0
    assert any(name.startswith("1000004.") for name in os.listdir(setup.root / ".deleted"))

    daily = run(setup, "snapshot", "daily")
    hourly = run(setup, "snapshot", "hourly")

    assert daily.code == 0, daily.out + daily.err
    # Inactive and quarantined accounts are not even listed: the disk decides.
    assert lines_by_uid(daily.out) == {"1000001": "done", "1000002": "done"}
    assert "2 done, 0 failed, 0 busy, 0 skipped" in daily.out
    snapshot = home_of(setup.root, "1000001") / ".snapshots" / "daily.0"
    assert (snapshot / "host1" / "data" / "file.txt").read_bytes() == b"hello"
    assert not (home_of(setup.root, "1000003") / ".snapshots" / "daily.0").exists()
    assert hourly.code == 0, hourly.out + hourly.err
    assert lines_by_uid(hourly.out) == {"1000001": "skipped", "1000002": "done"}
    assert "retains no hourly" in hourly.out
    assert (home_of(setup.root, "1000002") / ".snapshots" / "hourly.0" / "host1").is_dir()
    status = json.loads(setup.status_file.with_name("status-snapshot-hourly.json").read_text())
    assert status["exit_code"] == 0
    assert status["counts"] == {"done": 1, "failed": 0, "busy": 0, "skipped": 1}
    assert {item["uid"]: item["outcome"] for item in status["accounts"]} == {
        "1000001": "skipped",
        "1000002": "done",
    }


def test_a_higher_interval_waits_for_the_last_snapshot_of_the_one_below(tmp_path, ldap_server):
    """daily takes hourly.1 (hourly 2): before it is there, daily is done without a snapshot.

    rsnapshot itself is not run then: 1.4 (Debian 12) would rotate daily.0 to
    daily.1 with no new daily.0, and 1.5 (Debian 13) exits 1 ("Did not find
    previous interval max").
    """
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000101", intervals={"hourly": 2, "daily": 3})
    upload(setup.root, "1000101")
    snapshots = home_of(setup.root, "1000101") / ".snapshots"

    assert run(setup, "snapshot", "hourly").code == 0
    early = run(setup, "snapshot", "daily")
    assert early.code == 0, early.out + early.err
    assert lines_by_uid(early.out) == {"1000101": "done"}
    assert f"{snapshots / 'hourly.1'} not there yet: no daily snapshot" in early.err
    assert sorted(os.listdir(snapshots)) == ["hourly.0"]

    assert run(setup, "snapshot", "hourly").code == 0
    assert sorted(os.listdir(snapshots)) == ["hourly.0", "hourly.1"]
    first = run(setup, "snapshot", "daily")
    assert first.code == 0, first.out + first.err
    assert sorted(os.listdir(snapshots)) == ["daily.0", "hourly.0"]
    assert (snapshots / "daily.0" / "host1" / "data" / "file.txt").read_bytes() == b"hello"
    # hourly.1 is gone into daily.0: the next daily leaves daily.0 where it is.
    again = run(setup, "snapshot", "daily")
    assert again.code == 0, again.out + again.err
    assert sorted(os.listdir(snapshots)) == ["daily.0", "hourly.0"]


def test_a_failing_account_does_not_stop_the_others(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000011", "1000012", "1000013")
    for uid in ("1000011", "1000012", "1000013"):
        upload(setup.root, uid)
    # An option rsnapshot does not know: the real rsnapshot refuses the file.
    conf = account_dir(setup.root, "1000012") / "rsnapshot.conf"
    conf.write_text(conf.read_text() + "no_such_option\t1\n")

    result = run(setup, "snapshot", "daily", "--jobs", "2")

    assert result.code == 1, result.out + result.err
    assert lines_by_uid(result.out) == {"1000011": "done", "1000012": "failed",
                                        "1000013": "done"}  # fmt: skip
    assert re.search(r"^failed\s+1000012\s.*rsnapshot daily exited with 1", result.out, re.M)
    for uid in ("1000011", "1000013"):
        assert (home_of(setup.root, uid) / ".snapshots" / "daily.0" / "host1").is_dir()
    status = json.loads(setup.status_file.with_name("status-snapshot-daily.json").read_text())
    assert status["exit_code"] == 1
    assert status["counts"]["failed"] == 1
    check = run(setup, "check")
    assert check.code == 1, check.out
    assert "last daily snapshot run: 1 accounts failed" in check.out


def test_dry_run_changes_nothing(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000021")
    upload(setup.root, "1000021")

    result = run(setup, "snapshot", "daily", "--dry-run")

    assert result.code == 0, result.err
    assert re.search(r"^would\s+1000021\s.*rsnapshot -c \S+/rsnapshot.conf daily", result.out, re.M)
    assert os.listdir(home_of(setup.root, "1000021") / ".snapshots") == []
    assert not setup.status_file.with_name("status-snapshot-daily.json").exists()


def test_uid_option_reports_inactive_and_missing_accounts(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000031", active=False)

    inactive = run(setup, "snapshot", "daily", "--uid", "1000031")
    missing = run(setup, "snapshot", "daily", "--uid", "1000039")

    assert inactive.code == 0, inactive.err
    assert re.search(r"^skipped\s+1000031\s.*inactive", inactive.out, re.M)
    assert missing.code == 1
    assert re.search(r"^failed\s+1000039\s.*no account directory", missing.out, re.M)


def slow_rsnapshot(tmp_path: Path, seconds: float) -> Path:
    """A wrapper that holds rsnapshot back, so a test can meet a snapshot in progress."""
    wrapper = tmp_path / "slow-rsnapshot"
    wrapper.write_text(f'#!/bin/sh\nsleep {seconds}\nexec rsnapshot "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def start_snapshot(setup, interval: str = "daily") -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), "snapshot", interval],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def wait_for_holder(path: Path, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not lock_holders(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"nobody took {path}"
        time.sleep(0.05)


def test_delete_meeting_a_running_snapshot_stays_requested(tmp_path, ldap_server):
    wrapper = slow_rsnapshot(tmp_path, 4)
    setup = write_config(tmp_path, ldap_server, f"[rsnapshot]\ncommand = {wrapper}\n")
    dns = provision(ldap_server, setup, "1000041")
    upload(setup.root, "1000041")
    modify_entry(ldap_server, dns["1000041"], {"sstProvisioningMode": ["delete"],
                                              "sstProvisioningState": ["0"]})  # fmt: skip
    requested = read_entry(ldap_server, dns["1000041"])
    account_lock = setup.lock_file.parent / "accounts" / "1000041.lock"
    snapshotting = start_snapshot(setup)
    try:
        wait_for_holder(account_lock, snapshotting)

        during = run_process(setup, "process")
        entry_during = read_entry(ldap_server, dns["1000041"])
        out, err = snapshotting.communicate(timeout=120)
    finally:
        if snapshotting.poll() is None:
            snapshotting.kill()
            snapshotting.wait()

    # Not claimed, not failed: still a request, and the snapshot was made undisturbed.
    assert during.code == 0, during.out + during.err
    assert re.search(r"^skipped\s+delete\s+1000041\s.*busy", during.out, re.M)
    assert entry_during["sstprovisioningmode"] == ["delete"]
    assert entry_during["sstprovisioningstate"] == ["0"]
    assert entry_during == requested, "the entry was touched"
    assert snapshotting.returncode == 0, out + err
    assert re.search(r"^done\s+1000041\s", out, re.M)
    # The next process run, with the snapshot over, does the delete.
    after = run(setup, "process")
    assert after.code == 0, after.out + after.err
    assert read_entry(ldap_server, dns["1000041"])["sstprovisioningmode"] == ["deleted"]
    assert not account_dir(setup.root, "1000041").exists()


def test_a_second_run_of_the_same_interval_exits_75(tmp_path, ldap_server):
    wrapper = slow_rsnapshot(tmp_path, 3)
    setup = write_config(tmp_path, ldap_server, f"[rsnapshot]\ncommand = {wrapper}\n")
    provision(ldap_server, setup, "1000051")
    first = start_snapshot(setup)
    try:
        wait_for_holder(setup.lock_file.with_name("snapshot-daily.lock"), first)
        second = run_process(setup, "snapshot", "daily")
        other_interval = run_process(setup, "snapshot", "hourly")
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert second.code == 75, second.out + second.err
    assert "holds the lock" in second.err
    # Another interval is not blocked by the daily lock (it has no hourly: skipped).
    assert other_interval.code == 0, other_interval.out + other_interval.err
    assert first.returncode == 0, out + err


def test_a_run_of_another_interval_waits_for_the_account(tmp_path, ldap_server):
    wrapper = slow_rsnapshot(tmp_path, 3)
    setup = write_config(tmp_path, ldap_server, f"[rsnapshot]\ncommand = {wrapper}\n")
    provision(ldap_server, setup, "1000061")
    daily = start_snapshot(setup)
    try:
        wait_for_holder(setup.lock_file.parent / "accounts" / "1000061.lock", daily)
        weekly = run_process(setup, "snapshot", "weekly")
        daily.communicate(timeout=120)
    finally:
        if daily.poll() is None:
            daily.kill()
            daily.wait()

    assert weekly.code == 0, weekly.out + weekly.err
    assert re.search(r"^done\s+1000061\s", weekly.out, re.M)
    # Run beside the daily rsnapshot, the weekly one would have failed on rsnapshot's own
    # lockfile ("already running"): done means it waited for the account's lock.
    assert daily.returncode == 0


def test_first_release_snapshots_are_moved_up_one_level(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000071")
    upload(setup.root, "1000071", files={"data/kept.txt": b"same in every snapshot"})
    conf = account_dir(setup.root, "1000071") / "rsnapshot.conf"
    conf.write_text(conf.read_text().replace("/incoming/\t./\n", "/incoming/\tincoming/\n"))
    for _ in range(2):  # the first release's layout, made by the real rsnapshot
        subprocess.run(["rsnapshot", "-c", str(conf), "daily"], check=True, timeout=60)
    snapshots = home_of(setup.root, "1000071") / ".snapshots"
    old_file = snapshots / "daily.1" / "incoming" / "host1" / "data" / "kept.txt"
    inode = os.lstat(old_file).st_ino
    assert os.lstat(old_file).st_nlink == 2, "daily.0 and daily.1 share it"
    dated = os.lstat(snapshots / "daily.1").st_mtime

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    assert result.err.count("up one level") == 2
    assert conf.read_text().endswith("/incoming/\t./\n")
    for name in ("daily.0", "daily.1", "daily.2"):
        assert os.listdir(snapshots / name) == ["host1"], name
    # Moved by rename: the same inode, now linked from all three snapshots.
    moved = snapshots / "daily.2" / "host1" / "data" / "kept.txt"
    assert os.lstat(moved).st_ino == inode
    assert os.lstat(moved).st_nlink == 3
    assert os.lstat(snapshots / "daily.2").st_mtime == dated
    # Idempotent: another run finds nothing to move.
    again = run(setup, "snapshot", "daily")
    assert again.code == 0
    assert "up one level" not in again.err
    assert os.listdir(snapshots / "daily.3") == ["host1"]


def test_lowered_retention_and_dropped_interval_are_pruned(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000081", intervals={"daily": 4, "weekly": 2})
    upload(setup.root, "1000081")
    for _ in range(4):
        assert run(setup, "snapshot", "daily").code == 0
    assert run(setup, "snapshot", "weekly").code == 0
    snapshots = home_of(setup.root, "1000081") / ".snapshots"
    # rsnapshot moved the last daily (daily.3) to weekly.0.
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1", "daily.2", "weekly.0"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    os.symlink(outside, snapshots / "daily.2" / "host1" / "escape")
    modify_entry(ldap_server, dns["1000081"], {"sstBackupIntervalDaily": ["2"],
                                              "sstBackupIntervalWeekly": ["0"],
                                              "sstProvisioningMode": ["modify"],
                                              "sstProvisioningState": ["0"]})  # fmt: skip
    assert run(setup, "process").code == 0

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]
    assert "pruned" in result.err and "weekly.0" in result.err
    assert (outside / "precious").read_text() == "keep", "a symlink inside was not followed"


def test_check_and_show_know_the_newest_snapshot(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000091", "1000092")
    for uid in ("1000091", "1000092"):
        upload(setup.root, uid)
    assert run(setup, "snapshot", "daily").code == 0

    fresh = run(setup, "check")
    shown = run(setup, "show", "1000091", "--json")
    stale_time = time.time() - 3 * 86400
    os.utime(home_of(setup.root, "1000092") / ".snapshots" / "daily.0", (stale_time, stale_time))
    os.utime(account_dir(setup.root, "1000092") / "rsnapshot.conf", (stale_time, stale_time))
    stale = run(setup, "check")

    assert fresh.code == 0, fresh.out
    assert "stale=0 snapshot_accounts=2" in fresh.out
    newest = json.loads(shown.out)[0]["server"]["newest_snapshot"]
    assert newest["name"] == "daily.0"
    assert stale.code == 1, stale.out
    assert "1 accounts without a recent snapshot (1000092)" in stale.out
    assert "stale=1 snapshot_accounts=2" in stale.out


def test_a_killed_migration_is_finished_without_moving_a_snapshot_twice(tmp_path, ldap_server):
    """A client named "incoming" makes a moved snapshot look like an old one: the list decides."""
    setup = write_config(tmp_path, ldap_server)
    provision(ldap_server, setup, "1000075")
    upload(setup.root, "1000075", host="incoming", files={"file.txt": b"data"})
    account = account_dir(setup.root, "1000075")
    conf = account / "rsnapshot.conf"
    conf.write_text(conf.read_text().replace("/incoming/\t./\n", "/incoming/\tincoming/\n"))
    for _ in range(3):
        subprocess.run(["rsnapshot", "-c", str(conf), "daily"], check=True, timeout=60)
    snapshots = home_of(setup.root, "1000075") / ".snapshots"
    # A run killed after moving daily.0 and half-way through daily.1:
    (account / "snapshot-layout-pending").write_text("daily.1\ndaily.2\n")
    os.rename(snapshots / "daily.0" / "incoming", snapshots / ".provbackup-migrating.daily.0")
    os.rmdir(snapshots / "daily.0")
    os.rename(snapshots / ".provbackup-migrating.daily.0", snapshots / "daily.0")
    os.rename(snapshots / "daily.1" / "incoming", snapshots / ".provbackup-migrating.daily.1")

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    # Every snapshot (rotated one up by this run) holds the client "incoming" at its top.
    for name in ("daily.0", "daily.1", "daily.2", "daily.3"):
        assert (snapshots / name / "incoming" / "file.txt").read_bytes() == b"data", name
    assert not (account / "snapshot-layout-pending").exists()
    assert conf.read_text().endswith("/incoming/\t./\n")


def test_sigterm_finishes_the_accounts_in_hand_and_starts_no_more(tmp_path, ldap_server):
    wrapper = slow_rsnapshot(tmp_path, 3)
    setup = write_config(
        tmp_path, ldap_server, f"[rsnapshot]\ncommand = {wrapper}\n[snapshot]\njobs = 1\n"
    )
    uids = ("1000301", "1000302", "1000303")
    provision(ldap_server, setup, *uids)
    running = start_snapshot(setup)
    try:
        wait_for_holder(setup.lock_file.parent / "accounts" / "1000301.lock", running)
        running.send_signal(signal.SIGTERM)
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()

    assert running.returncode == 143, out + err
    # The account in hand got its snapshot; the window's next one may have been handed
    # to the pool before the signal came; the last one was never started.
    assert (home_of(setup.root, "1000301") / ".snapshots" / "daily.0").is_dir()
    assert not (home_of(setup.root, "1000303") / ".snapshots" / "daily.0").exists()
    assert "stopped by SIGTERM" in out
    status = json.loads(setup.status_file.with_name("status-snapshot-daily.json").read_text())
    assert status["stopped_by_signal"] == "SIGTERM"
    assert status["exit_code"] == 143
    check = run(setup, "check")
    assert check.code == 1, check.out
    assert "last daily snapshot run stopped by SIGTERM" in check.out
