"""Why an entry failed, kept until the entry changes.

LDAP holds only the return value of a failed entry (40: the quota command
failed); the message saying why lives in the run's log, mail and status
file, and the next run replaces the status file. So the command layer of
``process`` keeps the reason of every entry it left failed or interrupted
in ``reasons.json`` beside the status file (root only, mode 0600, replaced
atomically), keyed by DN, together with the provisioning attributes the
entry had when the reason was written: its mode, state ``0`` and return
value. ``scan`` and ``show`` show a reason only while the entry still has
exactly those values, so a reason never outlives the failure it explains:
a reset, a later run or an edit by hand makes it stale, and a run that
finishes the entry removes it. Each host keeps the reasons of its own runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from provbackup.jsonfile import write_json
from provbackup.model import Outcome, Request
from provbackup.outcomes import EntryOutcome

log = logging.getLogger(__name__)

REASONS_FILE_NAME = "reasons.json"
REASONS_MODE = 0o600


@dataclass(frozen=True)
class Reason:
    """Why an entry failed: the message, when, and the attributes it explains."""

    dn: str
    mode: str
    return_value: int | None
    message: str
    time: str

    def explains(self, request: Request) -> bool:
        """True while ``request`` still has the mode, state 0 and return value recorded."""
        return (
            (request.mode or "").lower() == self.mode.lower()
            and request.state == "0"
            and request.return_value == self.return_value
        )


def reasons_file(status_file: Path) -> Path:
    """The reasons that go with ``status_file``: ``reasons.json`` beside it."""
    return status_file.parent / REASONS_FILE_NAME


def dn_key(dn: str) -> str:
    """The key of ``dn`` in the file: lower-cased, without spaces after commas."""
    return ",".join(part.strip() for part in dn.lower().split(","))


def read_reasons(path: Path) -> dict[str, Reason]:
    """Return the recorded reasons by DN key; empty when the file is missing or unreadable.

    A reader without root rights simply sees no reasons.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        entries = data["entries"]
        return {
            key: Reason(
                dn=str(item["dn"]),
                mode=str(item["mode"]),
                return_value=None if item["return_value"] is None else int(item["return_value"]),
                message=str(item["message"]),
                time=str(item["time"]),
            )
            for key, item in entries.items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.debug("cannot read the failure reasons %s: %s", path, error)
        return {}


def reason_for(reasons: Mapping[str, Reason], request: Request) -> str | None:
    """The recorded reason of ``request``'s failure, or None (none, or stale)."""
    reason = reasons.get(dn_key(request.dn))
    if reason is None or not reason.explains(request):
        return None
    return f"{reason.message} (recorded {reason.time})"


def remember(path: Path, outcomes: Iterable[EntryOutcome], now: datetime) -> None:
    """Record the reasons of this run's failed and interrupted entries; drop finished ones.

    An entry left failed holds its in-progress mode and the return value;
    an interrupted one its in-progress mode and no return value. Failing to
    write is logged, never raised: LDAP already holds the outcome.
    """
    changes: dict[str, Reason | None] = {}
    for outcome in outcomes:
        key = dn_key(outcome.dn)
        if outcome.outcome is Outcome.DONE:
            changes[key] = None
        elif outcome.verb is not None and (
            (outcome.outcome is Outcome.FAILED and outcome.return_value)
            or outcome.outcome is Outcome.INTERRUPTED
        ):
            return_value = outcome.return_value if outcome.outcome is Outcome.FAILED else None
            changes[key] = Reason(
                dn=outcome.dn,
                mode=outcome.verb.in_progress,
                return_value=return_value,
                message=outcome.message,
                time=now.isoformat(timespec="seconds"),
            )
    if not changes:
        return
    reasons = read_reasons(path)
    if not any(reason is not None or key in reasons for key, reason in changes.items()):
        return
    for key, reason in changes.items():
        if reason is None:
            reasons.pop(key, None)
        else:
            reasons[key] = reason
    _write(path, {key: reason.__dict__ for key, reason in reasons.items()})


def _write(path: Path, entries: dict[str, Any]) -> None:
    """Replace ``path`` with the reasons ``entries`` atomically (mode 0600)."""
    write_json(path, {"version": 1, "entries": entries}, REASONS_MODE, "the failure reasons")
