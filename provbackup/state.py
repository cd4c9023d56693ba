"""The provisioning state machine (SPEC section 1), as pure functions.

Nothing here talks to LDAP or the filesystem: it says which entries are
due, what each transition writes, and how an entry is shown. The LDAP
changes are returned as plain :data:`~provbackup.model.Changes` that
:mod:`provbackup.directory` sends.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from provbackup.errors import RETURN_INVALID_ENTRY
from provbackup.model import (
    MODE,
    RETURN_VALUE,
    STATE,
    Changes,
    Operation,
    Phase,
    Request,
    Verb,
    timestamp,
)

ADD, DELETE, REPLACE = Operation.ADD, Operation.DELETE, Operation.REPLACE


class Status(enum.StrEnum):
    """How an entry stands, as scan and show report it."""

    DUE = "due"
    OVERDUE = "overdue"
    SCHEDULED = "scheduled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"
    INVALID = "invalid"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


NEEDS_ATTENTION = (
    Status.DUE,
    Status.OVERDUE,
    Status.SCHEDULED,
    Status.FAILED,
    Status.INTERRUPTED,
    Status.RUNNING,
    Status.INVALID,
)


def classify(request: Request, today: date, run_active: bool = False) -> Status:
    """Say how ``request`` stands on ``today`` (the server's local date).

    ``run_active`` tells whether a ``process`` run holds the lock now: an
    in-progress entry is then being worked on (``running``), else it was
    ``interrupted`` (no return value) or ``failed`` (non-zero return value).
    """
    if request.phase is Phase.IN_PROGRESS:
        if request.return_value not in (None, 0):
            return Status.FAILED
        return Status.RUNNING if run_active else Status.INTERRUPTED
    if request.problem is not None or request.verb is None:
        return Status.INVALID
    if request.phase is Phase.DONE or request.state != "0":
        return Status.DONE
    if request.date is None:
        return Status.DUE
    if request.date > today:
        return Status.SCHEDULED
    return Status.DUE if request.date == today else Status.OVERDUE


def is_due(status: Status) -> bool:
    """True for the statuses ``process`` works on."""
    return status in (Status.DUE, Status.OVERDUE)


def is_recorded_invalid(request: Request) -> bool:
    """True when an earlier run already reported this invalid request (return value 10)."""
    return request.return_value == RETURN_INVALID_ENTRY


def claim_changes(request: Request) -> Changes:
    """The compare-and-swap modify that claims ``request`` (a requested verb, state 0).

    Deleting the old values (as stored: ``ADD`` stays ``ADD``) fails on the
    server (noSuchAttribute) when another run, host or operator changed the
    entry since it was read, so two runs can never both claim it.
    """
    assert request.verb is not None and request.mode is not None
    return {
        MODE: [(DELETE, [request.mode]), (ADD, [request.verb.in_progress])],
        STATE: [(DELETE, ["0"]), (ADD, ["0"])],
    }


def finish_changes(verb: Verb, date_attribute: str, moment: datetime) -> Changes:
    """The modify that marks a claimed entry (request ``verb``) done at ``moment``.

    Like the claim, it asserts the in-progress value so a run never
    overwrites an entry someone reset or changed under it.
    """
    return {
        MODE: [(DELETE, [verb.in_progress]), (ADD, [verb.done])],
        STATE: [(REPLACE, [timestamp(moment)])],
        date_attribute: [(REPLACE, ["0"])],
        RETURN_VALUE: [(REPLACE, ["0"])],
    }


def failure_changes(verb: Verb, return_value: int) -> Changes:
    """The modify that records a failed entry: in-progress mode kept, state 0."""
    return {
        MODE: [(DELETE, [verb.in_progress]), (ADD, [verb.in_progress])],
        RETURN_VALUE: [(REPLACE, [str(return_value)])],
    }


def invalid_changes(request: Request) -> Changes:
    """The modify that records an invalid request (return value 10), changing nothing else.

    Asserts state 0 and the mode as read (where there is one value), so an
    entry the web shop corrected meanwhile is not marked.
    """
    changes: Changes = {
        STATE: [(DELETE, ["0"]), (ADD, ["0"])],
        RETURN_VALUE: [(REPLACE, [str(RETURN_INVALID_ENTRY)])],
    }
    if request.mode is not None:
        changes[MODE] = [(DELETE, [request.mode]), (ADD, [request.mode])]
    return changes


def reset_changes(request: Request, new_mode: Verb, *, now: bool = False) -> Changes:
    """The modify that puts an entry back to request ``new_mode``, state 0.

    The return value is removed. The date is kept, so a scheduled request
    stays scheduled; ``now`` sets it to 0 (do it at the next run). Asserts
    the mode the entry had when read (where it had one) so a concurrent
    change is not overwritten.
    """
    changes: Changes = {
        MODE: [(DELETE, [request.mode]), (ADD, [new_mode.value])]
        if request.mode
        else [(REPLACE, [new_mode.value])],
        STATE: [(REPLACE, ["0"])],
        RETURN_VALUE: [(REPLACE, [])],
    }
    if now and request.date_attribute:
        changes[request.date_attribute] = [(REPLACE, ["0"])]
    return changes


# What reset acts on without --any-status: entries a run left behind.
RESETTABLE = (Status.FAILED, Status.INTERRUPTED)


def default_reset_mode(request: Request) -> Verb | None:
    """The request a reset restores by default: the verb of the current mode."""
    return request.verb
