"""The per-account record of customer warnings: what was sent, when and to whom.

One JSON file per account, ``<uid>.json`` in ``notify/`` beside ``[run]
status_file`` (root's, mode 0600, replaced atomically through
:func:`provbackup.jsonfile.write_json`: a reader never sees half a file).
The uid is the gate's safe name; the file also holds the entry's
``entryUUID``, so a new entry reusing a deleted customer's uid starts with
an empty record.

**At most one duplicate, never a lost warning.** Before a message is handed
to the mail server (or the sms command), the record notes the attempt
(``attempt``); only once the server accepted it is it recorded as sent. A
run killed between the two (SIGKILL, power loss) leaves the attempt
unconfirmed: the next run sends that message again, once. A message whose
attempt cannot be recorded is not sent at all (it would be sent again by
every run).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from provbackup.config import Config
from provbackup.customer.rules import Sent
from provbackup.jsonfile import write_json

log = logging.getLogger(__name__)

RECORD_VERSION = 1
RECORD_MODE = 0o600
MAX_RECORD_BYTES = 1 << 20
HISTORY_KEPT = 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RecordError(Exception):
    """A record exists but cannot be read or used: the account is left alone this run."""


@dataclass
class ConditionRecord:
    """One condition's state: since when, last confirmed sending, an unconfirmed attempt."""

    since: str
    sent: str | None = None
    to: str | None = None
    medium: str | None = None
    count: int = 0
    attempt: str | None = None
    attempt_message: str | None = None
    error: str | None = None


@dataclass
class AccountRecord:
    """Everything recorded for one account (see the module docstring)."""

    uid: str
    entry_uuid: str | None = None
    added: str | None = None
    conditions: dict[str, ConditionRecord] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def sent(self) -> dict[str, Sent]:
        """Condition key → when a message was last confirmed sent (for the rules)."""
        return {
            key: Sent(None if state.sent is None else datetime.fromisoformat(state.sent))
            for key, state in self.conditions.items()
        }

    def note(self, at: datetime, key: str, message: str, to: str | None, outcome: str) -> None:
        """Append one line to the history (the newest :data:`HISTORY_KEPT` kept)."""
        self.history.append(
            {"at": at.isoformat(), "key": key, "message": message, "to": to, "outcome": outcome}
        )
        del self.history[:-HISTORY_KEPT]

    def as_json(self) -> dict[str, Any]:
        """The record as its file holds it."""
        return {"version": RECORD_VERSION, **asdict(self)}


def records_directory(config: Config) -> Path:
    """Where the records live: ``notify/`` beside ``[run] status_file``."""
    return config.run.status_file.parent / "notify"


def record_path(config: Config, uid: str) -> Path:
    """The record file of the account ``uid`` (a name the gate admitted)."""
    return records_directory(config) / f"{uid}.json"


def load_record(path: Path, uid: str, entry_uuid: str | None) -> AccountRecord:
    """Read the record at ``path``; an absent one (or another entry's) gives an empty record.

    Raises RecordError for a record that cannot be read or parsed.
    """
    try:
        descriptor = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        return AccountRecord(uid=uid, entry_uuid=entry_uuid)
    except OSError as error:
        raise RecordError(f"cannot open {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except OSError as error:
        raise RecordError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"{path}: larger than {MAX_RECORD_BYTES} bytes")
    try:
        document = json.loads(data)
        if document.get("version") != RECORD_VERSION or document.get("uid") != uid:
            raise ValueError("not a version 1 record of this uid")
        record = AccountRecord(
            uid=uid,
            entry_uuid=document.get("entry_uuid"),
            added=document.get("added"),
            conditions={
                str(key): ConditionRecord(**value)
                for key, value in dict(document.get("conditions") or {}).items()
            },
            history=list(document.get("history") or []),
        )
        for state in record.conditions.values():
            if state.sent is not None:
                datetime.fromisoformat(state.sent)
    except (ValueError, TypeError, AttributeError) as error:
        raise RecordError(
            f"{path}: unusable record ({error}); move it aside to start anew"
        ) from None
    if entry_uuid is not None and record.entry_uuid not in (None, entry_uuid):
        log.info("%s: the record is another entry's (entryUUID changed): starting anew", uid)
        return AccountRecord(uid=uid, entry_uuid=entry_uuid)
    record.entry_uuid = entry_uuid or record.entry_uuid
    return record


def save_record(path: Path, record: AccountRecord) -> bool:
    """Replace the record file atomically (root, 0600); False (logged) when it cannot."""
    return write_json(path, record.as_json(), RECORD_MODE, f"the warning record of {record.uid}")


def read_record_quietly(config: Config, uid: str) -> AccountRecord | None:
    """The record of ``uid`` for ``show``; None when there is none or it is unusable.

    Takes the configuration and the uid; an unusable record is logged
    (naming the uid and the file), never raised.
    """
    path = record_path(config, uid)
    if not path.exists():
        return None
    try:
        return load_record(path, uid, None)
    except RecordError as error:
        log.warning("uid %s: %s", uid, error)
        return None
