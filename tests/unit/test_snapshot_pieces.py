"""The snapshot runner's pieces on a real filesystem: finding accounts, sizes, XML, locks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from xml.etree.ElementTree import ParseError

import pytest

from provbackup.accountlock import AccountBusyError, account_lock, account_lock_path
from provbackup.actions.snapshot_check import evaluate_runs
from provbackup.config import Config, LdapConfig, RunConfig
from provbackup.engines.rsnapshot_usage import allocated_bytes
from provbackup.work.discover import find_accounts
from provbackup.work.safe import open_root
from provbackup.work.usage import parse_backup_ended


def du(path: Path) -> int:
    output = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(output.split("\t")[0])


def config_for(tmp_path: Path) -> Config:
    return Config(
        source=tmp_path / "provbackup.conf",
        ldap=LdapConfig(uris=("ldap://127.0.0.1",), base_dn="dc=example"),
        run=RunConfig(lock_file=tmp_path / "run" / "provbackup.lock"),
    )


def make_account(root: Path, parts: tuple[str, ...], conf: str = "rsnapshot.conf") -> Path:
    account = root.joinpath(*parts)
    account.mkdir(parents=True)
    (account / conf).write_text("x")
    return account


def test_find_accounts_walks_only_the_layout_and_follows_nothing(tmp_path):
    root = tmp_path / "backup"
    make_account(root, ("7", "707", "723", "3723707"))
    make_account(root, ("8", "708", "723", "3723708"), conf="rsnapshot.conf.inactive")
    make_account(root, (".deleted", "1", "001", "000", "1000001"))
    make_account(root, ("9", "709", "723", "wrongplace"))
    linked = make_account(tmp_path / "elsewhere", ("1", "001", "000", "1000001"))
    os.symlink(tmp_path / "elsewhere" / "1", root / "1")  # a layout directory that is a link
    fake = root / "2" / "002" / "000" / "1000002"
    fake.mkdir(parents=True)
    os.symlink(linked / "rsnapshot.conf", fake / "rsnapshot.conf")  # a conf that is a link
    make_account(root, ("3", "003", "000", "1000003"), conf="rsnapshot.conf.bak")

    found = [paths.account.name for paths in find_accounts(root, "stoney")]

    assert found == ["3723707"]


def test_find_accounts_flat_layout_skips_dot_names(tmp_path):
    root = tmp_path / "backup"
    make_account(root, ("alice",))
    make_account(root, (".deleted",))
    make_account(root, ("bob",), conf="rsnapshot.conf.inactive")

    assert [paths.account.name for paths in find_accounts(root, "flat")] == ["alice"]


def test_sizes_count_hard_links_once_and_follow_no_symlink(tmp_path):
    top = tmp_path / "tree"
    (top / "a").mkdir(parents=True)
    (top / "a" / "one").write_bytes(os.urandom(100_000))
    os.link(top / "a" / "one", top / "a" / "two")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(1_000_000))
    os.symlink(outside, top / "link")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):  # deeper than Python's recursion limit (pathlib cannot make it)
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"leaf" * 2000)
    os.close(leaf)
    os.close(fd)

    try:
        with open_root(top) as directory:
            total = allocated_bytes(directory, set())
        expected = du(top)
    finally:
        # pytest's own cleanup recurses on the Python stack: too deep for it.
        subprocess.run(["rm", "-rf", "--", str(top / "d")], check=True)

    # du follows no symlink either: equal figures mean outside/ was not walked.
    assert total == expected


def test_sizes_shared_between_calls_are_counted_in_the_first(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "f").write_bytes(os.urandom(64_000))
    os.link(first / "f", second / "f")
    seen: set[tuple[int, int]] = set()

    with open_root(first) as one, open_root(second) as two:
        sizes = [allocated_bytes(one, seen), allocated_bytes(two, seen)]

    output = subprocess.run(["du", "-s", "--block-size=1", str(first), str(second)],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert sizes == [int(line.split("\t")[0]) for line in output.splitlines()]


ENDED = (
    "<?xml version='1.0'?><backup_ended><enddate>{date}</enddate><id>1</id>"
    "<success>{success}</success></backup_ended>"
)


def test_backup_ended_gives_the_utc_end_of_a_successful_backup():
    data = ENDED.format(date="2013-09-23T08:35:54+02:00", success=1).encode()
    assert parse_backup_ended(data) == datetime(2013, 9, 23, 6, 35, 54, tzinfo=UTC)
    assert parse_backup_ended(ENDED.format(date="2013-09-23T08:35:54Z", success=0).encode()) is None


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><backup_ended/>',
        b'<!DOCTYPE a SYSTEM "file:///etc/shadow"><backup_ended/>',
        b"<backup_ended><enddate>2013-09-23T08:35:54</enddate><success>1</success></backup_ended>",
        b"<other><enddate>2013-09-23T08:35:54Z</enddate><success>1</success></other>",
        b"<backup_ended>" + b" " * 70_000 + b"</backup_ended>",
    ],
    ids=["entities", "external", "no-offset", "wrong-root", "too-large"],
)
def test_backup_ended_refuses_what_a_customer_might_plant(data):
    with pytest.raises((ValueError, ParseError)):
        parse_backup_ended(data)


def test_evaluate_runs_warns_on_failures_and_is_critical_on_errors():
    warnings, problems = evaluate_runs(
        {
            "hourly": None,
            "daily": {"exit_code": 1, "counts": {"failed": 2, "busy": 1}},
            "weekly": {"exit_code": 69},
            "monthly": {"exit_code": 70, "error": "internal error: boom"},
            "yearly": {"exit_code": 0},
        }
    )
    assert warnings == [
        "last daily snapshot run: 3 accounts failed",
        "last weekly snapshot run could not write usage to LDAP",
    ]
    assert problems == ["last monthly snapshot run exited 70: internal error: boom"]


def test_account_lock_is_held_by_another_process(tmp_path):
    config = config_for(tmp_path)
    path = account_lock_path(config, "3723707")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            os.makedirs({str(path.parent)!r}, exist_ok=True)
            fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AccountBusyError, match="busy"), account_lock(config, "3723707", 0.3):
            pass
        # Another account is not blocked.
        with account_lock(config, "3723708", 0):
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # Freed with its holder; named by the account directory, the same lock.
    with account_lock(config, "/var/backup/7/707/723/3723707", 30) as held:
        assert held == path


def test_account_lock_refuses_a_name_that_is_not_a_uid(tmp_path):
    with pytest.raises(ValueError):
        account_lock_path(config_for(tmp_path), "..")
