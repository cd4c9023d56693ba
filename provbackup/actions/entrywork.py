"""One entry's turn in a ``process`` run: claim → work → write back.

:class:`EntryWorker` takes an entry the gate has read (a :class:`Due`) and
returns its :class:`~provbackup.outcomes.EntryOutcome`. Where the
entry was when LDAP went away is carried by the exception raised in that
phase (:class:`LostWhileClaiming`, :class:`LostWhileFinishing`,
:class:`LostWhileRecording`), which :meth:`EntryWorker.handle` turns into
one :class:`EntryInterrupted` holding the outcome. A dry run goes through
the same gate verdict and the same plan, and stops before the claim.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from provbackup import locality, state, work
from provbackup.accountlock import AccountBusyError, account_lock, account_lock_path
from provbackup.actions.common import Clock
from provbackup.claimcheck import ClaimVerifier
from provbackup.closing import Closing
from provbackup.config import Config
from provbackup.directory import LdapDirectory, ModifyResult
from provbackup.entry import LdapEntry
from provbackup.errors import (
    RETURN_FILESYSTEM,
    RETURN_INTERNAL,
    RETURN_INVALID_ENTRY,
    EntryError,
    LdapUnavailableError,
    ProvbackupError,
)
from provbackup.model import RETURN_VALUE, Account, Changes, Outcome, Request, Verb, timestamp
from provbackup.outcomes import EntryOutcome
from provbackup.plan import build_plan, describe

log = logging.getLogger(__name__)

OBJECT_CLASS_VIOLATION = 65


@dataclass(frozen=True)
class Due:
    """A due entry as the gate read it: the account, or why it cannot be worked on."""

    entry: LdapEntry
    request: Request
    verb: Verb
    account: Account | None
    problem: EntryError | None = None

    @property
    def dn(self) -> str:
        """The entry's DN."""
        return self.entry.dn


class EntryInterrupted(LdapUnavailableError):
    """LDAP went away with an entry in hand (exit 69); ``outcome`` says where it was left."""

    def __init__(self, cause: LdapUnavailableError, outcome: EntryOutcome) -> None:
        super().__init__(str(cause))
        self.outcome = outcome


class _Lost(Exception):
    """LDAP went away during one phase of an entry; subclasses name the phase."""

    def __init__(self, cause: LdapUnavailableError) -> None:
        super().__init__(str(cause))
        self.cause = cause

    def where(self, verb: Verb) -> str:
        """What scan will show and what to do (a request sent may still have got through)."""
        raise NotImplementedError


class LostWhileClaiming(_Lost):
    """Lost while claiming: no work was done."""

    def where(self, verb: Verb) -> str:
        return (
            "LDAP was lost while claiming it, before any work on the server: if the claim "
            f"got through, scan shows it interrupted ({verb.in_progress!r}): reset it; else it "
            "is still due and the next run does it"
        )


class LostWhileFinishing(_Lost):
    """Lost while writing the done state: the work is done."""

    def where(self, verb: Verb) -> str:
        return (
            f"the work on the server is done, but LDAP was lost while writing "
            f"{verb.done!r}: unless that got through, scan shows it interrupted "
            f"({verb.in_progress!r}): reset it (redoing the work is harmless)"
        )


class LostWhileRecording(_Lost):
    """Lost while recording a failure; ``failure`` is the failure's message."""

    def __init__(self, cause: LdapUnavailableError, failure: str) -> None:
        super().__init__(cause)
        self.failure = failure

    def where(self, verb: Verb) -> str:
        return (
            f"the work failed ({self.failure}) and LDAP was lost while recording the "
            f"failure: unless that got through (scan: failed), scan shows it interrupted "
            f"({verb.in_progress!r}): fix the cause, then reset it"
        )


class EntryWorker(Closing):
    """Claims, works on and writes back one due entry at a time, for one run.

    Takes the configuration, the bound directory, ``dry_run``, the run's
    clock and the ``writer`` every claim and write-back goes to (``[ldap]
    claim_uri``; default ``directory``). Use as a context manager (it owns
    the run's work session).
    """

    def __init__(
        self,
        config: Config,
        directory: LdapDirectory,
        *,
        dry_run: bool,
        clock: Clock,
        writer: LdapDirectory | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.writer = writer or directory
        # Claims that may fail over (claim_uri lists several): read back before the work.
        ldap = config.ldap
        verify = len(ldap.claim_uris) > 1 and ldap.claim_verify_timeout > 0 and not dry_run
        self.verifier = ClaimVerifier(config, self.writer.uri) if verify else None
        self.dry_run = dry_run
        self.clock = clock
        self.session = work.WorkSession(config)

    def close(self) -> None:
        """Close the run's work session and the claim verifier's connections."""
        self.session.close()
        if self.verifier is not None:
            self.verifier.close()

    def handle(self, item: Due) -> EntryOutcome:
        """Do one entry; returns its outcome.

        Raises EntryInterrupted when LDAP goes away with the entry in hand,
        other ProvbackupErrors that end the run. Any other exception in the
        work is a bug isolated to this entry (return value 99).
        """
        started = time.monotonic()
        try:
            if self.dry_run:
                outcome = self._dry_run(item)
            else:
                with self._account_lock(item):
                    outcome = self._handle(item)
        except AccountBusyError as error:
            # A snapshot is running on the account: the entry is not claimed, so it
            # stays requested and the next run does it. Not a failure.
            log.info("%s: %s; left requested for the next run", item.dn, error)
            outcome = EntryOutcome(
                item.dn, item.request.uid, item.verb, Outcome.SKIPPED,
                f"{error}; left requested for the next run",
            )  # fmt: skip
        except _Lost as lost:
            message = f"{lost.where(item.verb)} ({lost.cause})"
            log.error("%s: %s", item.dn, message)
            interrupted = EntryOutcome(
                item.dn, item.request.uid, item.verb, Outcome.INTERRUPTED, message
            )
            raise EntryInterrupted(lost.cause, interrupted) from lost.cause
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    def _account_lock(self, item: Due) -> AbstractContextManager[object]:
        """The account's lock (not waited for), taken before the claim.

        An entry whose uid cannot name a lock file gets none: the gate refused it.
        """
        uid = item.request.uid
        if uid is None:
            return nullcontext()
        try:
            account_lock_path(self.config, uid)
        except ValueError:
            return nullcontext()
        return account_lock(self.config, uid, 0)

    def report_invalid(self, entry: LdapEntry, request: Request) -> EntryOutcome | None:
        """Report an invalid request once, recording return value 10 in the entry.

        Returns the failed outcome, or None when an earlier run already
        recorded it (scan and check still show it). A dry run records
        nothing. Raises LdapUnavailableError when LDAP goes away.
        """
        message = request.problem or f"{entry.dn}: not a request"
        if state.is_recorded_invalid(request):
            log.debug("%s: invalid, already reported: %s", entry.dn, message)
            return None
        log.error("%s: not processed: %s", entry.dn, message)
        if f"{RETURN_VALUE}:" in message:
            # Recording 10 over it would repair the entry behind the web shop's back.
            message += f" (not recorded: {RETURN_VALUE} itself is malformed; reported every run)"
        elif not self.dry_run:
            written = self.writer.modify(entry.dn, state.invalid_changes(request))
            if written.ok:
                message += f" (recorded as return value {RETURN_INVALID_ENTRY}; reported once)"
            else:
                message += f" (could not record it, so every run reports it: {written.message})"
        return EntryOutcome(
            entry.dn, request.uid, request.verb, Outcome.FAILED, message, RETURN_INVALID_ENTRY
        )

    def _handle(self, item: Due) -> EntryOutcome:
        dn, verb, uid = item.dn, item.verb, item.request.uid
        # An add (or a modify of an account from before) also records this server in the entry.
        recorded = locality.claim_extra(verb, item.entry, self.config)
        changes = {**state.claim_changes(item.request), **recorded}
        claim = self._modify(item, changes, LostWhileClaiming)
        if not claim.ok:
            if claim.conflict:
                log.info("%s: claimed or changed by someone else, skipped", dn)
                return EntryOutcome(
                    dn, uid, verb, Outcome.SKIPPED, "claimed or changed by someone else"
                )
            message = f"claim refused by the LDAP server: {claim.message}"
            # The server refuses to modify an entry that breaks its schema (two values
            # of a SINGLE-VALUE attribute, say): name the bad attribute and value too.
            if item.problem is not None:
                message += f"; the entry is invalid: {item.problem}"
            if recorded and claim.code == OBJECT_CLASS_VIOLATION:
                message += (
                    f"; the entry's object classes do not allow {', '.join(recorded)} "
                    "([ldap] server_attribute): add the account class or set it empty"
                )
            log.error("%s: %s", dn, message)
            return EntryOutcome(dn, uid, verb, Outcome.FAILED, message)
        log.info("%s: %s → %s", dn, item.request.mode, verb.in_progress)
        unconfirmed = self.verifier.confirm(dn, verb) if self.verifier is not None else None
        if unconfirmed is not None:
            # Left in progress without a return value (scan: interrupted): never worked twice.
            log.error("%s: %s", dn, unconfirmed)
            return EntryOutcome(dn, uid, verb, Outcome.FAILED, unconfirmed)
        if item.account is None:
            assert item.problem is not None
            return self._fail(item, str(item.problem), item.problem.return_value)
        try:
            steps = self.session.apply(build_plan(item.account, verb, self.config), self.clock())
        except EntryError as error:
            return self._fail(item, str(error), error.return_value)
        except ProvbackupError:
            raise
        except Exception as error:  # a bug or an unforeseen OS error: isolate it to this entry
            log.debug("%s: internal error", dn, exc_info=True)
            return self._fail(
                item, f"internal error: {type(error).__name__}: {error}", RETURN_INTERNAL
            )
        return self._finish(item, steps, self.clock())

    def _finish(self, item: Due, steps: list[str], moment: datetime) -> EntryOutcome:
        dn, verb = item.dn, item.verb
        assert item.request.date_attribute is not None
        changes = state.finish_changes(verb, item.request.date_attribute, moment)
        if verb is Verb.DELETE:  # the account is gone: no server holds it any more
            changes.update(locality.release_changes(item.entry, self.config))
        finish = self._modify(item, changes, LostWhileFinishing)
        if not finish.ok:
            message = f"work done, but writing {verb.done!r} back failed: {finish.message}"
            log.error("%s: %s", dn, message)
            return EntryOutcome(dn, item.request.uid, verb, Outcome.FAILED, message)
        log.info("%s: %s → %s at %s", dn, verb.in_progress, verb.done, timestamp(moment))
        return EntryOutcome(dn, item.request.uid, verb, Outcome.DONE, "; ".join(steps))

    def _fail(self, item: Due, message: str, return_value: int) -> EntryOutcome:
        dn, verb = item.dn, item.verb
        log.error("%s: %s failed (return value %d): %s", dn, verb, return_value, message)
        try:
            written = self.writer.modify(dn, state.failure_changes(verb, return_value))
        except LdapUnavailableError as error:
            raise LostWhileRecording(error, message) from error
        if not written.ok:
            log.error("%s: recording the failure in LDAP failed too: %s", dn, written.message)
        return EntryOutcome(dn, item.request.uid, verb, Outcome.FAILED, message, return_value)

    def _modify(self, item: Due, changes: Changes, lost: type[_Lost]) -> ModifyResult:
        try:
            return self.writer.modify(item.dn, changes)
        except LdapUnavailableError as error:
            raise lost(error) from error

    def _dry_run(self, item: Due) -> EntryOutcome:
        dn, verb, uid = item.dn, item.verb, item.request.uid
        if item.account is None:
            assert item.problem is not None
            return EntryOutcome(
                dn, uid, verb, Outcome.FAILED, f"would fail: {item.problem}",
                item.problem.return_value,
            )  # fmt: skip
        try:
            # Read-only, as the real run does it first: a directory made for another entry.
            work.check_owner(item.account)
        except (EntryError, OSError) as error:
            value = error.return_value if isinstance(error, EntryError) else RETURN_FILESYSTEM
            return EntryOutcome(dn, uid, verb, Outcome.FAILED, f"would fail: {error}", value)
        plan = build_plan(item.account, verb, self.config)
        return EntryOutcome(dn, uid, verb, Outcome.WOULD, "; ".join(describe(plan)))

    def purge_quarantine(self) -> dict[str, object]:
        """Purge quarantined accounts past their days; return what it did for the status file.

        A failure is logged and returned, not raised.
        """
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
