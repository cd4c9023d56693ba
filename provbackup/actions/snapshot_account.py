"""One account's snapshot: lock, its configuration, the engine's snapshot, usage.

:func:`snapshot_account` runs in a worker thread of ``provbackup snapshot``;
it touches only the filesystem and what the engine runs (LDAP stays with the
caller), and never raises for a problem of its account: every outcome,
including a bug, comes back as an :class:`AccountResult`. What the snapshot
is (rsnapshot, or btrfs's read-only one) and the figures are the job's
engine's (:class:`provbackup.engines.base.Engine`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provbackup.accountlock import AccountBusyError, account_lock
from provbackup.config import Config
from provbackup.engines import Engine, SnapshotTask
from provbackup.errors import EntryError, ProvbackupError
from provbackup.model import Outcome
from provbackup.paths import AccountPaths
from provbackup.work.accountconf import open_account, read_conf
from provbackup.work.safe import OpenDirectory, open_directory
from provbackup.work.usage import (
    Usage,
    last_successful_backups,
    read_usage_file,
    write_usage_file,
)

logger = logging.getLogger(__name__)

# The run's one vocabulary of outcomes (provbackup.model.Outcome), by their short names here.
DONE = Outcome.DONE
FAILED = Outcome.FAILED
SKIPPED = Outcome.SKIPPED
BUSY = Outcome.BUSY
WOULD = Outcome.WOULD


@dataclass
class AccountResult:
    """How one account's snapshot went, and what the caller writes back for it.

    ``outcome`` is done, failed, skipped, busy or would; ``usage`` and
    ``hosts`` (``<host>:<UTC time>`` of finished client backups) are set
    after a snapshot; ``newest`` is the newest snapshot's UTC time.
    """

    uid: str
    account: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    newest: str | None = None
    usage: Usage | None = None
    hosts: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when the account's snapshot should have been made and was not."""
        return self.outcome in (FAILED, BUSY)


@dataclass(frozen=True)
class SnapshotJob:
    """What a worker needs: the run's settings and engine (the quota comes per account)."""

    config: Config
    engine: Engine
    interval: str
    dry_run: bool
    clock: Callable[[], datetime]


def snapshot_account(job: SnapshotJob, paths: AccountPaths, quota: int | None) -> AccountResult:
    """Make ``job.interval``'s snapshot of one account; see the module docstring.

    ``quota`` is the account's sstQuota (None: unknown, the usage file keeps
    the figure it has). Returns the :class:`AccountResult`; never raises
    for the account's own problems.
    """
    uid = paths.account.name
    result = AccountResult(uid=uid, account=str(paths.account), outcome=FAILED)
    started = time.monotonic()
    try:
        wait = 0.0 if job.dry_run else job.config.snapshot.lock_wait
        with account_lock(job.config, uid, wait):
            _snapshot(job, paths, quota, result)
    except AccountBusyError as error:
        result.outcome, result.message = BUSY, str(error)
    except FileNotFoundError as error:
        # Deleted or deactivated between the walk and the lock: nothing to snapshot.
        result.outcome = SKIPPED
        result.message = f"gone since the walk ({error.filename or paths.account})"
    except (EntryError, ProvbackupError) as error:
        result.outcome, result.message = FAILED, str(error)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        result.outcome, result.message = FAILED, f"{where}{error.strerror or error}"
    except Exception as error:  # a bug: isolated to this account, the run goes on
        logger.debug("%s: internal error", paths.account, exc_info=True)
        result.outcome = FAILED
        result.message = f"internal error: {type(error).__name__}: {error}"
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _snapshot(
    job: SnapshotJob, paths: AccountPaths, quota: int | None, result: AccountResult
) -> None:
    interval, engine = job.interval, job.engine
    with open_account(paths) as (account, home):
        conf = read_conf(account, paths)
        counts = conf.counts
        if interval not in counts:
            kept = ", ".join(f"{name} {count}" for name, count in conf.retain) or "nothing"
            result.outcome, result.message = SKIPPED, f"retains no {interval} ({kept})"
            return
        task = SnapshotTask(paths, account, home, conf, interval, job.clock(), job.config)
        if job.dry_run:
            result.outcome, result.message = WOULD, engine.would(task)
            return
        steps = engine.snapshot(task)
        with open_directory(home, ".snapshots") as snapshots:
            result.newest = newest_snapshot(snapshots)
        result.usage = engine.usage(home)
        result.hosts = last_successful_backups(home)
        if quota is None:
            previous = read_usage_file(account)
            quota = previous[0] if previous else 0
        write_usage_file(account, os.fstat(home.fd).st_gid, quota, result.usage)
        result.outcome, result.steps = DONE, steps
        result.message = "; ".join(steps)


def newest_snapshot(snapshots: OpenDirectory) -> str | None:
    """The UTC time (ISO, ``Z``) of the newest ``<interval>.0`` below the open .snapshots.

    rsnapshot sets each ``<interval>.0``'s modification time to when it was
    taken. Returns None when there is none.
    """
    newest: float | None = None
    with os.scandir(snapshots.fd) as entries:
        for entry in entries:
            if not entry.name.endswith(".0") or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name[:-2] not in ("hourly", "daily", "weekly", "monthly", "yearly"):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            newest = mtime if newest is None else max(newest, mtime)
    if newest is None:
        return None
    return datetime.fromtimestamp(newest, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
