"""End to end: entries in a real slapd go from request to done, and the server matches."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from support import (
    account_dir,
    fingerprint,
    hold_lock,
    modify_entry,
    read_entry,
    run,
    run_process,
    write_config,
)

from sandbox import account_entry, jailkit_home_directory

TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")


def add(server, uid, **options):
    options.setdefault("home_directory", None)
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, **options)
    server.add_entries([(dn, attributes)])
    return dn


def today(offset: int = 0) -> str:
    return (date.today() + timedelta(days=offset)).strftime("%Y%m%d")


def test_add_creates_the_account_and_writes_added_back(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    home = jailkit_home_directory(setup.root, "3723707")
    dn = add(ldap_server, "3723707", home_directory=home, quota=1_000_000)

    result = run(setup, "process")

    assert result.code == 0, result.err
    assert re.search(r"^done\s+add\s+3723707\s+uid=3723707,", result.out, re.M)
    assert "1 done, 0 failed, 0 skipped" in result.out
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["added"]
    assert TIMESTAMP.fullmatch(entry["sstprovisioningstate"][0])
    assert entry["sstprovisioningexecutiondate"] == ["0"]
    assert entry["sstprovisioningreturnvalue"] == ["0"]

    account = setup.root / "7" / "707" / "723" / "3723707"
    assert account == account_dir(setup.root, "3723707")
    home_path = account / "chroot" / "home" / "3723707"
    incoming = os.stat(home_path / "incoming")
    assert (incoming.st_uid, incoming.st_gid, stat.S_IMODE(incoming.st_mode)) == (
        3723707,
        3723707,
        0o700,
    )
    snapshots = os.stat(home_path / ".snapshots")
    assert (snapshots.st_uid, snapshots.st_gid, stat.S_IMODE(snapshots.st_mode)) == (
        0,
        3723707,
        0o750,
    )
    assert os.stat(account).st_uid == 0
    assert not os.stat(account).st_mode & stat.S_IWOTH
    conf = (account / "rsnapshot.conf").read_text()
    assert re.findall(r"^retain\t(\w+)\t(\d+)$", conf, re.M) == [
        ("daily", "7"),
        ("weekly", "4"),
        ("monthly", "3"),
    ]
    assert f"snapshot_root\t{home_path}/.snapshots/" in conf
    # 1,000,000 bytes is 976.5625 KiB: rounded up.
    assert setup.quota_log.read_text().split() == [
        "3723707", "3723707", "3723707", "1000000", "977", "/srv",
    ]  # fmt: skip
    status = json.loads(setup.status_file.read_text())
    assert status["exit_code"] == 0
    assert [(item["uid"], item["action"], item["outcome"]) for item in status["entries"]] == [
        ("3723707", "add", "done")
    ]


def test_the_account_tree_takes_real_rsnapshot_backups(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, "[rsnapshot]\nconfigtest = yes\n")
    add(ldap_server, "4000001")
    assert run(setup, "process").code == 0
    account = account_dir(setup.root, "4000001")
    home = account / "chroot" / "home" / "4000001"
    (home / "incoming" / "laptop").mkdir()
    (home / "incoming" / "laptop" / "report.txt").write_text("quarterly numbers\n")
    subprocess.run(
        ["rsnapshot", "-c", str(account / "rsnapshot.conf"), "daily"], check=True, timeout=60
    )
    # The layout "./": the client's directory at the snapshot's top (SPEC section 6).
    copied = home / ".snapshots" / "daily.0" / "laptop" / "report.txt"
    assert copied.read_text() == "quarterly numbers\n"


def test_scheduled_entries_are_left_alone_and_overdue_ones_done(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    tomorrow = add(ldap_server, "4000002", date=today(1))
    yesterday = add(ldap_server, "4000003", date=today(-1))
    on_the_day = add(ldap_server, "4000004", date=today())

    scan = run(setup, "scan")
    assert re.search(r"4000002\s+add\s+\d{8}\s+scheduled", scan.out)
    assert re.search(r"4000003\s+add\s+\d{8}\s+overdue", scan.out)
    assert re.search(r"4000004\s+add\s+\d{8}\s+due", scan.out)

    assert run(setup, "process").code == 0
    assert read_entry(ldap_server, tomorrow)["sstprovisioningmode"] == ["add"]
    assert read_entry(ldap_server, tomorrow)["sstprovisioningstate"] == ["0"]
    assert not account_dir(setup.root, "4000002").exists()
    assert read_entry(ldap_server, yesterday)["sstprovisioningmode"] == ["added"]
    assert read_entry(ldap_server, on_the_day)["sstprovisioningmode"] == ["added"]
    assert read_entry(ldap_server, yesterday)["sstprovisioningexecutiondate"] == ["0"]


def test_the_documented_date_attribute_name_works(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000005", date_attribute="sstProvisioningDate")
    later = add(ldap_server, "4000006", date_attribute="sstProvisioningDate", date=today(3))
    assert run(setup, "process").code == 0
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["added"]
    assert entry["sstprovisioningdate"] == ["0"]
    assert read_entry(ldap_server, later)["sstprovisioningmode"] == ["add"]


def test_done_entries_are_not_touched_again(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000007", mode="added", state="20260101T000000Z")
    result = run(setup, "process")
    assert result.code == 0
    assert result.out == ""
    assert read_entry(ldap_server, dn)["sstprovisioningstate"] == ["20260101T000000Z"]
    assert not account_dir(setup.root, "4000007").exists()


def test_modify_deactivates_and_reactivates(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000008")
    assert run(setup, "process").code == 0
    account = account_dir(setup.root, "4000008")
    incoming = account / "chroot" / "home" / "4000008" / "incoming"
    (incoming / "data.bin").write_bytes(b"customer data")

    modify_entry(
        ldap_server,
        dn,
        {
            "sstProvisioningMode": ["modify"],
            "sstProvisioningState": ["0"],
            "sstIsActive": ["FALSE"],
        },
    )
    assert run(setup, "process").code == 0
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["modified"]
    assert os.stat(incoming).st_uid == 0, "the user can no longer write incoming/"
    assert not (account / "rsnapshot.conf").exists()
    assert (account / "rsnapshot.conf.inactive").exists()
    assert (incoming / "data.bin").read_bytes() == b"customer data", "data is kept"

    modify_entry(
        ldap_server,
        dn,
        {"sstProvisioningMode": ["modify"], "sstProvisioningState": ["0"], "sstIsActive": ["TRUE"]},
    )
    assert run(setup, "process").code == 0
    assert os.stat(incoming).st_uid == 4000008
    assert (account / "rsnapshot.conf").exists()
    assert not (account / "rsnapshot.conf.inactive").exists()


def test_modify_applies_new_retention_and_quota(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000009")
    assert run(setup, "process").code == 0
    modify_entry(
        ldap_server,
        dn,
        {
            "sstProvisioningMode": ["modify"],
            "sstProvisioningState": ["0"],
            "sstBackupIntervalHourly": ["24"],
            "sstBackupIntervalMonthly": ["0"],
            "sstQuota": ["2048"],
        },
    )
    assert run(setup, "process").code == 0
    conf = (account_dir(setup.root, "4000009") / "rsnapshot.conf").read_text()
    assert re.findall(r"^retain\t(\w+)\t(\d+)$", conf, re.M) == [
        ("hourly", "24"),
        ("daily", "7"),
        ("weekly", "4"),
    ]
    assert setup.quota_log.read_text().splitlines()[-1].split()[3:5] == ["2048", "2"]


def test_delete_removes_the_account_and_sets_quota_zero(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000010")
    assert run(setup, "process").code == 0
    assert account_dir(setup.root, "4000010").is_dir()
    modify_entry(
        ldap_server, dn, {"sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"]}
    )

    result = run(setup, "process")

    assert result.code == 0, result.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not account_dir(setup.root, "4000010").exists()
    assert not (setup.root / "0").exists(), "empty layout directories are removed"
    assert setup.quota_log.read_text().splitlines()[-1].split()[3:5] == ["0", "0"]


def test_delete_with_quarantine_moves_the_account_aside(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, "[delete]\nquarantine_days = 7\n")
    dn = add(ldap_server, "4000011", mode="delete")
    add(ldap_server, "4000012")
    # The delete of an account no server holds (no host, no tree here) is not claimed:
    # the account may live on a server that does not say so. The operator decides.
    result = run(setup, "process")
    assert result.code == 0 and "held by no server" in result.out + result.err
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["delete"]
    assert run(setup, "reset", "--dn", dn, "--take-over").code == 0
    assert run(setup, "process").code == 0  # now this server's: the delete removes nothing
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"]
    assert "host" not in read_entry(ldap_server, dn), "a deleted account is held by no server"
    account = account_dir(setup.root, "4000012")
    (account / "chroot" / "home" / "4000012" / "incoming" / "keep.txt").write_text("x")
    modify_entry(
        ldap_server,
        f"uid=4000012,{ldap_server.accounts_dn}",
        {"sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"]},
    )
    assert run(setup, "process").code == 0
    assert not account.exists()
    quarantined = list((setup.root / ".deleted").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith("4000012.")
    assert (quarantined[0] / "chroot/home/4000012/incoming/keep.txt").read_text() == "x"


def test_flat_layout(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, "[backup]\nlayout = flat\n")
    add(ldap_server, "alice", uid_number=5001, gid_number=5001)
    assert run(setup, "process").code == 0
    assert (setup.root / "alice" / "chroot" / "home" / "alice" / "incoming").is_dir()


def test_bad_entries_fail_alone_and_good_ones_succeed(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    good = add(ldap_server, "4000013")
    root_uid = add(ldap_server, "4000014", uid_number=0)
    outside = add(ldap_server, "4000015", home_directory="/etc/4000015")
    sneaky = add(
        ldap_server,
        "4000016",
        home_directory=f"{setup.root}/6/016/000/4000016/chroot/./home/../../../../../../etc",
    )

    result = run(setup, "process")

    assert result.code == 1
    assert read_entry(ldap_server, good)["sstprovisioningmode"] == ["added"]
    for dn, attribute in ((root_uid, "uidNumber"), (outside, "homeDirectory"),
                          (sneaky, "homeDirectory")):  # fmt: skip
        entry = read_entry(ldap_server, dn)
        assert entry["sstprovisioningmode"] == ["adding"], dn
        assert entry["sstprovisioningstate"] == ["0"]
        assert entry["sstprovisioningreturnvalue"][0] not in ("", "0")
        line = next(line for line in result.out.splitlines() if dn in line)
        assert line.startswith("failed") and attribute in line
        assert dn in result.err and attribute in result.err
    assert "1 done, 3 failed" in result.out
    assert not account_dir(setup.root, "4000014").exists()
    assert not account_dir(setup.root, "4000015").exists()
    # A failed entry is not retried by the next run: it waits for a reset.
    again = run(setup, "process")
    assert again.code == 0 and again.out == ""
    scan = run(setup, "scan")
    assert len(re.findall(r"adding\s+0\s+failed", scan.out)) == 3


def test_invalid_mode_is_reported_once_recorded_and_still_shown(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000017", mode="frobnicate")
    result = run(setup, "process")
    assert result.code == 1
    assert "sstProvisioningMode: 'frobnicate': unknown mode" in result.out
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["frobnicate"]
    assert entry["sstprovisioningstate"] == ["0"]
    assert entry["sstprovisioningreturnvalue"] == ["10"]
    # The next runs do not fail (or mail) again for the same entry...
    again = run(setup, "process")
    assert (again.code, again.out) == (0, "")
    # ...while scan and check keep showing it until it changes.
    scan = run(setup, "scan")
    assert re.search(r"4000017\s+frobnicate\s+0\s+invalid: sstProvisioningMode", scan.out)
    check = run(setup, "check")
    assert check.code == 2 and "1 invalid" in check.out
    # Corrected by the web shop, it is done like any request.
    modify_entry(ldap_server, dn, {"sstProvisioningMode": ["add"]})
    fixed = run(setup, "process")
    assert fixed.code == 0, fixed.out
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]
    assert read_entry(ldap_server, dn)["sstprovisioningreturnvalue"] == ["0"]


def test_mode_in_capitals_is_the_same_request(tmp_path, ldap_server):
    """sstProvisioningMode's equality rule is caseIgnoreMatch: ADD is add."""
    setup = write_config(tmp_path, ldap_server)
    upper = add(ldap_server, "4000018", mode="ADD")
    result = run(setup, "process")
    assert result.code == 0, result.out
    assert re.search(r"^done\s+add\s+4000018", result.out, re.M)
    assert read_entry(ldap_server, upper)["sstprovisioningmode"] == ["added"]
    assert account_dir(setup.root, "4000018").is_dir()


def test_second_run_is_a_no_op_and_reset_reproduces_the_same_tree(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000019")
    assert run(setup, "process").code == 0
    first = fingerprint(setup.root)
    second_run = run(setup, "process")
    assert second_run.code == 0 and second_run.out == ""
    reset = run(setup, "reset", "--uid", "4000019", "--mode", "add", "--any-status")
    assert reset.code == 0, reset.err
    assert re.search(r"sstProvisioningMode\s+added\s+add", reset.out)
    assert run(setup, "process").code == 0
    assert fingerprint(setup.root) == first
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]


def test_dry_run_changes_nothing_anywhere(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000020")
    before_entry = read_entry(ldap_server, dn)
    result = run(setup, "process", "--dry-run")
    assert result.code == 0, result.err
    assert re.search(r"^would\s+add\s+4000020", result.out, re.M)
    assert "nothing changed" in result.out
    assert read_entry(ldap_server, dn) == before_entry
    assert fingerprint(setup.root) == {}
    assert not setup.quota_log.exists()
    assert not setup.status_file.exists()
    assert not setup.lock_file.exists()


def test_interrupted_entry_is_shown_reset_and_done(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000021", mode="adding")
    scan = run(setup, "scan", "--json")
    rows = json.loads(scan.out)
    assert [(row["uid"], row["status"]) for row in rows] == [("4000021", "interrupted")]
    assert run(setup, "process").out == "", "an interrupted entry waits for an operator"
    reset = run(setup, "reset", "--dn", dn)
    assert reset.code == 0, reset.err
    assert re.search(r"sstProvisioningMode\s+adding\s+add", reset.out)
    assert run(setup, "process").code == 0
    assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]


def test_reset_of_a_deleted_entry_defaults_to_delete(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000022", mode="deleted", state="20260101T000000Z",
             extra={"sstProvisioningReturnValue": ["0"]})  # fmt: skip
    assert run(setup, "reset", "--uid", "4000022", "--any-status").code == 0
    entry = read_entry(ldap_server, dn)
    assert entry["sstprovisioningmode"] == ["delete"]
    assert entry["sstprovisioningstate"] == ["0"]
    assert "sstprovisioningreturnvalue" not in entry


def test_a_held_lock_stops_process_and_reset(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dn = add(ldap_server, "4000023")
    holder = hold_lock(setup.lock_file)
    try:
        result = run_process(setup, "process")
        assert result.code == 75
        errors = [line for line in result.err.splitlines() if line.strip()]
        assert len(errors) == 1 and f"PID {holder.pid}" in errors[0]
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["add"]
        refused = run_process(setup, "reset", "--uid", "4000023", "--mode", "modify")
        assert refused.code == 75 and "--force" in refused.err
        scan = run(setup, "scan")
        assert scan.code == 0
        forced = run_process(
            setup, "reset", "--uid", "4000023", "--mode", "modify", "--force", "--any-status"
        )
        assert forced.code == 0
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["modify"]
    finally:
        holder.kill()
        holder.wait()
    # The kernel frees the lock of a killed holder: no stale lock.
    assert run_process(setup, "process").code == 0


def test_wait_takes_the_lock_once_it_is_free(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4000024")
    holder = hold_lock(setup.lock_file)
    started = subprocess.Popen(
        [sys.executable, "-m", "provbackup", "--config", str(setup.config), "process",
         "--wait", "60"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    assert started.poll() is None, "still waiting for the lock"
    holder.kill()
    holder.wait()
    out, err = started.communicate(timeout=60)
    assert started.returncode == 0, err
    assert "done" in out


def test_unreachable_ldap_exits_69_with_one_line(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    setup = write_config(
        tmp_path, None, uri=f"ldap://127.0.0.1:{port}", base_dn="dc=x", start_tls="no",
        attempts="2",
    )  # fmt: skip
    for command in ("process", "scan"):
        result = run_process(setup, command)
        assert result.code == 69, result.err
        final = result.err.strip().splitlines()[-1]
        assert final.startswith("provbackup: error: LDAP unavailable after 2 attempt(s)")
        assert "Traceback" not in result.err


def test_wrong_password_exits_69_without_showing_it(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, bind_password="not-the-password")
    result = run_process(setup, "-v", "scan")
    assert result.code == 69
    assert "invalid credentials" in result.err
    assert "not-the-password" not in result.err + result.out


def test_configuration_errors_exit_78_and_usage_errors_2(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server, page_sise="5")
    result = run_process(setup, "scan")
    assert result.code == 78
    assert "[ldap] page_sise: unknown key (did you mean 'page_size'?)" in result.err
    usage = run_process(setup, "process", "--limit", "zero")
    assert usage.code == 2
    missing = run_process(tmp_path / "absent.conf", "scan")
    assert missing.code == 78 and "absent.conf" in missing.err


def test_limit_uid_and_dn_narrow_the_run(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    dns = [add(ldap_server, f"40001{index:02d}") for index in range(5)]
    result = run(setup, "process", "--uid", "4000102")
    assert result.code == 0 and result.out.count("done ") == 1
    assert read_entry(ldap_server, dns[2])["sstprovisioningmode"] == ["added"]
    result = run(setup, "process", "--dn", dns[4])
    assert read_entry(ldap_server, dns[4])["sstprovisioningmode"] == ["added"]
    result = run(setup, "process", "--limit", "2")
    modes = [read_entry(ldap_server, dn)["sstprovisioningmode"][0] for dn in dns]
    assert modes.count("added") == 4
    outside = run(setup, "process", "--dn", "uid=4000100,dc=elsewhere")
    assert outside.code == 2 and "not below the configured base DN" in outside.err


def test_mass_delete_is_refused_unless_allowed(tmp_path, ldap_server):
    setup = write_config(
        tmp_path, ldap_server, "[delete]\nmax_per_run = 2\n[backup]\nserver_name = backup1\n"
    )
    # Deletes of accounts this server holds (a delete another server holds is not its own).
    deletes = [
        add(ldap_server, f"40002{index:02d}", mode="delete", extra={"host": ["backup1"]})
        for index in range(3)
    ]
    other = add(ldap_server, "4000299")
    refused = run(setup, "process")
    assert refused.code == 1
    assert "3 deletes are due, more than [delete] max_per_run 2" in refused.err
    assert all(read_entry(ldap_server, dn)["sstprovisioningmode"] == ["delete"] for dn in deletes)
    assert read_entry(ldap_server, other)["sstprovisioningmode"] == ["added"]
    allowed = run(setup, "process", "--allow-mass-delete")
    assert allowed.code == 0
    assert all(read_entry(ldap_server, dn)["sstprovisioningmode"] == ["deleted"] for dn in deletes)


def test_two_hosts_never_work_on_the_same_entry(tmp_path, ldap_server):
    uids = [f"41{index:05d}" for index in range(60)]
    entries = [account_entry(uid, base_dn=ldap_server.accounts_dn) for uid in uids]
    ldap_server.add_entries(entries)
    hosts = []
    for host in ("a", "b"):
        directory = tmp_path / host
        directory.mkdir()
        setup = write_config(directory, ldap_server, f"[backup]\nroot = {tmp_path / 'backup'}\n")
        hosts.append(setup)
    (tmp_path / "backup").mkdir()
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "provbackup", "--config", str(setup.config), "process"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for setup in hosts
    ]
    for process in runs:
        process.communicate(timeout=300)
        assert process.returncode == 0
    done: list[str] = []
    for setup in hosts:
        status = json.loads(setup.status_file.read_text())
        done += [item["uid"] for item in status["entries"] if item["outcome"] == "done"]
    assert sorted(done) == sorted(uids), "each entry done exactly once, by one host"
    for dn, _ in entries:
        assert read_entry(ldap_server, dn)["sstprovisioningmode"] == ["added"]


def test_show_describes_the_account_and_escapes_its_argument(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4000300")
    add(ldap_server, "4000301")
    assert run(setup, "process").code == 0
    shown = run(setup, "show", "4000300")
    assert shown.code == 0, shown.err
    assert "uid=4000300," in shown.out and "added" in shown.out
    assert str(account_dir(setup.root, "4000300")) in shown.out
    as_json = json.loads(run(setup, "show", "--json", "4000300").out)
    assert as_json[0]["provisioning"]["mode"] == "added"
    for hostile in ("*", "4000300)(uid=*", "*)(|(uid=*"):
        result = run(setup, "show", hostile)
        assert result.code == 1, hostile
        assert "no provisioned entry" in result.err
    assert run(setup, "reset", "--uid", "*").code == 1


def test_debug_log_shows_each_search_as_ldapsearch_without_the_password(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    result = run(setup, "-v", "scan")
    assert result.code == 0
    line = next(line for line in result.err.splitlines() if "equivalent: ldapsearch" in line)
    assert "-ZZ" in line and "-W" in line and "-E pr=500/noprompt" in line
    assert "(sstProvisioningState=0)" in line
    assert ldap_server.bind_password not in result.err


def test_scan_lists_only_entries_needing_attention(tmp_path, ldap_server):
    setup = write_config(tmp_path, ldap_server)
    add(ldap_server, "4000400", mode="added", state="20260101T000000Z")
    add(ldap_server, "4000401", mode="modify")
    add(ldap_server, "4000402", mode="deleting", extra={"sstProvisioningReturnValue": ["20"]})
    rows = json.loads(run(setup, "scan", "--json").out)
    assert sorted((row["uid"], row["status"]) for row in rows) == [
        ("4000401", "due"),
        ("4000402", "failed"),
    ]
    table = run(setup, "scan").out
    assert "failed (20)" in table and "4000400" not in table


def test_against_the_stoney_cloud_schema_with_its_documented_example(tmp_path, stoney_ldap_server):
    """The real sst.schema: INTEGER execution date, sstProvisioning class, jailkit home."""
    server = stoney_ldap_server
    setup = write_config(tmp_path, server)
    home = jailkit_home_directory(setup.root, "3723707")
    dn, attributes = account_entry(
        "3723707", base_dn=server.accounts_dn, home_directory=home, quota=10 * 2**30
    )
    assert "posixAccount" in attributes["objectClass"]
    assert "sstProvisioning" in attributes["objectClass"]
    later_dn, later = account_entry(
        "3723708", base_dn=server.accounts_dn, date=today(2),
        home_directory=jailkit_home_directory(setup.root, "3723708"),
    )  # fmt: skip
    server.add_entries([(dn, attributes), (later_dn, later)])

    result = run(setup, "process")

    assert result.code == 0, result.err
    entry = read_entry(server, dn)
    assert entry["sstprovisioningmode"] == ["added"]
    assert TIMESTAMP.fullmatch(entry["sstprovisioningstate"][0])
    assert entry["sstprovisioningexecutiondate"] == ["0"]
    assert entry["sstprovisioningreturnvalue"] == ["0"]
    assert (setup.root / "7/707/723/3723707/chroot/home/3723707/incoming").is_dir()
    assert read_entry(server, later_dn)["sstprovisioningmode"] == ["add"]

    modify_entry(server, dn, {"sstProvisioningMode": ["modify"], "sstProvisioningState": ["0"],
                              "sstIsActive": ["FALSE"]})  # fmt: skip
    assert run(setup, "process").code == 0
    assert read_entry(server, dn)["sstprovisioningmode"] == ["modified"]
    modify_entry(server, dn, {"sstProvisioningMode": ["delete"], "sstProvisioningState": ["0"]})
    assert run(setup, "process").code == 0
    assert read_entry(server, dn)["sstprovisioningmode"] == ["deleted"]
    assert not (setup.root / "7/707/723/3723707").exists()
