"""``check``: one verdict for a monitoring system (Nagios, Icinga, Zabbix, ...).

:func:`check` gathers the facts: the counts come from
:func:`provbackup.actions.scan.scan` (the directory is the truth about each
entry); the age and exit code of the last run come from the status file
that ``process`` writes; the snapshot runs
(:mod:`provbackup.actions.snapshot_check`) and the login setup
(:mod:`provbackup.actions.login`) add their findings.
The rules that turn the facts into a verdict are pure, in
:mod:`provbackup.actions.verdict` (``evaluate``), so they are tested
without a directory.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from provbackup.actions.verdict import CheckResult, CheckState, count_statuses, evaluate
from provbackup.errors import BaseDnMissingError, LdapUnavailableError

if TYPE_CHECKING:
    from provbackup.actions.common import Clock
    from provbackup.actions.snapshot_check import SnapshotFacts
    from provbackup.config import Config
    from provbackup.state import Status

log = logging.getLogger(__name__)

# check must answer before a monitoring agent gives up (NRPE: 10 s), also with
# LDAP down: one attempt per URI, each at most CHECK_TIMEOUT seconds, and the
# whole directory read cut off after CHECK_DEADLINE seconds.
CHECK_TIMEOUT = 2.0
CHECK_DEADLINE = 4.0


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
    from provbackup.actions.replication import replication_findings, with_replication
    from provbackup.actions.snapshot_check import gather
    from provbackup.watch.health import read_health, with_follower

    result = with_snapshots(result, gather(config, clock()))
    result = with_follower(result, read_health(status_file), clock())
    if counts is not None:  # many servers, one directory: the claim rule, this server's filter
        result = with_replication(result, replication_findings(quick))
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
