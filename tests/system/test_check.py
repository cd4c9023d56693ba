"""``provbackup check``: the monitoring verdict.

The rules (counts and status file → state) are tested on
:func:`provbackup.actions.verdict.evaluate` directly; the command itself runs
as a real process for the paths that need no directory (a missing
configuration, an unreachable LDAP server), where it must speak the
monitoring-plugin convention (exit 3, "PROVBACKUP UNKNOWN") instead of
provbackup's own exit codes 78 and 69.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provbackup.actions.verdict import (
    CheckResult,
    CheckState,
    count_statuses,
    evaluate,
    status_age,
)
from provbackup.state import Status

NOW = datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC)
MAX_AGE = 3600
REPOSITORY = Path(__file__).resolve().parents[2]


def counts(**numbers: int) -> dict[Status, int]:
    """Counts by status name, e.g. ``counts(failed=2)``; the rest are 0."""
    statuses = [Status(name) for name, number in numbers.items() for _ in range(number)]
    return count_statuses(statuses)


def status(age: float = 12, exit_code: int = 0, error: str | None = None) -> dict:
    """A status document of a run that finished ``age`` seconds before NOW."""
    finished = NOW - timedelta(seconds=age)
    return {
        "version": 1,
        "started": (finished - timedelta(seconds=3)).isoformat(),
        "finished": finished.isoformat(),
        "exit_code": exit_code,
        "error": error,
    }


def verdict(entry_counts, status_document, **options) -> CheckResult:
    return evaluate(entry_counts, status_document, now=NOW, max_status_age=MAX_AGE, **options)


def test_all_quiet_is_ok_with_the_perfdata_line():
    result = verdict(counts(), status(age=12))

    assert result.state is CheckState.OK
    assert result.line() == (
        "PROVBACKUP OK - no entry needs attention; last run 12s ago"
        " | due=0 overdue=0 failed=0 interrupted=0 scheduled=0 invalid=0 status_age=12s"
    )


def test_due_and_scheduled_entries_are_ok_and_counted():
    result = verdict(counts(due=2, scheduled=5, running=1, done=4), status())

    assert result.state is CheckState.OK
    assert result.summary.startswith("2 due, 5 scheduled")
    assert result.perfdata["due"] == "2"
    assert result.perfdata["scheduled"] == "5"


@pytest.mark.parametrize("name", ["failed", "invalid"])
def test_failed_or_invalid_entries_are_critical(name):
    result = verdict(counts(**{name: 3}), status())

    assert result.state is CheckState.CRITICAL
    assert f"3 {name}" in result.summary
    assert result.perfdata[name] == "3"


@pytest.mark.parametrize("name", ["overdue", "interrupted"])
def test_overdue_or_interrupted_entries_are_a_warning(name):
    result = verdict(counts(**{name: 1}), status())

    assert result.state is CheckState.WARNING
    assert f"1 {name}" in result.summary


def test_critical_wins_over_warning_and_both_are_named():
    result = verdict(counts(failed=1, overdue=2), status())

    assert result.state is CheckState.CRITICAL
    assert result.summary.startswith("1 failed, 2 overdue; last run")


def test_missing_status_file_is_critical():
    result = verdict(counts(), None, status_file="/var/lib/provbackup/status.json")

    assert result.state is CheckState.CRITICAL
    assert "no status file /var/lib/provbackup/status.json" in result.summary
    assert result.perfdata["status_age"] == "U"


def test_status_file_older_than_max_status_age_is_critical():
    assert verdict(counts(), status(age=MAX_AGE)).state is CheckState.OK
    result = verdict(counts(), status(age=MAX_AGE + 1))

    assert result.state is CheckState.CRITICAL
    assert "last run finished 1h ago, more than 3600s" in result.summary
    assert result.perfdata["status_age"] == "3601s"


def test_last_run_ending_in_error_is_critical():
    result = verdict(counts(), status(exit_code=69, error="LDAP unavailable"))

    assert result.state is CheckState.CRITICAL
    assert "last run exited 69: LDAP unavailable" in result.summary


def test_last_run_with_failed_entries_is_left_to_the_counts():
    # Exit 1 means entries failed; once they are reset the check turns OK
    # even before the next run rewrites the status file.
    assert verdict(counts(), status(exit_code=1)).state is CheckState.OK
    assert verdict(counts(failed=1), status(exit_code=1)).state is CheckState.CRITICAL


def test_unreachable_directory_is_unknown_unless_the_status_is_critical():
    fresh = verdict(None, status(), ldap_error="LDAP unavailable after 3 attempts")
    assert fresh.state is CheckState.UNKNOWN
    assert fresh.summary == "cannot read the directory: LDAP unavailable after 3 attempts"
    assert "due" not in fresh.perfdata
    assert fresh.perfdata["status_age"] == "12s"

    stale = verdict(None, status(age=MAX_AGE * 2, exit_code=69), ldap_error="down")
    assert stale.state is CheckState.CRITICAL
    assert "last run exited 69" in stale.summary
    assert "cannot read the directory: down" in stale.summary


def test_status_age_reads_finished_then_started_and_tolerates_skew():
    assert status_age({"finished": "2024-05-06T11:59:00+00:00"}, NOW) == 60
    # A naive time is taken as UTC (the writer's clock is UTC).
    assert status_age({"finished": "2024-05-06T11:59:00"}, NOW) == 60
    assert status_age({"finished": None, "started": "2024-05-06T11:00:00+00:00"}, NOW) == 3600
    assert status_age({"finished": "2024-05-06T13:00:00+00:00"}, NOW) == 0
    assert status_age({"finished": "yesterday"}, NOW) is None


def test_status_without_any_time_is_critical():
    result = verdict(counts(), {"exit_code": 0})

    assert result.state is CheckState.CRITICAL
    assert "no run time in the status file" in result.summary


def run_check(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``provbackup --config CONFIG check`` as a real process."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop(CONFIG_VARIABLE, None)
    return subprocess.run(
        [sys.executable, "-m", "provbackup", "--config", str(config), *arguments, "check"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


CONFIG_VARIABLE = "PROVBACKUP_CONFIG"


def write_config(tmp_path: Path, port: int) -> Path:
    """A configuration pointing at a closed LDAP port, with lock and status in tmp_path."""
    config = tmp_path / "provbackup.conf"
    config.write_text(
        "[ldap]\n"
        f"uri = ldap://127.0.0.1:{port}\n"
        "base_dn = dc=example,dc=org\n"
        "start_tls = no\n"
        "attempts = 1\n"
        "retry_delay = 0\n"
        "timeout = 2\n"
        "[backup]\n"
        f"root = {tmp_path}\n"
        "[run]\n"
        f"lock_file = {tmp_path / 'run' / 'provbackup.lock'}\n"
        f"status_file = {tmp_path / 'status.json'}\n"
        "max_status_age = 600\n"
    )
    return config


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_command_with_a_missing_configuration_is_unknown(tmp_path):
    result = run_check(tmp_path / "nowhere.conf")

    assert result.returncode == 3, result.stderr
    assert result.stdout == (
        f"PROVBACKUP UNKNOWN - {tmp_path / 'nowhere.conf'}: configuration file not found\n"
    )


def test_command_with_an_invalid_configuration_is_unknown(tmp_path):
    config = tmp_path / "provbackup.conf"
    config.write_text("[ldap]\nbase_dn = dc=example,dc=org\n[run]\nmax_status_ag = 5\n")

    result = run_check(config)

    assert result.returncode == 3
    assert result.stdout.startswith("PROVBACKUP UNKNOWN - ")
    assert "max_status_ag" in result.stdout
    assert "\n" not in result.stdout.rstrip("\n"), "exactly one line"


def test_command_with_ldap_down_and_a_fresh_status_is_unknown(tmp_path):
    from provbackup.actions.report import RunReport
    from provbackup.status import write_status

    config = write_config(tmp_path, closed_port())
    now = datetime.now(UTC)
    write_status(
        tmp_path / "status.json",
        RunReport(started=now, finished=now, dry_run=False).to_status("backup1"),
    )

    result = run_check(config, "-qq")

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("PROVBACKUP UNKNOWN - cannot read the directory: ")
    assert " | status_age=" in result.stdout


def test_command_with_ldap_down_and_no_status_file_is_critical(tmp_path):
    config = write_config(tmp_path, closed_port())

    result = run_check(config, "-qq")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith("PROVBACKUP CRITICAL - no status file ")


# -- end to end, against the sandbox slapd (tests/conftest.py) -----------------


def sandbox_config(tmp_path: Path, server) -> Path:
    """A configuration for the sandbox slapd, with root, lock and status in tmp_path."""
    ldap = "".join(f"{key} = {value}\n" for key, value in server.ldap_settings().items())
    config = tmp_path / "provbackup.conf"
    config.write_text(
        f"[ldap]\n{ldap}attempts = 1\nretry_delay = 0\n"
        f"[backup]\nroot = {tmp_path / 'backup'}\n"
        "[rsnapshot]\nconfigtest = no\n"
        f"[run]\nlock_file = {tmp_path / 'run' / 'provbackup.lock'}\n"
        f"status_file = {tmp_path / 'status.json'}\n"
        "max_status_age = 600\n"
    )
    (tmp_path / "backup").mkdir()
    return config


def run_provbackup(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``provbackup --config CONFIG ARGUMENTS`` as a real process."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop(CONFIG_VARIABLE, None)
    return subprocess.run(
        [sys.executable, "-m", "provbackup", "--config", str(config), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_check_after_a_real_run_on_an_empty_directory_is_ok(tmp_path, ldap_server):
    config = sandbox_config(tmp_path, ldap_server)

    before = run_provbackup(config, "check")
    run = run_provbackup(config, "process")
    after = run_provbackup(config, "check")

    assert before.returncode == 2, "no run yet: no status file"
    assert before.stdout.startswith(
        "PROVBACKUP CRITICAL - no entry needs attention; no status file"
    )
    assert run.returncode == 0, run.stderr
    assert after.returncode == 0, after.stdout + after.stderr
    assert re.fullmatch(
        r"PROVBACKUP OK - no entry needs attention; last run \d+s ago \| due=0 overdue=0 "
        r"failed=0 interrupted=0 scheduled=0 invalid=0 status_age=\d+s stale=0 "
        r"snapshot_accounts=0\n",
        after.stdout,
    )


def test_check_counts_every_kind_of_entry_in_the_directory(tmp_path, ldap_server):
    from sandbox import account_entry

    config = sandbox_config(tmp_path, ldap_server)
    assert run_provbackup(config, "process").returncode == 0  # a fresh status file
    base = ldap_server.accounts_dn
    failed = {"sstProvisioningReturnValue": ["20"]}
    ldap_server.add_entries(
        [
            account_entry("3723701", base_dn=base),  # due
            account_entry("3723702", base_dn=base, date="20000101"),  # overdue
            account_entry("3723703", base_dn=base, date="29991231"),  # scheduled
            account_entry("3723704", base_dn=base, mode="adding", extra=failed),  # failed
            account_entry("3723705", base_dn=base, mode="modifying"),  # interrupted
            account_entry("3723706", base_dn=base, mode="rebuild"),  # invalid
            account_entry("3723707", base_dn=base, mode="added", state="20240506T070809Z"),
        ]
    )

    result = run_provbackup(config, "check")

    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stdout
    assert line.startswith("PROVBACKUP CRITICAL - 1 failed, 1 invalid, 1 overdue, 1 interrupted;")
    assert line.split(" | ")[1].startswith(
        "due=1 overdue=1 failed=1 interrupted=1 scheduled=1 invalid=1 status_age="
    )


def test_check_warns_on_an_interrupted_entry_only(tmp_path, ldap_server):
    from sandbox import account_entry

    config = sandbox_config(tmp_path, ldap_server)
    assert run_provbackup(config, "process").returncode == 0
    ldap_server.add_entries(
        [account_entry("3723705", base_dn=ldap_server.accounts_dn, mode="modifying")]
    )

    result = run_provbackup(config, "check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("PROVBACKUP WARNING - 1 interrupted; last run ")
