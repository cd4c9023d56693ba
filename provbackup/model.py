"""The typed values the rest of provbackup trusts, and its one vocabulary.

An LDAP entry becomes a :class:`Request` (its provisioning attributes) and,
when it is to be worked on, an :class:`Account` (what the work needs) in
exactly one place, :mod:`provbackup.entry` (the gate). Everything after the
gate (plan, work, write back) takes these values as they are.

``Verb`` is what an entry asks for (add, modify, delete); its in-progress
and done forms are the other values of ``sstProvisioningMode``.
``Outcome`` is what happened to an entry in a run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime

from provbackup.config import INTERVALS
from provbackup.paths import AccountPaths

MODE = "sstProvisioningMode"
STATE = "sstProvisioningState"
RETURN_VALUE = "sstProvisioningReturnValue"
EXECUTION_DATE = "sstProvisioningExecutionDate"
DOCUMENTED_DATE = "sstProvisioningDate"
DATE_ATTRIBUTES = (EXECUTION_DATE, DOCUMENTED_DATE)
INTERVAL_ATTRIBUTES = {name: f"sstBackupInterval{name.capitalize()}" for name in INTERVALS}
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
ROOT_ID = 0


class Verb(enum.StrEnum):
    """What an entry asks for: the request values of ``sstProvisioningMode``."""

    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"

    @property
    def in_progress(self) -> str:
        """The mode written while the work runs: adding, modifying, deleting."""
        return _IN_PROGRESS[self]

    @property
    def done(self) -> str:
        """The mode written when the work is done: added, modified, deleted."""
        return _DONE[self]


_IN_PROGRESS = {Verb.ADD: "adding", Verb.MODIFY: "modifying", Verb.DELETE: "deleting"}
_DONE = {Verb.ADD: "added", Verb.MODIFY: "modified", Verb.DELETE: "deleted"}


class Phase(enum.StrEnum):
    """Where a mode value stands: requested, in progress or done."""

    REQUESTED = "requested"
    IN_PROGRESS = "in progress"
    DONE = "done"


def parse_mode(text: str | None) -> tuple[Verb, Phase] | None:
    """Return the verb and phase of a mode value, or None for an unknown one.

    Case is ignored, as the stoney schema's equality rule for
    sstProvisioningMode is caseIgnoreMatch (``ADD`` is ``add``).
    """
    if text is None:
        return None
    lowered = text.strip().lower()
    for verb in Verb:
        if lowered == verb.value:
            return verb, Phase.REQUESTED
        if lowered == verb.in_progress:
            return verb, Phase.IN_PROGRESS
        if lowered == verb.done:
            return verb, Phase.DONE
    return None


KNOWN_MODES = tuple(mode for verb in Verb for mode in (verb.value, verb.in_progress, verb.done))


class Outcome(enum.StrEnum):
    """What happened to one entry in a ``process`` run."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    WOULD = "would"
    # LDAP went away with the entry in hand: it may be left in progress without a
    # return value (scan: interrupted); the message says where it stopped.
    INTERRUPTED = "interrupted"
    # Another run holds the account's lock (a snapshot run skips the account).
    BUSY = "busy"


def timestamp(moment: datetime) -> str:
    """Format ``moment`` as the UTC ``YYYYMMDDThhmmssZ`` written to sstProvisioningState.

    Raises ValueError for a naive datetime.
    """
    if moment.tzinfo is None:
        raise ValueError("timestamp needs an aware datetime")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime | None:
    """Return the (naive, UTC) datetime of a ``YYYYMMDDThhmmssZ`` text, or None if malformed."""
    if len(text) != 16:
        return None
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return None


@dataclass(frozen=True)
class Request:
    """The provisioning attributes of an entry, read by the gate.

    ``mode`` is the value as stored; ``verb`` and ``phase`` its meaning
    (None for a missing or unknown mode). ``date_attribute`` is the name
    the entry uses for the date (None when it has neither); ``date`` is
    None for ``0`` (now) and for a missing date. ``problem`` says why the
    provisioning attributes are unusable (None: they are usable).
    """

    dn: str
    uid: str | None
    mode: str | None
    state: str | None
    date_attribute: str | None
    date: date | None
    return_value: int | None
    problem: str | None = None
    verb: Verb | None = None
    phase: Phase | None = None


@dataclass(frozen=True)
class Account:
    """Everything the work on the server needs, validated by the gate.

    ``retain`` is ordered hourly → yearly without zero counts (empty for a
    delete, which needs none); ``quota_bytes`` is None when the entry sets
    no quota (and on delete, which always sets 0); ``paths`` are the
    account's paths under the backup root, its homeDirectory checked
    against them.
    """

    dn: str
    uid: str
    uid_number: int
    gid_number: int
    home_directory: str | None
    quota_bytes: int | None
    retain: tuple[tuple[str, int], ...]
    active: bool
    paths: AccountPaths
    # The entry's entryUUID (operational; None where the server gives none): which
    # entry an account directory was made for (work/ownership.py).
    entry_uuid: str | None = None


class Operation(enum.StrEnum):
    """The operations of an LDAP modify; :mod:`provbackup.directory` maps them onto ldap3's."""

    ADD = "add"
    DELETE = "delete"
    REPLACE = "replace"


# An LDAP modify as plain data: {attribute: [(operation, values)]}.
Changes = dict[str, list[tuple[Operation, list[str]]]]


def owner_text(uid: int, gid: int) -> str:
    """Return ``uid:gid`` with 0 shown as root."""
    return f"{'root' if uid == ROOT_ID else uid}:{'root' if gid == ROOT_ID else gid}"
