"""Server faults are not customer faults: judge the snapshot runner's last daily run (pure).

The last successful backup of each client host reaches the directory only
through a snapshot run (it reads ``backupEnded.xml`` and writes
``sstBackupLastSuccessfulBackup``). When that run did not happen or failed,
the directory's dates are old through no fault of the customer's: telling
customers their backup is missing would be false. So before anything is
sent, :func:`server_fault` reads the daily run's status file
(``status-snapshot-daily.json``): no status file, a run that finished more
than a day plus ``[snapshot] stale_slack`` ago, a run stopped by a signal,
one that exited with anything but 0 or 1 (69: usage and last backups not
written back; 70, 78), or one in which many accounts failed (more than a
tenth of them, and at least :data:`MIN_FAILED`) is a server fault: no
customer is told anything, the operator is (mail, ``check`` CRITICAL).
Accounts whose own snapshot failed or was busy in a run otherwise fine are
left out of the schedule warnings the same way (:func:`failed_accounts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from provbackup.errors import EXIT_ENTRIES_FAILED, EXIT_OK

MIN_FAILED = 3
DAILY_PERIOD = timedelta(days=1)


def server_fault(status: Mapping[str, Any] | None, now: datetime, slack_seconds: int) -> str | None:
    """Why the last daily snapshot run cannot be trusted, or None when it can.

    Takes the daily run's status document (None: no status file), the aware
    current time and ``[snapshot] stale_slack``.
    """
    if status is None:
        return "the daily snapshot run has never run on this server (no status file)"
    finished = _time(status.get("finished")) or _time(status.get("started"))
    if finished is None:
        return "the daily snapshot run's status file has no time"
    if now - finished > DAILY_PERIOD + timedelta(seconds=slack_seconds):
        return f"the daily snapshot run has not run since {finished.isoformat()}"
    code = status.get("exit_code")
    if status.get("stopped_by_signal"):
        return f"the last daily snapshot run was stopped by {status['stopped_by_signal']}"
    if code not in (EXIT_OK, EXIT_ENTRIES_FAILED):
        reason = status.get("error") or status.get("ldap_error")
        return f"the last daily snapshot run exited {code}" + (f": {reason}" if reason else "")
    counts = status.get("counts") or {}
    failed = _count(counts.get("failed")) + _count(counts.get("busy"))
    total = sum(_count(value) for value in counts.values())
    if failed >= MIN_FAILED and failed * 10 > total:
        return f"the last daily snapshot run failed for {failed} of {total} accounts"
    return None


def failed_accounts(status: Mapping[str, Any] | None) -> frozenset[str]:
    """The uids whose snapshot failed or was busy in the last daily run."""
    if status is None:
        return frozenset()
    accounts = status.get("accounts") or []
    return frozenset(
        str(item.get("uid"))
        for item in accounts
        if isinstance(item, Mapping) and item.get("outcome") in ("failed", "busy")
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
