"""One ``process`` run's work on the server, and the checks around it.

:class:`WorkSession` holds what every entry of a run shares (one rsnapshot
configtest per shape, one time budget for removals); :func:`root_problem`
says why the backup root cannot be used; :func:`protected_hardlinks`
reads the kernel setting snapshots rely on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from provbackup.closing import Closing
from provbackup.config import Config
from provbackup.errors import EntryError
from provbackup.plan import AccountPlan
from provbackup.work.apply import apply_plan
from provbackup.work.purge import Purge, purge_quarantine
from provbackup.work.remove import Budget
from provbackup.work.rsnapshot import ConfigTester
from provbackup.work.safe import open_root

logger = logging.getLogger(__name__)

PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks")


def root_problem(root: Path) -> str | None:
    """Say why the backup root cannot be opened (missing, not mounted?), or None when it can."""
    try:
        with open_root(root):
            return None
    except EntryError as error:
        return str(error)


def protected_hardlinks() -> bool:
    """Whether ``fs.protected_hardlinks`` is on (True where it cannot be read: not Linux).

    Snapshots give the account's group read access to what was in incoming/.
    With the protection off, a user could hard-link a file they cannot read
    into incoming/ (on the same filesystem) and read it in the next snapshot.
    """
    try:
        return PROTECTED_HARDLINKS.read_text().strip() != "0"
    except OSError:
        return True  # not Linux, or no /proc: nothing to say


def warn_unprotected_hardlinks() -> bool:
    """Log a warning when ``fs.protected_hardlinks`` is off; return True if it is on."""
    enabled = protected_hardlinks()
    if not enabled:
        logger.warning(
            "fs.protected_hardlinks is 0: users could hard-link files they cannot read into "
            "incoming/ and read them in their snapshots; set it to 1 (sysctl)"
        )
    return enabled


class WorkSession(Closing):
    """The work of one ``process`` run: one :class:`ConfigTester` shared by every entry.

    Takes the configuration and ``strict`` (configtest each account's own
    file too). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, config: Config, *, strict: bool = False) -> None:
        self.config = config
        self.tester = ConfigTester(config.rsnapshot, strict=strict)
        # One budget for every tree this run removes: deletes and the purge.
        self.budget = Budget(config.delete.time_budget)
        warn_unprotected_hardlinks()

    def apply(self, plan: AccountPlan, now: datetime) -> list[str]:
        """Apply ``plan`` at ``now`` (aware); see :func:`apply_plan`."""
        return apply_plan(plan, self.config, now=now, tester=self.tester, budget=self.budget)

    def purge_quarantine(self, now: datetime) -> Purge:
        """Purge quarantined accounts older than ``[delete] quarantine_days``; see the function."""
        return purge_quarantine(
            self.config.backup.root, self.config.delete.quarantine_days, now, self.budget
        )

    def close(self) -> None:
        """Remove the configtest's temporary files."""
        self.tester.close()
