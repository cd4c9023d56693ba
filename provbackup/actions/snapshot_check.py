"""The snapshot part of ``check``: stale accounts on disk and the last run of each interval.

An active account is *stale* when its newest snapshot (the newest
``<interval>.0``, dated by rsnapshot) is older than its smallest interval
(hourly 1 h, daily 1 d, weekly 7 d, monthly 31 d, yearly 366 d) plus
``[snapshot] stale_slack``; an account without any snapshot yet counts from
its rsnapshot.conf's modification time, so a new account is not stale on
its first day. The disk is the truth here, as for the snapshot runner.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provbackup.config import INTERVALS, Config
from provbackup.engines import select_engine
from provbackup.engines.migration import layout_of
from provbackup.engines.migration_check import layout_warnings
from provbackup.errors import (
    EXIT_CONFIG,
    EXIT_ENTRIES_FAILED,
    EXIT_LDAP_UNAVAILABLE,
    EXIT_OK,
    SIGNAL_EXIT_BASE,
    EntryError,
)
from provbackup.work.accountconf import open_account, read_conf
from provbackup.work.discover import find_accounts
from provbackup.work.safe import open_directory

log = logging.getLogger(__name__)

PERIOD_SECONDS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 31 * 86400,
    "yearly": 366 * 86400,
}
NAMES_SHOWN = 5


@dataclass
class SnapshotFacts:
    """What ``check`` reports about snapshots: stale accounts, run problems, notes (no state)."""

    checked: int = 0
    stale: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        """The summary parts, worst first, notes last."""
        parts = list(self.problems)
        if self.stale:
            shown = ", ".join(self.stale[:NAMES_SHOWN]) + (
                ", ..." if len(self.stale) > NAMES_SHOWN else ""
            )
            parts.append(f"{len(self.stale)} accounts without a recent snapshot ({shown})")
        return parts + self.warnings + self.notes


def stale_accounts(
    config: Config, now: datetime, layouts: Counter[str] | None = None
) -> tuple[int, list[str]]:
    """Return (accounts checked, uids of stale active accounts); see the module docstring.

    An account whose configuration cannot be read counts as stale (its
    snapshots cannot be running). ``layouts`` counts, when given, the
    accounts by engine layout (``incoming/`` a plain directory: rsnapshot;
    a subvolume: btrfs; one lstat each). Raises WorkError when the root is
    missing.
    """
    slack = config.snapshot.stale_slack
    moment = now.timestamp()
    checked, stale = 0, []
    for paths in find_accounts(config.backup.root, config.backup.layout):
        checked += 1
        try:
            with open_account(paths) as (account, home):
                conf = read_conf(account, paths)
                if layouts is not None:
                    layouts[layout_of(home)] += 1
                reference = os.stat("rsnapshot.conf", dir_fd=account.fd).st_mtime
                with open_directory(home, ".snapshots") as snapshots:
                    for name in os.listdir(snapshots.fd):
                        interval, _, number = name.partition(".")
                        if interval in INTERVALS and number == "0":
                            status = os.stat(name, dir_fd=snapshots.fd, follow_symlinks=False)
                            reference = max(reference, status.st_mtime)
        except FileNotFoundError:
            checked -= 1  # deleted since the walk
            continue
        except (EntryError, OSError) as error:
            log.debug("%s: cannot check: %s", paths.account, error)
            stale.append(paths.account.name)
            continue
        smallest = min((PERIOD_SECONDS[interval] for interval, _ in conf.retain), default=None)
        if smallest is not None and moment - reference > smallest + slack:
            stale.append(paths.account.name)
    return checked, stale


def evaluate_runs(statuses: dict[str, dict[str, Any] | None]) -> tuple[list[str], list[str]]:
    """Judge the last snapshot run of each interval from its status file.

    Takes interval -> status document (None: never ran, which is fine: the
    interval may not be used; staleness catches a missing timer). Returns
    (warnings, critical problems): accounts failed or the usage write-back
    skipped (LDAP unavailable, 69, or the base DN missing, 78 with
    ``ldap_error``) warn; any other non-zero exit (70, 78) is critical.
    """
    warnings, problems = [], []
    for interval, status in statuses.items():
        if status is None:
            continue
        code = status.get("exit_code")
        counts = status.get("counts") or {}
        stopped = status.get("stopped_by_signal")
        if stopped and isinstance(code, int) and code > SIGNAL_EXIT_BASE:
            warnings.append(f"last {interval} snapshot run stopped by {stopped}")
        elif code == EXIT_ENTRIES_FAILED:
            failed = int(counts.get("failed", 0)) + int(counts.get("busy", 0))
            warnings.append(f"last {interval} snapshot run: {failed} accounts failed")
        elif code == EXIT_LDAP_UNAVAILABLE or (code == EXIT_CONFIG and status.get("ldap_error")):
            # The snapshots are made; only the usage write-back was skipped (LDAP down,
            # or the base DN gone): a warning, with the reason the run recorded.
            reason = status.get("ldap_error")
            warnings.append(
                f"last {interval} snapshot run could not write usage to LDAP"
                + (f": {reason}" if reason else "")
            )
        elif code != EXIT_OK:
            reason = status.get("error")
            problems.append(
                f"last {interval} snapshot run exited {code}" + (f": {reason}" if reason else "")
            )
    return warnings, problems


def gather(config: Config, now: datetime) -> SnapshotFacts:
    """Collect the snapshot facts for ``check`` (disk walk and status files)."""
    from provbackup.actions.snapshotreport import status_path
    from provbackup.status import read_status

    facts = SnapshotFacts()
    layouts: Counter[str] = Counter()
    try:
        facts.checked, facts.stale = stale_accounts(config, now, layouts)
    except EntryError as error:
        # A missing root fails every run too (exit 78 in their status files: CRITICAL).
        facts.warnings.append(f"cannot check snapshots: {error}")
    statuses = {interval: read_status(status_path(config, interval)) for interval in INTERVALS}
    warnings, facts.problems = evaluate_runs(statuses)
    facts.warnings += warnings
    problems, warnings, notes = select_engine(config).findings(config.backup.root)
    facts.problems += problems
    facts.warnings += warnings
    facts.notes += notes
    facts.warnings += layout_warnings(layouts, select_engine(config).name)
    return facts
