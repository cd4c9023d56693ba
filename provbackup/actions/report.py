"""What a ``process`` run reports: each entry's outcome (:mod:`provbackup.outcomes`), the counts,
the status document; :class:`RunRecord`, what every run's report has (``snapshot``'s too)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provbackup.errors import EXIT_OK
from provbackup.model import Outcome
from provbackup.outcomes import EntryOutcome


@dataclass(kw_only=True)
class RunRecord:
    """What every run's report has: when it ran, whether dry, how it ended.

    The base of :class:`RunReport` and ``SnapshotReport``; its fields are
    given by keyword.
    """

    started: datetime
    dry_run: bool
    finished: datetime | None = None
    exit_code: int = EXIT_OK
    error: str | None = None
    stopped_by_signal: str | None = None

    def status_head(self, command: str, hostname: str) -> dict[str, Any]:
        """The status document's first keys, the same for every command.

        Takes the command's name and this host's; returns command,
        hostname, pid, started, finished (``started`` until set),
        exit_code, error and stopped_by_signal; raises nothing.
        """
        return {
            "command": command,
            "hostname": hostname,
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "finished": (self.finished or self.started).isoformat(),
            "exit_code": self.exit_code,
            "error": self.error,
            "stopped_by_signal": self.stopped_by_signal,
        }


@dataclass(kw_only=True)
class RunReport(RunRecord):
    """The result of one run: every entry's outcome, the exit code, the LDAP cost."""

    outcomes: list[EntryOutcome] = field(default_factory=list)
    ldap: dict[str, int] = field(default_factory=dict)
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
            **self.status_head("process", hostname),
            "purge": self.purge,
            "counts": {outcome.value: self.count(outcome) for outcome in counted},
            "ldap": self.ldap,
            "entries": [item.as_dict() for item in self.outcomes],
        }
