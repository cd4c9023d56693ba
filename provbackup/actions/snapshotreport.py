"""What a ``snapshot INTERVAL`` run reports: each account's result, the usage write-back.

The :class:`SnapshotReport` is the status document of the interval's
runs (``status-snapshot-INTERVAL.json``, :func:`status_path`) and what
the failure mail lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provbackup.actions.report import RunRecord
from provbackup.actions.snapshot_account import BUSY, DONE, FAILED, SKIPPED, WOULD, AccountResult
from provbackup.errors import EXIT_CONFIG, EXIT_LDAP_UNAVAILABLE

if TYPE_CHECKING:
    from provbackup.config import Config

OUTCOMES = (DONE, FAILED, BUSY, SKIPPED)
ADVICE = (
    "A failed snapshot is retried by the next run of its interval. For each one:",
    "  provbackup show UID                          the account on disk",
    "  provbackup snapshot INTERVAL --uid UID -v    run it again by hand, with detail",
    "",
    "See provbackup(1), section SNAPSHOTS.",
)


def command_name(interval: str) -> str:
    """The name of ``interval``'s runs for their lock and status file (``snapshot-daily``)."""
    return f"snapshot-{interval}"


def status_path(config: Config, interval: str) -> Path:
    """The status file of ``interval``'s runs, beside ``[run] status_file``."""
    from provbackup.runfiles import run_files

    return run_files(config, command_name(interval)).status


@dataclass(kw_only=True)
class SnapshotReport(RunRecord):
    """One snapshot run: every account's result (compact), the exit code, usage write-back."""

    interval: str
    results: list[AccountResult] = field(default_factory=list)
    usage_written: int = 0
    usage_refused: int = 0
    ldap_error: str | None = None
    ldap_exit_code: int = EXIT_LDAP_UNAVAILABLE
    advice: tuple[str, ...] = ADVICE

    def count(self, outcome: str) -> int:
        """How many accounts ended with ``outcome``."""
        return sum(1 for item in self.results if item.outcome == outcome)

    @property
    def failed(self) -> list[_MailItem]:
        """The accounts whose snapshot failed or found the account busy, for the mail."""
        return [
            _MailItem(item.account, item.uid, f"snapshot {self.interval}", item.message)
            for item in self.results
            if item.failed
        ]

    def summary(self) -> str:
        """One line: counts by outcome, and the usage write-back."""
        if self.dry_run:
            return (
                f"dry run: {self.count(WOULD)} accounts would get a {self.interval} snapshot, "
                f"{self.count(SKIPPED)} skipped, nothing changed"
            )
        line = ", ".join(f"{self.count(name)} {name}" for name in OUTCOMES)
        line += f"; usage written for {self.usage_written}"
        if self.usage_refused:
            line += f", refused for {self.usage_refused}"
        if self.ldap_error:
            reason = (
                "base DN missing" if self.ldap_exit_code == EXIT_CONFIG else "LDAP unavailable"
            )
            line += f" ({reason}: usage not written back)"
        if self.stopped_by_signal:
            line += f"; stopped by {self.stopped_by_signal}"
        return line

    def to_status(self, hostname: str) -> dict[str, object]:
        """The status-file document of this run."""
        return {
            **self.status_head("snapshot", hostname),
            "interval": self.interval,
            "ldap_error": self.ldap_error,
            "counts": {name: self.count(name) for name in OUTCOMES},
            "usage": {"written": self.usage_written, "refused": self.usage_refused},
            "accounts": [
                {
                    key: value
                    for key, value in asdict(item).items()
                    if key in ("uid", "account", "outcome", "message", "seconds", "newest")
                }
                for item in self.results
            ],
        }


@dataclass(frozen=True)
class _MailItem:
    """A failed account as the failure mail lists it (``dn`` is its account directory)."""

    dn: str
    uid: str | None
    verb: str | None
    message: str
    return_value: int | None = None
