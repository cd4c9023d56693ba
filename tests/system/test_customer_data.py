"""Hardening round two: what customers write, and what a renamed base does (issue 22).

Each test runs the real ``provbackup snapshot`` (real rsnapshot, a real
filesystem under a temporary root) against the real slapd of the suite:

- a base DN renamed or deleted under the run skips the usage write-back
  only: every account is still snapshotted, and the exit code, the status
  file and ``check`` say why;
- a ``backupEnded.xml`` whose date or encoding breaks a parser leaves that
  host out of sstBackupLastSuccessfulBackup with one log line, never fails
  the account;
- DOCTYPEs and entities are refused in every encoding expat reads, never
  expanded, and nothing they name is fetched;
- pruning a huge dropped snapshot keeps ``[delete] time_budget`` and the
  next run goes on with it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from support import read_entry, run, write_config
from test_snapshot import account_dir, home_of, lines_by_uid, provision, upload
from test_snapshot_usage import ENDED, sepiola

from sandbox import account_entry, jailkit_home_directory
from sandbox.data import delete_below


def status_of(setup, interval: str = "daily") -> dict:
    return json.loads(setup.status_file.with_name(f"status-snapshot-{interval}.json").read_text())


def usage_file(root: Path, uid: str) -> Path:
    return account_dir(root, uid) / "chroot" / "etc" / "provbackup" / "usage"


# -- 1. a missing base DN ---------------------------------------------------------------


def provision_below(server, setup, base: str, *uids: str, **options) -> dict[str, str]:
    dns = {}
    for uid in uids:
        dn, attributes = account_entry(
            uid, base_dn=base, home_directory=jailkit_home_directory(setup.root, uid), **options
        )
        server.add_entries([(dn, attributes)])
        dns[uid] = dn
    result = run(setup, "process")
    assert result.code == 0, result.out + result.err
    return dns


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_missing_base_dn_skips_the_usage_write_back_and_every_account_is_snapshotted(
    tmp_path, ldap_server, how
):
    base = f"ou=shop,{ldap_server.accounts_dn}"
    ldap_server.add_entries([(base, {"objectClass": ["organizationalUnit"], "ou": ["shop"]})])
    setup = write_config(tmp_path, ldap_server, base_dn=base)
    uids = ("1000301", "1000302", "1000303")
    dns = provision_below(ldap_server, setup, base, *uids, quota=7_000_000)
    for uid in uids:
        upload(setup.root, uid)
    first = run(setup, "snapshot", "daily")
    assert first.code == 0, first.out + first.err
    sizes = {uid: read_entry(ldap_server, dns[uid])["sstbackupsize"] for uid in uids}
    connection = ldap_server.connection()
    try:
        if how == "renamed":
            assert connection.modify_dn(base, "ou=shop-renamed"), connection.result
        else:
            delete_below(connection, base)
            assert connection.delete(base), connection.result
    finally:
        connection.unbind()
    for uid in uids:  # something new to snapshot, so the usage changes
        upload(setup.root, uid, files={"more": os.urandom(200_000)})

    result = run(setup, "snapshot", "daily")

    # Every account snapshotted: the usage write-back was the only casualty.
    assert lines_by_uid(result.out) == {uid: "done" for uid in uids}, result.out + result.err
    for uid in uids:
        assert (home_of(setup.root, uid) / ".snapshots" / "daily.1" / "host1").is_dir()
        assert (home_of(setup.root, uid) / ".snapshots" / "daily.0" / "host1" / "more").is_file()
        quota, backup, _snapshot = usage_file(setup.root, uid).read_text().split()
        assert quota == "7000000", "the last known quota stays"
        assert int(backup) > 200_000, "the usage file is still updated from the disk"
    # The truth: exit 78 (the base DN is a configuration matter), one warning naming it.
    assert result.code == 78, result.out + result.err
    assert "usage not written back" in result.out
    warnings = [line for line in result.err.splitlines() if "usage write-back skipped" in line]
    assert len(warnings) == 1, result.err
    assert base in warnings[0] and "does not exist" in warnings[0]
    status = status_of(setup)
    assert status["exit_code"] == 78
    assert status["counts"]["done"] == 3 and status["counts"]["failed"] == 0
    assert base in status["ldap_error"] and "does not exist" in status["ldap_error"]
    assert status["error"] is None, "the run itself did not fail"
    check = run(setup, "check")
    assert check.code == 2, "the base DN itself is still missing: CRITICAL, as for process"
    assert "last daily snapshot run could not write usage to LDAP: base DN" in check.out
    if how == "deleted":
        return
    # Renamed back: check still says what the last snapshot run could not do, as a warning.
    connection = ldap_server.connection()
    try:
        assert connection.modify_dn(
            f"ou=shop-renamed,{ldap_server.accounts_dn}", "ou=shop"
        ), connection.result
    finally:
        connection.unbind()
    check = run(setup, "check")
    assert check.code == 1 and check.out.startswith("PROVBACKUP WARNING"), check.out
    assert "last daily snapshot run could not write usage to LDAP: base DN" in check.out
    assert read_entry(ldap_server, dns["1000301"])["sstbackupsize"] == sizes["1000301"]
    again = run(setup, "snapshot", "daily")
    assert again.code == 0, again.out + again.err
    assert "usage written for 3" in again.out
    assert read_entry(ldap_server, dns["1000301"])["sstbackupsize"] != sizes["1000301"]
    assert "could not write usage" not in run(setup, "check").out


# -- 2. dates that break the parser ------------------------------------------------------

# Host -> enddate: each breaks datetime in its own way, or would reach LDAP malformed.
BAD_DATES = {
    "year1-east": "0001-01-01T00:00:00+00:01",  # OverflowError converting to UTC
    "year9999-west": "9999-12-31T23:59:59-00:01",  # OverflowError the other way
    "year1-utc": "0001-01-01T00:00:00Z",  # strftime("%Y") gives "1": "10101T000000Z"
    "year5-digits": "99999-01-01T00:00:00Z",
    "offset-24h": "2013-09-23T08:35:54+24:00",
    "offset-99": "2013-09-23T08:35:54+99:99",
    "fullwidth-digits": "\uff12\uff10\uff11\uff13-09-23T08:35:54Z",
    "arabic-digits": "\u0662\u0660\u0661\u0663-\u0660\u0669-\u0662\u0663T08:35:54Z",
    "giant-offset": "2013-09-23T08:35:54+1" + "0" * 5000,  # cut at 40 it read as +10:00
    "giant-number": "1" * 5000,
    "february-30": "2013-02-30T08:35:54Z",
    "no-offset": "2013-09-23T08:35:54",
    "empty": "",
}
# Not dates at all: NUL, raw and as a character reference (no XML parser takes either).
BAD_FILES = {
    "nul-raw": ENDED.format(date="2013-09-23T08:35:54\0Z", success=1),
    "nul-reference": ENDED.format(date="2013-09-23T08:35:54&#0;Z", success=1),
}


def test_dates_that_break_the_parser_leave_that_host_out_and_never_fail_the_account(
    tmp_path, ldap_server
):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000311")
    root = setup.root
    for host, date in BAD_DATES.items():
        sepiola(root, "1000311", host, ended=ENDED.format(date=date, success=1))
    for host, text in BAD_FILES.items():
        sepiola(root, "1000311", host, ended=text)
    # Kept: an ordinary one, and the odd but valid offset of +23:59.
    sepiola(root, "1000311", "good", ended=ENDED.format(date="2013-09-23T08:35:54+02:00",
                                                        success=1))  # fmt: skip
    sepiola(root, "1000311", "far-east", ended=ENDED.format(date="2013-09-23T08:35:54+23:59",
                                                            success=1))  # fmt: skip
    # A giant number where "1" is expected is simply not a success (no line: nothing wrong).
    sepiola(root, "1000311", "giant-success", ended=ENDED.format(date="2013-09-23T08:35:54Z",
                                                                 success="1" * 5000))  # fmt: skip
    upload(root, "1000311")

    result = run(setup, "snapshot", "daily")

    assert result.code == 0, result.out + result.err
    assert lines_by_uid(result.out) == {"1000311": "done"}
    entry = read_entry(ldap_server, dns["1000311"])
    assert sorted(entry["sstbackuplastsuccessfulbackup"]) == [
        "far-east:20130922T083654Z",
        "good:20130923T063554Z",
    ]
    assert int(entry["sstbackupsize"][0]) > 0, "the usage is written back"
    assert int(usage_file(root, "1000311").read_text().split()[1]) > 0
    for host, value in [*BAD_DATES.items(), *((host, "") for host in BAD_FILES)]:
        lines = [line for line in result.err.splitlines() if f"host {host}:" in line]
        assert len(lines) == 1, (host, result.err)
        (line,) = lines
        assert "account 1000311" in line
        path = home_of(root, "1000311") / "incoming" / host / ".sepiola_backup" / "backupEnded.xml"
        assert str(path) in line
        assert value[:20] in line, (value[:20], line)
        assert len(line) < len(str(path)) + 300, "a giant value is cut in the log"
    assert "host giant-success:" not in result.err


# -- 3. DOCTYPEs and entities in any encoding --------------------------------------------

ENTITY = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE backup_ended [<!ENTITY a "1">]>'
    "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>&a;</success>"
    "</backup_ended>"
)
LAUGHS = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE backup_ended [<!ENTITY l0 "1">'
    + "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    + "]><backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success>"
    "<id>&l9;</id></backup_ended>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE backup_ended [<!ENTITY a SYSTEM "{url}/entity">]>'
    "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success>"
    "<id>&a;</id></backup_ended>"
)
EXTERNAL_DTD = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE backup_ended SYSTEM "{url}/dtd">'
    "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success></backup_ended>"
)
PLAIN = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success></backup_ended>"
)
# Python codec -> the encoding the declaration names; "-sig" and the plain utf-16/32
# codecs write a byte order mark, the -le/-be ones none.
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "utf-32": "UTF-32",
    "utf-32-le": "UTF-32",
    "utf-32-be": "UTF-32",
}


class Listener:
    """A TCP port on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.socket.close()


def hostile_files(url: str) -> dict[str, bytes]:
    """Host -> backupEnded.xml bytes: every hostile form in every encoding."""
    files = {}
    for codec, declared in ENCODINGS.items():
        for name, template in [("entity", ENTITY), ("laughs", LAUGHS),
                               ("external", EXTERNAL_ENTITY), ("dtd", EXTERNAL_DTD)]:  # fmt: skip
            files[f"{name}-{codec}"] = template.format(encoding=declared, url=url).encode(codec)
    files["parameter-entity"] = (
        f'<?xml version="1.0"?><!DOCTYPE backup_ended [<!ENTITY % p SYSTEM "{url}/p"> %p;]>'
        "<backup_ended><enddate>2014-01-02T03:04:05Z</enddate><success>1</success>"
        "</backup_ended>"
    ).encode()
    return files


def test_doctypes_and_entities_are_refused_in_every_encoding_and_nothing_is_fetched(
    tmp_path, ldap_server
):
    setup = write_config(tmp_path, ldap_server)
    dns = provision(ldap_server, setup, "1000321")
    root = setup.root
    listener = Listener()
    try:
        hostile = hostile_files(listener.url)
        for host, data in hostile.items():
            metadata = home_of(root, "1000321") / "incoming" / host / ".sepiola_backup"
            metadata.mkdir(parents=True)
            (metadata / "backupEnded.xml").write_bytes(data)
        # The same valid file in the encodings expat reads is used: refusing is not blanket.
        for codec in ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"):
            metadata = home_of(root, "1000321") / "incoming" / f"plain-{codec}" / ".sepiola_backup"
            metadata.mkdir(parents=True)
            (metadata / "backupEnded.xml").write_bytes(PLAIN.format(encoding="UTF-16" if "16"
                                                                    in codec else "UTF-8")
                                                       .encode(codec))  # fmt: skip
        upload(root, "1000321")

        result = run(setup, "snapshot", "daily")
    finally:
        listener.close()

    assert result.code == 0, result.out + result.err
    assert lines_by_uid(result.out) == {"1000321": "done"}
    entry = read_entry(ldap_server, dns["1000321"])
    assert sorted(entry["sstbackuplastsuccessfulbackup"]) == [
        "plain-utf-16-be:20140102T030405Z",
        "plain-utf-16-le:20140102T030405Z",
        "plain-utf-16:20140102T030405Z",
        "plain-utf-8-sig:20140102T030405Z",
    ]
    assert listener.connections == 0, "nothing a file names is ever fetched"
    for host in hostile:
        lines = [line for line in result.err.splitlines() if f"host {host}:" in line]
        assert len(lines) == 1, (host, result.err)
        assert "backupEnded.xml" in lines[0] and "account 1000321" in lines[0]


# -- 6. pruning within the time budget ----------------------------------------------------

FILES_PER_DIRECTORY = 200


def dropped_snapshot(snapshots: Path, name: str, uid_number: int) -> int:
    """Make ``snapshots/name`` as rsnapshot leaves one (the customer owns its top); file count."""
    count = 0
    for directory in ("host1/a", "host1/b", "host1/c/d"):
        path = snapshots / name / directory
        path.mkdir(parents=True)
        for number in range(FILES_PER_DIRECTORY):
            (path / f"f{number}").write_text("x")
            count += 1
    os.chown(snapshots / name, uid_number, uid_number)
    return count


def pruning_leftovers(snapshots: Path) -> list[str]:
    return sorted(name for name in os.listdir(snapshots) if name.startswith(".provbackup-pruning"))


def files_below(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def test_a_prune_out_of_time_budget_is_consistent_and_the_next_run_finishes_it(
    tmp_path, ldap_server
):
    tiny = "[delete]\nquarantine_days = 0\ntime_budget = 0.000001\n"
    setup = write_config(tmp_path, ldap_server, tiny)
    provision(ldap_server, setup, "1000331", intervals={"daily": 2, "weekly": 0, "monthly": 0})
    upload(setup.root, "1000331")
    snapshots = home_of(setup.root, "1000331") / ".snapshots"
    trash = account_dir(setup.root, "1000331") / "snapshot-pruning"
    total = dropped_snapshot(snapshots, "daily.5", 1000331)

    first = run(setup, "snapshot", "daily")

    # The snapshot is made; the prune says it ran out of time, and what is left is
    # out of rsnapshot's names and out of the jail, where the customer cannot see it.
    assert first.code == 0, first.out + first.err
    assert lines_by_uid(first.out) == {"1000331": "done"}
    warnings = [line for line in first.err.splitlines() if line.startswith("WARNING")]
    budget_lines = [line for line in warnings if "time_budget" in line]
    assert len(budget_lines) == 1, first.err
    assert f"{trash}/daily.5" in budget_lines[0] and "the next run" in budget_lines[0]
    assert (snapshots / "daily.0" / "host1" / "data" / "file.txt").read_bytes() == b"hello"
    assert os.listdir(snapshots) == ["daily.0"], "the customer sees no half snapshot"
    assert os.listdir(trash) == ["daily.5"]
    remaining = files_below(trash / "daily.5")
    assert 0 < remaining < total, "progress, within the budget"
    info = os.lstat(trash)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o700)
    assert status_of(setup)["exit_code"] == 0
    # Another dropped snapshot of the same name while the first is still being removed.
    dropped_snapshot(snapshots, "daily.5", 1000331)

    second = run(setup, "snapshot", "daily")

    assert second.code == 0, second.out + second.err
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]
    assert sorted(os.listdir(trash)) == ["daily.5", "daily.5.1"]
    assert files_below(trash / "daily.5") < remaining, "the next run goes on with the first"
    # What a killed prune of the first release left in .snapshots, open to the customer.
    dropped_snapshot(snapshots, ".provbackup-pruning.daily.9", 1000331)
    # With the default budget the next run finishes all of it.
    setup = write_config(tmp_path, ldap_server)

    third = run(setup, "snapshot", "daily")

    assert third.code == 0, third.out + third.err
    assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]
    assert not trash.exists(), "nothing left to remove: the directory goes too"
    assert "time_budget" not in third.err


def test_a_prune_across_filesystems_is_sealed_in_place_and_finished_later(tmp_path, ldap_server):
    tiny = "[delete]\nquarantine_days = 0\ntime_budget = 0.000001\n"
    setup = write_config(tmp_path, ldap_server, tiny)
    provision(ldap_server, setup, "1000341", intervals={"daily": 2, "weekly": 0, "monthly": 0})
    upload(setup.root, "1000341")
    snapshots = home_of(setup.root, "1000341") / ".snapshots"
    info = os.lstat(snapshots)
    # .snapshots on a filesystem of its own: no rename reaches A/snapshot-pruning.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(snapshots)],
                   check=True)  # fmt: skip
    try:
        os.chown(snapshots, info.st_uid, info.st_gid)
        os.chmod(snapshots, stat.S_IMODE(info.st_mode))
        total = dropped_snapshot(snapshots, "daily.5", 1000341)

        first = run(setup, "snapshot", "daily")

        assert first.code == 0, first.out + first.err
        assert (snapshots / "daily.0" / "host1").is_dir()
        assert pruning_leftovers(snapshots) == [".provbackup-pruning.daily.5"]
        left = snapshots / ".provbackup-pruning.daily.5"
        status = os.lstat(left)
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (0, 0, 0o700)
        assert 0 < files_below(left) < total
        setup = write_config(tmp_path, ldap_server)

        second = run(setup, "snapshot", "daily")

        assert second.code == 0, second.out + second.err
        assert sorted(os.listdir(snapshots)) == ["daily.0", "daily.1"]
    finally:
        subprocess.run(["umount", str(snapshots)], check=True)
