"""``process``: claim each due entry, do the work on the server, write the outcome back.

:func:`process` is the library entry point (like ldap2pg's ``synchronize``):
it takes the configuration and plain options and returns a
:class:`RunReport`; it prints nothing. One entry's failure never stops the
run; losing LDAP or the lock does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime

from provbackup import plan as planning
from provbackup import state, work
from provbackup.accountlock import AccountBusyError, account_lock, account_lock_path
from provbackup.actions.common import Clock, local_today, search_named, utc_now
from provbackup.config import Config
from provbackup.directory import Directory, connect, request_filter
from provbackup.entry import LdapEntry, Request, read_account, read_request
from provbackup.errors import (
    EXIT_ENTRIES_FAILED,
    EXIT_OK,
    RETURN_INTERNAL,
    SIGNAL_EXIT_BASE,
    ConfigError,
    EntryError,
    InvalidEntryError,
    LdapUnavailableError,
    ProvbackupError,
)
from provbackup.lock import run_lock
from provbackup.status import write_status

log = logging.getLogger(__name__)

# Outcomes of one entry in a run.
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
WOULD = "would"
# LDAP went away with the entry in hand: it may be left in progress without a
# return value (scan: interrupted); the message says where it stopped.
INTERRUPTED = "interrupted"


@dataclass
class EntryOutcome:
    """What happened to one entry: its action (add/modify/delete) and outcome."""

    dn: str
    uid: str | None
    action: str | None
    outcome: str
    message: str = ""
    return_value: int | None = None
    seconds: float = 0.0


@dataclass
class RunReport:
    """The result of one run: every entry's outcome, the exit code, the LDAP cost."""

    started: datetime
    dry_run: bool
    outcomes: list[EntryOutcome] = field(default_factory=list)
    finished: datetime | None = None
    exit_code: int = EXIT_OK
    error: str | None = None
    ldap: dict[str, int] = field(default_factory=dict)
    stopped_by_signal: str | None = None
    # The quarantine purge after the entries: trees removed, failed (with why), left.
    purge: dict[str, object] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        """How many entries ended with ``outcome``."""
        return sum(1 for item in self.outcomes if item.outcome == outcome)

    @property
    def failed(self) -> list[EntryOutcome]:
        """The entries that failed."""
        return [item for item in self.outcomes if item.outcome == FAILED]

    def summary(self) -> str:
        """One line: counts by outcome."""
        if self.dry_run:
            return f"dry run: {self.count(WOULD)} entries would be processed, nothing changed"
        line = (
            f"{self.count(DONE)} done, {self.count(FAILED)} failed, {self.count(SKIPPED)} skipped"
        )
        if self.count(INTERRUPTED):
            line += f", {self.count(INTERRUPTED)} interrupted"
        if self.stopped_by_signal:
            line += f"; stopped by {self.stopped_by_signal}"
        return line

    def to_status(self, hostname: str) -> dict:
        """The status-file document of this run."""
        return {
            "command": "process",
            "hostname": hostname,
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "finished": (self.finished or self.started).isoformat(),
            "exit_code": self.exit_code,
            "error": self.error,
            "stopped_by_signal": self.stopped_by_signal,
            "purge": self.purge,
            "counts": {name: self.count(name) for name in (DONE, FAILED, SKIPPED, INTERRUPTED)},
            "ldap": self.ldap,
            "entries": [asdict(item) for item in self.outcomes],
        }


@dataclass(frozen=True)
class _Due:
    entry: LdapEntry
    request: Request
    status: state.Status

    @property
    def verb(self) -> str:
        assert self.request.mode is not None
        return self.request.mode


class _StopRequested:
    """Turns SIGTERM/SIGINT into a flag checked between entries."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, number: int, frame: object) -> None:
        self.signal_name = signal.Signals(number).name
        log.warning("%s received: finishing the entry in hand, then stopping", self.signal_name)


@contextmanager
def _signals_stop(flag: _StopRequested) -> Iterator[None]:
    handled = (signal.SIGTERM, signal.SIGINT)
    try:
        previous = {number: signal.signal(number, flag) for number in handled}
    except ValueError:  # not the main thread (a library caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def process(
    config: Config,
    *,
    dry_run: bool = False,
    dn: str | None = None,
    uid: str | None = None,
    limit: int | None = None,
    wait: float = 0,
    allow_mass_delete: bool = False,
    clock: Clock = utc_now,
    on_outcome: Callable[[EntryOutcome], None] | None = None,
    on_selected: Callable[[int], None] | None = None,
) -> RunReport:
    """Process the due entries once.

    Takes the configuration and the command's options (``dn``/``uid``
    narrow the run to one entry, ``limit`` caps the entries worked on,
    ``wait`` is how long to wait for the run lock). ``clock`` returns the
    aware current time; ``on_selected`` is called with the number of due
    entries about to be worked on, ``on_outcome`` as each entry ends.
    Returns the :class:`RunReport` (its ``exit_code`` is 1 when an entry
    failed). Raises LockHeldError (75) when another run holds the lock,
    LdapUnavailableError (69) when LDAP cannot be reached, ConfigError.
    A run that loses LDAP midway writes its status file before raising.
    """
    report = RunReport(started=clock(), dry_run=dry_run)
    run = _Run(
        config=config,
        report=report,
        stop=_StopRequested(),
        dry_run=dry_run,
        dn=dn,
        uid=uid,
        limit=limit,
        allow_mass_delete=allow_mass_delete,
        clock=clock,
        on_outcome=on_outcome,
        on_selected=on_selected,
    )
    lock = nullcontext() if dry_run else run_lock(config.run.lock_file, wait)
    with lock, _signals_stop(run.stop):
        try:
            _run(run)
        except ProvbackupError as error:
            report.exit_code = error.exit_code
            report.error = str(error)
            raise
        finally:
            report.finished = clock()
            if not dry_run:
                hostname = socket.gethostname()
                write_status(config.run.status_file, report.to_status(hostname))
                if report.failed:
                    from provbackup.notify import send_failure_mail

                    send_failure_mail(config.mail, report, hostname)
    return report


@dataclass
class _Run:
    """One run's settings and its report, handed through the steps of :func:`_run`."""

    config: Config
    report: RunReport
    stop: _StopRequested
    dry_run: bool
    dn: str | None
    uid: str | None
    limit: int | None
    allow_mass_delete: bool
    clock: Clock
    on_outcome: Callable[[EntryOutcome], None] | None
    on_selected: Callable[[int], None] | None

    def record(self, outcome: EntryOutcome) -> None:
        """Add ``outcome`` to the report and tell the caller."""
        self.report.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _run(run: _Run) -> None:
    config, report, stop, clock, record = run.config, run.report, run.stop, run.clock, run.record
    dry_run, limit, on_selected = run.dry_run, run.limit, run.on_selected
    with connect(config.ldap) as directory, ExitStack() as stack:
        try:
            due = _select(directory, config, run.dn, run.uid, clock, record)
            due = _guard_mass_delete(due, config, run.allow_mass_delete, record)
            if limit is not None and len(due) > limit:
                log.info("--limit %d: %d due entries left for a later run", limit, len(due) - limit)
                due = due[:limit]
            if on_selected is not None:
                on_selected(len(due))
            worker = _Worker(config, directory, dry_run, clock)
            stack.callback(worker.close)
            if not dry_run:
                worker.check_root()
            for item in due:
                if stop.signal_name:
                    report.stopped_by_signal = stop.signal_name
                    log.warning(
                        "stopped by %s: %d due entries left untouched for the next run",
                        stop.signal_name,
                        len(due) - len(report.outcomes),
                    )
                    break
                try:
                    record(worker.handle(item))
                except LdapUnavailableError as error:
                    # Say in the report (and so the status file) where the entry in hand
                    # was left, then end the run: nothing more can be claimed or recorded.
                    record(worker.interrupted(item, error))
                    raise
            if not dry_run and not stop.signal_name:
                report.purge = worker.purge_quarantine()
        finally:
            report.ldap = {
                "searches": directory.searches,
                "entries_returned": directory.entries_returned,
                "modifies": directory.modifies,
            }
    if stop.signal_name and not report.stopped_by_signal:
        # The signal came during the last entry (or the purge): still a stopped run.
        report.stopped_by_signal = stop.signal_name
    if report.stopped_by_signal:
        # 128 + the signal's number, as a shell reports a command the signal ended:
        # 143 for SIGTERM, 130 for SIGINT. Not 1: no entry failed because of it.
        report.exit_code = SIGNAL_EXIT_BASE + signal.Signals[report.stopped_by_signal].value
    elif report.failed:
        report.exit_code = EXIT_ENTRIES_FAILED


def _select(
    directory: Directory,
    config: Config,
    dn: str | None,
    uid: str | None,
    clock: Clock,
    record: Callable[[EntryOutcome], None],
) -> list[_Due]:
    """Read the candidate entries and keep the due ones, reporting invalid ones."""
    today = local_today(clock)
    due: list[_Due] = []
    entries = search_named(
        directory, config, dn=dn, uid=uid, search_filter=request_filter(config.ldap.filter)
    )
    for entry in entries:
        request = read_request(entry, config.ldap.date_attribute)
        status = state.classify(request, today)
        if status is state.Status.INVALID:
            message = request.problem or (
                f"sstProvisioningMode: {request.mode!r}: unknown mode "
                f"(expected one of {', '.join(state.REQUEST_MODES)})"
            )
            log.error("%s: not processed: %s", entry.dn, message)
            record(EntryOutcome(entry.dn, request.uid, None, FAILED, message))
        elif state.is_due(status):
            due.append(_Due(entry, request, status))
        else:
            log.debug("%s: %s, left alone", entry.dn, status)
    return due


def _guard_mass_delete(
    due: list[_Due],
    config: Config,
    allow_mass_delete: bool,
    record: Callable[[EntryOutcome], None],
) -> list[_Due]:
    deletes = [item for item in due if item.verb == "delete"]
    if allow_mass_delete or len(deletes) <= config.delete.max_per_run:
        return due
    message = (
        f"{len(deletes)} deletes are due, more than [delete] max_per_run "
        f"{config.delete.max_per_run}: none of them processed; "
        "check the directory, then run with --allow-mass-delete"
    )
    log.error("%s", message)
    for item in deletes:
        record(EntryOutcome(item.entry.dn, item.request.uid, "delete", FAILED, message))
    return [item for item in due if item.verb != "delete"]


class _Worker:
    """Does claim → plan → work → write back for one entry at a time."""

    def __init__(self, config: Config, directory: Directory, dry_run: bool, clock: Clock) -> None:
        self.config = config
        self.directory = directory
        self.dry_run = dry_run
        self.clock = clock
        self.session = work.WorkSession(config)
        # Where the entry in hand is, for interrupted(): claim, finish or record failure.
        self.phase = "claim"
        self.failure = ""

    def handle(self, item: _Due) -> EntryOutcome:
        started = time.monotonic()
        try:
            with self._account_lock(item):
                outcome = self._handle(item)
        except AccountBusyError as error:
            # A snapshot is running on the account: the entry is not claimed, so it
            # stays requested and the next run does it. Not a failure.
            log.info("%s: %s; left requested for the next run", item.entry.dn, error)
            outcome = EntryOutcome(
                item.entry.dn, item.request.uid, item.verb, SKIPPED,
                f"{error}; left requested for the next run",
            )  # fmt: skip
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    def _account_lock(self, item: _Due) -> AbstractContextManager[object]:
        """The account's lock (not waited for), taken before the claim; none for a dry run.

        An entry whose uid cannot name a lock file gets none: the work refuses it.
        """
        uid = item.request.uid
        if self.dry_run or uid is None:
            return nullcontext()
        try:
            account_lock_path(self.config, uid)
        except ValueError:
            return nullcontext()
        return account_lock(self.config, uid, 0)

    def _handle(self, item: _Due) -> EntryOutcome:
        dn, verb, uid = item.entry.dn, item.verb, item.request.uid
        if self.dry_run:
            return self._dry_run(item)
        self.phase = "claim"
        claim = self.directory.modify(dn, state.claim_changes(verb))
        if not claim.ok:
            if claim.conflict:
                log.info("%s: claimed or changed by someone else, skipped", dn)
                return EntryOutcome(dn, uid, verb, SKIPPED, "claimed or changed by someone else")
            message = f"claim refused by the LDAP server: {claim.message}"
            # The server refuses to modify an entry that breaks its schema (two values
            # of a SINGLE-VALUE attribute, say): name the bad attribute and value too.
            problem = self._problem(item)
            if problem:
                message += f"; the entry is invalid: {problem}"
            log.error("%s: %s", dn, message)
            return EntryOutcome(dn, uid, verb, FAILED, message)
        log.info("%s: %s → %s", dn, verb, state.IN_PROGRESS[verb])
        try:
            steps = self._work(item)
        except EntryError as error:
            return self._fail(item, str(error), error.return_value)
        except ProvbackupError:
            raise
        except Exception as error:  # a bug or an unforeseen OS error: isolate it to this entry
            log.debug("%s: internal error", dn, exc_info=True)
            return self._fail(
                item, f"internal error: {type(error).__name__}: {error}", RETURN_INTERNAL
            )
        moment = self.clock()
        assert item.request.date_attribute is not None
        self.phase = "finish"
        finish = self.directory.modify(
            dn, state.finish_changes(verb, item.request.date_attribute, moment)
        )
        if not finish.ok:
            message = f"work done, but writing {state.DONE[verb]!r} back failed: {finish.message}"
            log.error("%s: %s", dn, message)
            return EntryOutcome(dn, uid, verb, FAILED, message)
        log.info(
            "%s: %s → %s at %s",
            dn,
            state.IN_PROGRESS[verb],
            state.DONE[verb],
            state.timestamp(moment),
        )
        return EntryOutcome(dn, uid, verb, DONE, "; ".join(steps))

    def _work(self, item: _Due) -> list[str]:
        account = read_account(
            item.entry,
            min_uid=self.config.backup.min_uid,
            max_uid=self.config.backup.max_uid,
            default_retain=self.config.rsnapshot.retain,
            for_delete=item.verb == "delete",
        )
        plan = planning.build(account, item.verb, self.config)
        return self.session.apply(plan)

    def _problem(self, item: _Due) -> str | None:
        """Return what makes the entry invalid (attribute and value), or None."""
        try:
            read_account(
                item.entry,
                min_uid=self.config.backup.min_uid,
                max_uid=self.config.backup.max_uid,
                default_retain=self.config.rsnapshot.retain,
                for_delete=item.verb == "delete",
            )
        except InvalidEntryError as error:
            return str(error)
        return None

    def interrupted(self, item: _Due, error: LdapUnavailableError) -> EntryOutcome:
        """The outcome of the entry in hand when LDAP went away; logs it.

        Takes the entry and the error. Which state the entry is left in
        depends on how far it got, and LDAP cannot be asked: the message
        says what scan will show and what to do.
        """
        verb = item.verb
        in_progress = state.IN_PROGRESS[verb]
        # A request sent before the connection broke (or timed out) may still have
        # been applied, so the messages say what scan shows in either case.
        if self.phase == "claim":
            where = (
                "LDAP was lost while claiming it, before any work on the server: if the claim "
                f"got through, scan shows it interrupted ({in_progress!r}): reset it; else it "
                "is still due and the next run does it"
            )
        elif self.phase == "finish":
            where = (
                f"the work on the server is done, but LDAP was lost while writing "
                f"{state.DONE[verb]!r}: unless that got through, scan shows it interrupted "
                f"({in_progress!r}): reset it (redoing the work is harmless)"
            )
        else:
            where = (
                f"the work failed ({self.failure}) and LDAP was lost while recording the "
                f"failure: unless that got through (scan: failed), scan shows it interrupted "
                f"({in_progress!r}): fix the cause, then reset it"
            )
        message = f"{where} ({error})"
        log.error("%s: %s", item.entry.dn, message)
        return EntryOutcome(item.entry.dn, item.request.uid, verb, INTERRUPTED, message)

    def _dry_run(self, item: _Due) -> EntryOutcome:
        dn, verb, uid = item.entry.dn, item.verb, item.request.uid
        try:
            account = read_account(
                item.entry,
                min_uid=self.config.backup.min_uid,
                max_uid=self.config.backup.max_uid,
                default_retain=self.config.rsnapshot.retain,
            )
            plan = planning.build(account, verb, self.config)
        except EntryError as error:
            return EntryOutcome(dn, uid, verb, FAILED, f"would fail: {error}", error.return_value)
        return EntryOutcome(dn, uid, verb, WOULD, "; ".join(planning.describe(plan)))

    def _fail(self, item: _Due, message: str, return_value: int) -> EntryOutcome:
        dn, verb = item.entry.dn, item.verb
        log.error("%s: %s failed (return value %d): %s", dn, verb, return_value, message)
        self.phase, self.failure = "record failure", message
        written = self.directory.modify(dn, state.failure_changes(verb, return_value))
        if not written.ok:
            log.error("%s: recording the failure in LDAP failed too: %s", dn, written.message)
        return EntryOutcome(dn, item.request.uid, verb, FAILED, message, return_value)

    def check_root(self) -> None:
        """Raise ConfigError (78) when ``[backup] root`` cannot be opened, before any claim.

        An unmounted disk would otherwise fail every due entry, and each would
        then wait for an operator's reset once the disk is back.
        """
        try:
            self.session.check_root()
        except EntryError as error:
            raise ConfigError(
                f"{self.config.source}: [backup] root: {error}; no entry was claimed"
            ) from None

    def purge_quarantine(self) -> dict[str, object]:
        """Purge the quarantine; return what it did for the status file."""
        try:
            purge = self.session.purge_quarantine(self.clock())
        except EntryError as error:
            # Housekeeping after the entries: their outcomes stand. Said at error
            # level every run until fixed (a .deleted that is not a directory, say).
            log.error("cannot purge the quarantine: %s", error)
            return {"error": str(error)}
        return {
            "removed": len(purge.removed),
            "failed": purge.failed,
            "unfinished": [str(path) for path in purge.unfinished],
        }

    def close(self) -> None:
        self.session.close()
