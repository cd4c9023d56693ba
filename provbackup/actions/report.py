"""What a ``process`` run reports: each entry's outcome, the counts, the status document."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provbackup.errors import EXIT_OK
from provbackup.model import Outcome, Verb


@dataclass
class EntryOutcome:
    """What happened to one entry: its verb (add/modify/delete, None if unknown) and outcome."""

    dn: str
    uid: str | None
    verb: Verb | None
    outcome: Outcome
    message: str = ""
    return_value: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The entry as the status file holds it (the verb under its public name ``action``)."""
        return {
            "dn": self.dn,
            "uid": self.uid,
            "action": None if self.verb is None else self.verb.value,
            "outcome": self.outcome.value,
            "message": self.message,
            "return_value": self.return_value,
            "seconds": self.seconds,
        }


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

    def count(self, outcome: Outcome) -> int:
        """How many entries ended with ``outcome``."""
        return sum(1 for item in self.outcomes if item.outcome == outcome)

    @property
    def failed(self) -> list[EntryOutcome]:
        """The entries that failed."""
        return [item for item in self.outcomes if item.outcome == Outcome.FAILED]

    def summary(self) -> str:
        """One line: counts by outcome."""
        if self.dry_run:
            would = self.count(Outcome.WOULD)
            return f"dry run: {would} entries would be processed, nothing changed"
        line = (
            f"{self.count(Outcome.DONE)} done, {self.count(Outcome.FAILED)} failed, "
            f"{self.count(Outcome.SKIPPED)} skipped"
        )
        if self.count(Outcome.INTERRUPTED):
            line += f", {self.count(Outcome.INTERRUPTED)} interrupted"
        if self.stopped_by_signal:
            line += f"; stopped by {self.stopped_by_signal}"
        return line

    def to_status(self, hostname: str) -> dict[str, Any]:
        """The status-file document of this run."""
        counted = (Outcome.DONE, Outcome.FAILED, Outcome.SKIPPED, Outcome.INTERRUPTED)
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
            "counts": {outcome.value: self.count(outcome) for outcome in counted},
            "ldap": self.ldap,
            "entries": [item.as_dict() for item in self.outcomes],
        }
