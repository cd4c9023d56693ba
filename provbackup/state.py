"""The provisioning state machine (SPEC section 1), as pure functions.

Nothing here talks to LDAP or the filesystem: it says which entries are
due, what each transition writes, and how an entry is shown. The LDAP
changes are returned as plain ``{attribute: [(operation, values)]}``
descriptions that :mod:`provbackup.directory` sends.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from provbackup.entry import MODE, RETURN_VALUE, STATE, TIMESTAMP_FORMAT, Request

REQUEST_MODES = ("add", "modify", "delete")
IN_PROGRESS = {"add": "adding", "modify": "modifying", "delete": "deleting"}
DONE = {"add": "added", "modify": "modified", "delete": "deleted"}
VERB_OF = {
    **{mode: mode for mode in REQUEST_MODES},
    **{progress: verb for verb, progress in IN_PROGRESS.items()},
    **{done: verb for verb, done in DONE.items()},
}
KNOWN_MODES = tuple(VERB_OF)

# The operations of an LDAP modify; directory.py maps them onto ldap3's.
ADD = "add"
DELETE = "delete"
REPLACE = "replace"

Changes = dict[str, list[tuple[str, list[str]]]]


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
    mode = request.mode
    if mode in IN_PROGRESS.values():
        if request.return_value not in (None, 0):
            return Status.FAILED
        return Status.RUNNING if run_active else Status.INTERRUPTED
    if request.problem is not None or mode not in KNOWN_MODES:
        return Status.INVALID
    if mode in DONE.values() or request.state != "0":
        return Status.DONE
    if request.date is None:
        return Status.DUE
    if request.date > today:
        return Status.SCHEDULED
    return Status.DUE if request.date == today else Status.OVERDUE


def is_due(status: Status) -> bool:
    """True for the statuses ``process`` works on."""
    return status in (Status.DUE, Status.OVERDUE)


def timestamp(moment: datetime) -> str:
    """Format ``moment`` as the UTC ``YYYYMMDDThhmmssZ`` written to sstProvisioningState."""
    if moment.tzinfo is None:
        raise ValueError("timestamp needs an aware datetime")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def claim_changes(mode: str) -> Changes:
    """The compare-and-swap modify that claims an entry in request ``mode``.

    Deleting the old values fails on the server (noSuchAttribute) when
    another run, host or operator changed the entry since it was read, so
    two runs can never both claim it.
    """
    return {
        MODE: [(DELETE, [mode]), (ADD, [IN_PROGRESS[mode]])],
        STATE: [(DELETE, ["0"]), (ADD, ["0"])],
    }


def finish_changes(mode: str, date_attribute: str, moment: datetime) -> Changes:
    """The modify that marks a claimed entry (request ``mode``) done at ``moment``.

    Like the claim, it asserts the in-progress value so a run never
    overwrites an entry someone reset or changed under it.
    """
    return {
        MODE: [(DELETE, [IN_PROGRESS[mode]]), (ADD, [DONE[mode]])],
        STATE: [(REPLACE, [timestamp(moment)])],
        date_attribute: [(REPLACE, ["0"])],
        RETURN_VALUE: [(REPLACE, ["0"])],
    }


def failure_changes(mode: str, return_value: int) -> Changes:
    """The modify that records a failed entry: in-progress mode kept, state 0."""
    return {
        MODE: [(DELETE, [IN_PROGRESS[mode]]), (ADD, [IN_PROGRESS[mode]])],
        RETURN_VALUE: [(REPLACE, [str(return_value)])],
    }


def reset_changes(request: Request, new_mode: str, *, now: bool = False) -> Changes:
    """The modify that puts an entry back to request ``new_mode``, state 0.

    The return value is removed. The date is kept, so a scheduled request
    stays scheduled; ``now`` sets it to 0 (do it at the next run). Asserts
    the mode the entry had when read (where it had one) so a concurrent
    change is not overwritten.
    """
    changes: Changes = {
        MODE: [(DELETE, [request.mode]), (ADD, [new_mode])]
        if request.mode
        else [(REPLACE, [new_mode])],
        STATE: [(REPLACE, ["0"])],
        RETURN_VALUE: [(REPLACE, [])],
    }
    if now and request.date_attribute:
        changes[request.date_attribute] = [(REPLACE, ["0"])]
    return changes


# What reset acts on without --any-status: entries a run left behind.
RESETTABLE = (Status.FAILED, Status.INTERRUPTED)


def default_reset_mode(mode: str | None) -> str | None:
    """The request a reset restores by default: the verb of the current mode."""
    return VERB_OF.get(mode or "")
