"""Purge the quarantine: remove accounts moved to ``<root>/.deleted`` past their days.

Each quarantined tree is removed by :func:`provbackup.work.remove.remove_tree`
(iterative, never following a symlink) within the run's time budget. One
tree that cannot be removed (an immutable file, a mount point, a bug) is
reported and left; the others and the run go on. What the budget did not
allow is left for the next run.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from provbackup.model import parse_timestamp
from provbackup.paths import QUARANTINE_DIRECTORY
from provbackup.work import subvolumes
from provbackup.work.remove import Budget
from provbackup.work.safe import lstat_entry, open_directory, open_root, remove_tree

logger = logging.getLogger(__name__)

QUARANTINE_NAME = re.compile(r"(?P<uid>.+)\.(?P<stamp>\d{8}T\d{6}Z)(?:\.\d+)?")


@dataclass
class Purge:
    """What a purge did: trees removed, trees that failed (path: reason), trees left for later."""

    removed: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)


def purge_quarantine(root: Path, days: int, now: datetime, budget: Budget | None = None) -> Purge:
    """Remove quarantined accounts under ``<root>/.deleted`` older than ``days`` days.

    The age is taken from the UTC time in the name (``<uid>.<YYYYMMDDThhmmssZ>``);
    ``now`` naive means UTC. Names of another form are left alone with a
    warning. Each tree is removed on its own: a failure is logged and
    recorded in the result, and the rest goes on; once ``budget`` is spent
    the remaining trees wait for the next run. Returns the :class:`Purge`.
    Raises WorkError when the backup root is missing, UnsafePathError when
    ``.deleted`` is not a directory.
    """
    result = Purge()
    budget = budget or Budget(None)
    limit = timedelta(days=days)
    with open_root(root) as root_directory:
        try:
            quarantine = open_directory(root_directory, QUARANTINE_DIRECTORY)
        except FileNotFoundError:
            return result
        with quarantine:
            for name in sorted(os.listdir(quarantine.fd)):
                path = quarantine.path / name
                match = QUARANTINE_NAME.fullmatch(name)
                if match is None:
                    logger.warning("%s: not a quarantined account; left alone", path)
                    continue
                parsed = parse_timestamp(match["stamp"])
                if parsed is None:  # 20261399T..., say: not a time, so not ours to purge
                    logger.warning("%s: not a valid time in the name; left alone", path)
                    continue
                if _utc(now) - parsed.replace(tzinfo=UTC) < limit:
                    continue
                if budget.spent() and (result.removed or result.failed or result.unfinished):
                    # Every run makes progress on one tree at least, however spent.
                    result.unfinished.append(path)
                    continue
                try:
                    status = lstat_entry(quarantine, name)
                    if status is not None and stat.S_ISDIR(status.st_mode):
                        # Read-only snapshots cannot be emptied file by file: subvolumes first.
                        with open_directory(quarantine, name) as account:
                            subvolumes.remove_account_subvolumes(account, match["uid"])
                    gone = remove_tree(quarantine, name, budget)
                except Exception as error:  # one bad tree never stops the others or the run
                    logger.error("cannot purge %s: %s", path, error)
                    result.failed.append(f"{path}: {error}")
                    continue
                if gone:
                    logger.info("purged %s (quarantined %s)", path, match["stamp"])
                    result.removed.append(path)
                else:
                    result.unfinished.append(path)
    if result.unfinished:
        logger.warning(
            "[delete] time_budget (%gs) spent: %d quarantined trees left for the next run",
            budget.seconds or 0,
            len(result.unfinished),
        )
    return result


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
