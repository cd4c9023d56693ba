"""``check``: one verdict for a monitoring system (Nagios, Icinga, Zabbix, ...).

Follows the monitoring-plugin convention: a state (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN), one status line, and performance data after a ``|``.
The counts come from :func:`provbackup.actions.scan.scan` (the directory is
the truth about each entry); the age and exit code of the last run come from
the status file that ``process`` writes.

:func:`evaluate` is pure (counts, status document and time in, verdict out),
so the rules are tested without a directory; :func:`check` gathers the facts.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provbackup.errors import (
    EXIT_ENTRIES_FAILED,
    EXIT_OK,
    SIGNAL_EXIT_BASE,
    BaseDnMissingError,
    LdapUnavailableError,
)
from provbackup.state import Status

if TYPE_CHECKING:
    from provbackup.actions.common import Clock
    from provbackup.actions.snapshot_check import SnapshotFacts
    from provbackup.config import Config

log = logging.getLogger(__name__)

# check must answer before a monitoring agent gives up (NRPE: 10 s), also with
# LDAP down: one attempt per URI, each at most CHECK_TIMEOUT seconds, and the
# whole directory read cut off after CHECK_DEADLINE seconds.
CHECK_TIMEOUT = 2.0
CHECK_DEADLINE = 4.0

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
    critical_counts: list[str] = []
    warning_counts: list[str] = []
    run_problems: list[str] = []
    run_warnings: list[str] = []
    perfdata: dict[str, str] = {}

    if counts is not None:
        for name in COUNTED:
            perfdata[str(name)] = str(counts.get(name, 0))
        for name, found in ((Status.FAILED, critical_counts), (Status.INVALID, critical_counts),
                            (Status.OVERDUE, warning_counts),
                            (Status.INTERRUPTED, warning_counts)):  # fmt: skip
            if counts.get(name, 0):
                found.append(f"{counts[name]} {name}")

    run_text = ""
    if root_problem is not None:
        run_problems.append(root_problem)
    if status is None:
        run_problems.append(f"no status file {status_file} (has process ever run?)")
        perfdata["status_age"] = "U"
    else:
        age = status_age(status, now)
        perfdata["status_age"] = "U" if age is None else f"{int(age)}s"
        if age is None:
            run_problems.append(f"no run time in the status file {status_file}")
        elif age > max_status_age:
            run_problems.append(
                f"last run finished {_duration(age)} ago, more than {max_status_age}s "
                "(is the timer or cron job running? is a run hanging?)"
            )
        else:
            run_text = f"last run {_duration(age)} ago"
        exit_code = status.get("exit_code")
        stopped = status.get("stopped_by_signal")
        if stopped and isinstance(exit_code, int) and exit_code > SIGNAL_EXIT_BASE:
            # Stopped on purpose (systemctl stop, a shutdown, Ctrl-C): the entry in hand
            # was finished and the next run goes on, so a warning, not a failure.
            run_warnings.append(f"last run stopped by {stopped}")
        elif exit_code not in (EXIT_OK, EXIT_ENTRIES_FAILED):
            reason = status.get("error")
            run_problems.append(f"last run exited {exit_code}" + (f": {reason}" if reason else ""))

    if counts is None:
        message = f"cannot read the directory: {ldap_error or 'unknown error'}"
        if ldap_error_critical:
            return CheckResult(CheckState.CRITICAL, "; ".join([message, *run_problems]), perfdata)
        if run_problems:
            return CheckResult(CheckState.CRITICAL, "; ".join([*run_problems, message]), perfdata)
        return CheckResult(CheckState.UNKNOWN, message, perfdata)

    if critical_counts or run_problems:
        state = CheckState.CRITICAL
    elif warning_counts or run_warnings:
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
    parts = [", ".join(entry_text), *run_problems, *run_warnings] + ([run_text] if run_text else [])
    return CheckResult(state, "; ".join(parts), perfdata)


def check(config: Config, *, clock: Clock | None = None) -> CheckResult:
    """Gather the counts (via ``scan``) and the last run's status; return the verdict.

    Takes the configuration and the clock (returns the aware current time;
    default: the system clock in UTC). An
    unreachable directory is part of the verdict, not an exception. Raises
    other ProvbackupErrors (the caller reports them as UNKNOWN).
    """
    # Imported here: scan brings in ldap3, and the pure part must load without it.
    from provbackup.actions.common import utc_now
    from provbackup.actions.scan import scan
    from provbackup.status import read_status
    from provbackup.work import root_problem

    clock = clock or utc_now
    counts: dict[Status, int] | None
    ldap_error = None
    ldap_error_critical = False
    quick = dataclasses.replace(
        config,
        ldap=dataclasses.replace(
            config.ldap,
            attempts=1,
            retry_delay=0.0,
            timeout=min(config.ldap.timeout, CHECK_TIMEOUT),
        ),
    )
    try:
        with _deadline(CHECK_DEADLINE):
            counts = count_statuses(row.status for row in scan(quick, clock=clock))
    except LdapUnavailableError as error:
        log.debug("directory unavailable", exc_info=True)
        counts, ldap_error = None, str(error)
    except BaseDnMissingError as error:
        counts, ldap_error, ldap_error_critical = None, str(error), True
    status_file = config.run.status_file
    result = evaluate(
        counts,
        read_status(status_file),
        now=clock(),
        max_status_age=config.run.max_status_age,
        status_file=status_file,
        ldap_error=ldap_error,
        ldap_error_critical=ldap_error_critical,
        root_problem=root_problem(config.backup.root),
    )
    from provbackup.actions.login import check_login_setup, wants_login_check
    from provbackup.actions.snapshot_check import gather

    result = with_snapshots(result, gather(config, clock()))
    from provbackup.actions.notify_check import with_notify

    result = with_notify(result, config)
    if not wants_login_check(config):
        return result
    findings = check_login_setup(config)
    return add_findings(result, findings.critical, findings.warnings)


def with_snapshots(result: CheckResult, facts: SnapshotFacts) -> CheckResult:
    """Add the snapshot facts to a verdict: run problems are CRITICAL, stale accounts WARN.

    An UNKNOWN verdict (the directory unreadable) becomes CRITICAL only for
    a snapshot problem; the perfdata gain ``stale`` and ``snapshot_accounts``.
    """
    state = result.state
    if facts.problems and state != CheckState.CRITICAL:
        state = CheckState.CRITICAL
    elif (facts.stale or facts.warnings) and state == CheckState.OK:
        state = CheckState.WARNING
    perfdata = {
        **result.perfdata,
        "stale": str(len(facts.stale)),
        "snapshot_accounts": str(facts.checked),
    }
    summary = "; ".join([result.summary, *facts.texts()])
    return CheckResult(state, summary, perfdata)


class _DeadlineReached(Exception):
    pass


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise LdapUnavailableError when the block runs longer than ``seconds``.

    Uses SIGALRM, so only in the main thread; elsewhere (a library caller's
    thread) the per-URI timeouts alone bound the wait.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(number: int, frame: object) -> None:
        raise _DeadlineReached

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _DeadlineReached:
        raise LdapUnavailableError(
            f"no LDAP server answered within {seconds:g} s (check's limit)"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def add_findings(
    result: CheckResult, critical: Sequence[str], warnings: Sequence[str]
) -> CheckResult:
    """Return ``result`` with the login setup's findings added (``login:`` lines).

    Any critical finding makes the verdict CRITICAL; a warning turns OK
    into WARNING. The count goes into the perfdata as ``login_problems``.
    """
    state = result.state
    if critical:
        state = CheckState.CRITICAL
    elif warnings and state == CheckState.OK:
        state = CheckState.WARNING
    parts = [result.summary, *(f"login: {line}" for line in [*critical, *warnings])]
    perfdata = {**result.perfdata, "login_problems": str(len(critical))}
    return CheckResult(state, "; ".join(parts), perfdata)


def _duration(seconds: float) -> str:
    """``seconds`` as a short human duration: 45s, 12m, 3h, 2d."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"
