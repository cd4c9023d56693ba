"""``process``: select the due entries, hand each to the entry worker, purge the quarantine.

:func:`process` is the library entry point (like ldap2pg's ``synchronize``):
it fills the :class:`~provbackup.actions.report.RunReport` it is given and
returns; it prints nothing and takes no lock. The lock, the signal
handlers, the status file and the mail belong to the command layer (the
run lifecycle, :mod:`provbackup.cli.lifecycle`). One entry's failure
never stops the run; losing LDAP does.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from provbackup import state, work
from provbackup.actions.common import Clock, find_entries, local_today, search_named, utc_now
from provbackup.actions.conflicts import refuse_shared_ids
from provbackup.actions.entrywork import Due, EntryInterrupted, EntryWorker
from provbackup.actions.holding import keep_held
from provbackup.actions.report import RunReport
from provbackup.config import Config
from provbackup.directory import LdapDirectory, claim_directory, connect
from provbackup.engines import select_engine
from provbackup.entry import Rules, read_account, read_request
from provbackup.errors import (
    EXIT_ENTRIES_FAILED,
    SIGNAL_EXIT_BASE,
    ConfigError,
    EntryError,
)
from provbackup.filters import request_filter
from provbackup.model import Outcome, Verb
from provbackup.outcomes import EntryOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessOptions:
    """The options of one run: ``dn``/``uid`` narrow it to one entry, ``limit`` caps it."""

    dry_run: bool = False
    dn: str | None = None
    uid: str | None = None
    limit: int | None = None
    allow_mass_delete: bool = False


@dataclass(frozen=True)
class _Selection:
    """What choosing a run's due entries reads and writes, bundled once per run.

    ``directory`` is searched, ``rules`` is the gate's, ``clock`` says what
    day it is, ``worker`` records invalid requests and ``record`` takes
    the outcome of every entry held back.
    """

    directory: LdapDirectory
    config: Config
    options: ProcessOptions
    rules: Rules
    clock: Clock
    worker: EntryWorker
    record: Callable[[EntryOutcome], None]


def process(
    config: Config,
    options: ProcessOptions,
    report: RunReport,
    *,
    clock: Clock = utc_now,
    stop_requested: Callable[[], str | None] = lambda: None,
    on_outcome: Callable[[EntryOutcome], None] | None = None,
    on_selected: Callable[[int], None] | None = None,
) -> RunReport:
    """Process the due entries once, filling ``report``.

    ``clock`` returns the aware current time; ``stop_requested`` returns
    the name of a signal that asked the run to stop (checked between
    entries); ``on_selected`` is called with the number of due entries
    about to be worked on, ``on_outcome`` as each entry ends. Returns
    ``report`` (its ``exit_code`` is 1 when an entry failed, 128 + the
    signal when stopped). Raises ConfigError (78) when the backup root
    cannot be opened (before any entry is touched), LdapUnavailableError
    (69) when LDAP cannot be reached or goes away (the entry in hand is
    in the report).
    """

    def record(outcome: EntryOutcome) -> None:
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    rules = Rules.from_config(config)
    with (
        connect(config.ldap) as directory,
        claim_directory(config.ldap, directory) as writer,
        EntryWorker(
            config, directory, dry_run=options.dry_run, clock=clock, writer=writer
        ) as worker,
    ):
        try:
            check_root(config, dry_run=options.dry_run)
            check_quota_command(config, dry_run=options.dry_run)
            due = _due(_Selection(directory, config, options, rules, clock, worker, record))
            if on_selected is not None:
                on_selected(len(due))
            _work_on(due, worker, report, record, stop_requested)
            if not options.dry_run and not stop_requested():
                report.purge = worker.purge_quarantine()
        finally:
            report.ldap = {
                "searches": directory.searches,
                "entries_returned": directory.entries_returned,
                "modifies": directory.modifies
                + (writer.modifies if writer is not directory else 0),
            }
    _set_exit_code(report, stop_requested())
    return report


def _due(run: _Selection) -> list[Due]:
    """The entries this run works on: selected, held by this server, mass deletes held
    back, ``--limit`` applied.

    Takes the run's selection; returns the entries in order; raises
    LdapUnavailableError (69) when LDAP goes away.
    """
    options = run.options
    due = _select(run)
    due = keep_held(due, run.config, run.record)  # many servers: only what this one holds
    due = _guard_mass_delete(due, run.config, options.allow_mass_delete, run.record)
    if options.limit is not None and len(due) > options.limit:
        log.info(
            "--limit %d: %d due entries left for a later run",
            options.limit, len(due) - options.limit,
        )  # fmt: skip
        due = due[: options.limit]
    return due


def _work_on(
    due: list[Due],
    worker: EntryWorker,
    report: RunReport,
    record: Callable[[EntryOutcome], None],
    stop_requested: Callable[[], str | None],
) -> None:
    """Hand each due entry to the worker in turn; stop before the next one on a signal.

    Raises the EntryInterrupted of an entry LDAP was lost under, once its
    outcome is recorded: nothing more can be claimed or recorded.
    """
    for index, item in enumerate(due):
        stopped = stop_requested()
        if stopped:
            report.stopped_by_signal = stopped
            log.warning(
                "stopped by %s: %d due entries left untouched for the next run",
                stopped, len(due) - index,
            )  # fmt: skip
            return
        try:
            record(worker.handle(item))
        except EntryInterrupted as interrupted:
            # Say in the report (and so the status file) where the entry in hand
            # was left, then end the run: nothing more can be claimed or recorded.
            record(interrupted.outcome)
            raise


def _set_exit_code(report: RunReport, signal_name: str | None) -> None:
    """Set the exit code of a run that got to its end: stopped (``signal_name``), failed, or 0."""
    stopped = report.stopped_by_signal or signal_name
    if stopped:
        # The signal may have come during the last entry (or the purge): still a stopped
        # run. 128 + the signal's number, as a shell reports a command the signal ended:
        # 143 for SIGTERM, 130 for SIGINT. Not 1: no entry failed because of it.
        report.stopped_by_signal = stopped
        report.exit_code = SIGNAL_EXIT_BASE + signal.Signals[stopped].value
    elif report.failed:
        report.exit_code = EXIT_ENTRIES_FAILED


def check_root(config: Config, *, dry_run: bool = False) -> None:
    """Raise ConfigError (78) when ``[backup] root`` cannot be opened, before any claim.

    An unmounted disk would otherwise fail every due entry, and each would
    then wait for an operator's reset once the disk is back. A dry run
    says the same, so it never promises work the real run would refuse.
    """
    problem = work.root_problem(config.backup.root)
    if problem is not None:
        done = "nothing would be done" if dry_run else "no entry was claimed"
        raise ConfigError(f"{config.source}: [backup] root: {problem}; {done}")
    try:
        select_engine(config).check_root(config.backup.root)
    except ConfigError as error:
        done = "nothing would be done" if dry_run else "no entry was claimed"
        raise ConfigError(f"{config.source}: {error}; {done}") from None


def check_quota_command(config: Config, *, dry_run: bool = False) -> None:
    """Raise ConfigError (78) when ``[quota] command``'s program is not installed.

    Found before any claim: otherwise every add, modify and delete would
    fail with 40 one by one, each then waiting for a reset.
    """
    command = config.quota.command
    if not command or "{" in command[0]:
        return
    program = command[0]
    if "/" in program:
        found = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        found = shutil.which(program) is not None
    if not found:
        done = "nothing would be done" if dry_run else "no entry was claimed"
        where = "" if "/" in program else f" in PATH ({os.environ.get('PATH', '')})"
        raise ConfigError(
            f"{config.source}: [quota] command: {program!r} is not an installed program{where}; "
            f"install it (setquota is in Debian's quota package) or fix the path; {done}"
        )


def _select(run: _Selection) -> list[Due]:
    """Read the candidate entries through the gate; keep the due ones, report invalid ones.

    Takes the run's selection; returns the due entries (each with its
    Account, or the gate's problem); raises NotFoundError (1) when
    ``--dn``/``--uid`` names no provisioned entry, LdapUnavailableError
    (69) when LDAP goes away.
    """
    directory, config, options = run.directory, run.config, run.options
    today = local_today(run.clock)
    due: list[Due] = []
    entries = search_named(
        directory,
        config,
        dn=options.dn,
        uid=options.uid,
        search_filter=request_filter(config.ldap.filter),
    )
    invalid = []
    found = 0
    for entry in entries:
        found += 1
        request = read_request(entry, config.ldap.date_attribute)
        status = state.classify(request, today)
        if status is state.Status.INVALID:
            invalid.append((entry, request))
        elif state.is_due(status):
            assert request.verb is not None
            try:
                account = read_account(entry, request.verb, run.rules)
            except EntryError as problem:
                due.append(Due(entry, request, request.verb, None, problem))
            else:
                due.append(Due(entry, request, request.verb, account))
        else:
            log.debug("%s: %s, left alone", entry.dn, status)
    if not found and (options.dn is not None or options.uid is not None):
        _say_why_nothing_is_due(directory, config, options, today)
    # Recorded after the search: a modify in the middle of a paged search would
    # have its result taken for the search's.
    for entry, request in invalid:
        outcome = run.worker.report_invalid(entry, request)
        if outcome is not None:
            run.record(outcome)
    # One search for the whole batch: a uid or gidNumber another entry holds fails (11).
    return refuse_shared_ids(directory, due) if due else due


def _say_why_nothing_is_due(
    directory: LdapDirectory, config: Config, options: ProcessOptions, today: date
) -> None:
    """``--dn``/``--uid`` selected no request: say why in one line.

    Raises NotFoundError (1) when no provisioned entry has that DN or uid
    (a typo must not look like "nothing to do"); otherwise logs the
    entry's status (done, scheduled, failed, ...).
    """
    for entry in find_entries(directory, config, dn=options.dn, uid=options.uid):
        request = read_request(entry, config.ldap.date_attribute)
        log.info(
            "%s: %s (sstProvisioningMode %r), nothing to do",
            entry.dn, state.classify(request, today), request.mode,
        )  # fmt: skip


def _guard_mass_delete(
    due: list[Due],
    config: Config,
    allow_mass_delete: bool,
    record: Callable[[EntryOutcome], None],
) -> list[Due]:
    """Hold back every due delete when there are more than ``[delete] max_per_run``.

    Takes the due entries, the configuration, ``--allow-mass-delete`` and
    the outcome recorder; returns the entries still to work on (each held
    delete recorded as failed, with one error line naming the count and
    the limit); raises nothing.
    """
    deletes = [item for item in due if item.verb is Verb.DELETE]
    if allow_mass_delete or len(deletes) <= config.delete.max_per_run:
        return due
    message = (
        f"{len(deletes)} deletes are due, more than [delete] max_per_run "
        f"{config.delete.max_per_run}: none of them processed; "
        "check the directory, then run with --allow-mass-delete"
    )
    log.error("%s", message)
    for item in deletes:
        record(EntryOutcome(item.dn, item.request.uid, Verb.DELETE, Outcome.FAILED, message))
    return [item for item in due if item.verb is not Verb.DELETE]
