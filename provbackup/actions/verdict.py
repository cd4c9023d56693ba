"""The pure half of ``check``: facts in (entry counts, the status document, the time), verdict out.

Follows the monitoring-plugin convention: a state (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN), one status line, and performance data after a
``|``. Nothing here reads the directory or a file, so the rules are tested
without either; :mod:`provbackup.actions.check` gathers the facts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provbackup.errors import EXIT_ENTRIES_FAILED, EXIT_OK, SIGNAL_EXIT_BASE
from provbackup.state import Status

# The counts reported as perfdata, in this order.
COUNTED = (
    Status.DUE,
    Status.OVERDUE,
    Status.FAILED,
    Status.INTERRUPTED,
    Status.SCHEDULED,
    Status.INVALID,
)


class CheckState(enum.IntEnum):
    """The monitoring-plugin states; the value is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class CheckResult:
    """A verdict: the state, the human summary and the perfdata (name → value)."""

    state: CheckState
    summary: str
    perfdata: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """The plugin's output line: ``PROVBACKUP STATE - summary | name=value ...``."""
        text = f"PROVBACKUP {self.state.name} - {self.summary}"
        if self.perfdata:
            text += " | " + " ".join(f"{name}={value}" for name, value in self.perfdata.items())
        return text


def unknown(message: str) -> CheckResult:
    """The verdict when the facts cannot be gathered (bad configuration, say)."""
    return CheckResult(CheckState.UNKNOWN, message)


def count_statuses(statuses: Iterable[Status]) -> dict[Status, int]:
    """Count ``statuses`` into a dict with a key (possibly 0) for every counted status."""
    counts = dict.fromkeys(COUNTED, 0)
    for status in statuses:
        if status in counts:
            counts[status] += 1
    return counts


def status_age(status: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds since the run recorded in ``status`` finished (or started).

    Takes the status document and the aware current time. Returns None when
    neither time can be read. A time in the future (clock skew between the
    writer and the reader) counts as age 0.
    """
    for key in ("finished", "started"):
        text = status.get(key)
        if not isinstance(text, str):
            continue
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue
        if moment.tzinfo is None:  # written by a clock without a zone: UTC by convention
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (now - moment).total_seconds())
    return None


def evaluate(
    counts: Mapping[Status, int] | None,
    status: Mapping[str, Any] | None,
    *,
    now: datetime,
    max_status_age: int,
    status_file: Path | str = "the status file",
    ldap_error: str | None = None,
    ldap_error_critical: bool = False,
    root_problem: str | None = None,
) -> CheckResult:
    """Turn the facts into a verdict.

    Takes the entry counts by status (None when the directory could not be
    read; ``ldap_error`` then says why, and ``ldap_error_critical`` marks an
    error that is a fault, not an outage, such as a base DN that does not
    exist), why the backup root cannot be opened (``root_problem``), the
    last run's status document (None
    when missing or unreadable), the aware current time, the configured
    ``[run] max_status_age`` in seconds, and the status file's path for the
    messages. Returns the :class:`CheckResult`:

    - CRITICAL: entries failed or are invalid; no status file; the last run
      finished more than ``max_status_age`` seconds ago; or it ended with an
      exit code other than 0 and 1 (1 only means entries failed, which the
      counts already show, and which stays visible there until reset).
    - WARNING: entries are overdue or interrupted, or the last run was
      stopped by SIGTERM/SIGINT (exit 128 + the signal, ``stopped_by_signal``).
    - CRITICAL also: the backup root cannot be opened; the directory
      answered that the configured base DN does not exist (nothing would
      ever be provisioned).
    - UNKNOWN: the directory could not be read and the status file shows no
      critical problem of its own (a critical one is still reported).
    - OK otherwise.
    """
    # Entry counts read as "1 failed, 2 overdue"; run problems follow, after "; ".
    critical_counts, warning_counts, perfdata = _entry_counts(counts)
    run = _last_run(status, now, max_status_age, status_file)
    run_problems = ([root_problem] if root_problem is not None else []) + run.problems
    perfdata["status_age"] = run.age
    if counts is None:
        return _directory_unreadable(ldap_error, ldap_error_critical, run_problems, perfdata)
    if critical_counts or run_problems:
        state = CheckState.CRITICAL
    elif warning_counts or run.warnings:
        state = CheckState.WARNING
    else:
        state = CheckState.OK
    entry_text = critical_counts + warning_counts
    if not entry_text:
        entry_text = [
            f"{counts[name]} {name}"
            for name in (Status.DUE, Status.SCHEDULED)
            if counts.get(name, 0)
        ] or ["no entry needs attention"]
    parts = [", ".join(entry_text), *run_problems, *run.warnings] + ([run.text] if run.text else [])
    return CheckResult(state, "; ".join(parts), perfdata)


def _entry_counts(
    counts: Mapping[Status, int] | None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """The critical and warning entry counts as text ("1 failed"), and their perfdata."""
    critical_counts: list[str] = []
    warning_counts: list[str] = []
    perfdata: dict[str, str] = {}
    if counts is not None:
        for name in COUNTED:
            perfdata[str(name)] = str(counts.get(name, 0))
        for name, found in ((Status.FAILED, critical_counts), (Status.INVALID, critical_counts),
                            (Status.OVERDUE, warning_counts),
                            (Status.INTERRUPTED, warning_counts)):  # fmt: skip
            if counts.get(name, 0):
                found.append(f"{counts[name]} {name}")
    return critical_counts, warning_counts, perfdata


@dataclass(frozen=True)
class _LastRun:
    """What the status file says of the last run: problems, warnings, "last run 5m ago", age."""

    problems: list[str]
    warnings: list[str]
    text: str
    age: str


def _last_run(
    status: Mapping[str, Any] | None, now: datetime, max_status_age: int, status_file: Path | str
) -> _LastRun:
    """Read the last run's status document (None: missing) into findings."""
    problems: list[str] = []
    warnings: list[str] = []
    if status is None:
        problems.append(f"no status file {status_file} (has process ever run?)")
        return _LastRun(problems, warnings, "", "U")
    text = ""
    age = status_age(status, now)
    if age is None:
        problems.append(f"no run time in the status file {status_file}")
    elif age > max_status_age:
        problems.append(
            f"last run finished {_duration(age)} ago, more than {max_status_age}s "
            "(is the timer or cron job running? is a run hanging?)"
        )
    else:
        text = f"last run {_duration(age)} ago"
    exit_code = status.get("exit_code")
    stopped = status.get("stopped_by_signal")
    if stopped and isinstance(exit_code, int) and exit_code > SIGNAL_EXIT_BASE:
        # Stopped on purpose (systemctl stop, a shutdown, Ctrl-C): the entry in hand
        # was finished and the next run goes on, so a warning, not a failure.
        warnings.append(f"last run stopped by {stopped}")
    elif exit_code not in (EXIT_OK, EXIT_ENTRIES_FAILED):
        reason = status.get("error")
        problems.append(f"last run exited {exit_code}" + (f": {reason}" if reason else ""))
    return _LastRun(problems, warnings, text, "U" if age is None else f"{int(age)}s")


def _directory_unreadable(
    ldap_error: str | None, critical: bool, run_problems: list[str], perfdata: dict[str, str]
) -> CheckResult:
    """The verdict without entry counts: UNKNOWN, unless the error or a run problem is critical."""
    message = f"cannot read the directory: {ldap_error or 'unknown error'}"
    if critical:
        return CheckResult(CheckState.CRITICAL, "; ".join([message, *run_problems]), perfdata)
    if run_problems:
        return CheckResult(CheckState.CRITICAL, "; ".join([*run_problems, message]), perfdata)
    return CheckResult(CheckState.UNKNOWN, message, perfdata)


def _duration(seconds: float) -> str:
    """``seconds`` as a short human duration: 45s, 12m, 3h, 2d."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"
