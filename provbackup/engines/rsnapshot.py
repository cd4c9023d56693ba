"""The rsnapshot engine: rsnapshot's hard-linked snapshots, the ``[quota] command``.

Per account, ``incoming/`` is a plain directory; a snapshot is ``rsnapshot
-c A/rsnapshot.conf INTERVAL`` (hard links to the previous one, after the
first release's layout is migrated and what the retain counts no longer
keep is pruned: :mod:`provbackup.engines.rsnapshot_layout`); the figures are
a walk (:mod:`provbackup.engines.rsnapshot_usage`); the quota is whatever
``[quota] command`` sets (setquota: a group quota on ``gidNumber``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from provbackup.config import Config
from provbackup.engines.base import Engine, SnapshotTask
from provbackup.engines.rsnapshot_layout import migrate_layout, prune
from provbackup.engines.rsnapshot_usage import measure
from provbackup.errors import RETURN_QUOTA, RETURN_RSNAPSHOT, ConfigError, WorkError
from provbackup.model import Account, Verb
from provbackup.paths import AccountPaths
from provbackup.plan import AccountPlan
from provbackup.work.backuptime import fix_backup_time
from provbackup.work.btrfs_ioctl import is_btrfs, is_subvolume_root
from provbackup.work.commands import run_command, tail
from provbackup.work.remove import Budget
from provbackup.work.rsnapshot import resolve_command
from provbackup.work.safe import OpenDirectory, lstat_entry, open_directory
from provbackup.work.usage import Usage

QUOTA_TIMEOUT = 120.0
# rsnapshot exits 2 after warnings (files that vanished while rsync copied them,
# a customer uploading meanwhile): the snapshot is there.
RSNAPSHOT_WARNINGS = 2


def set_quota(plan: AccountPlan, timeout: float = QUOTA_TIMEOUT) -> str:
    """Run the plan's quota command, if any.

    Returns a line for the step log (the plan's note when no command runs).
    Raises WorkError (RETURN_QUOTA) with the command's stderr tail when it
    exits non-zero, is missing, or is not over (with everything it started)
    after ``timeout`` seconds (``[quota] timeout``).
    """
    if plan.quota_argv is None:
        return plan.quota_note
    result = run_command(
        plan.quota_argv, timeout=timeout, what="quota command", return_value=RETURN_QUOTA
    )
    if result.returncode != 0:
        raise WorkError(
            f"quota command {plan.quota_argv[0]} {result.status_text()}: "
            f"{tail(result.stderr or result.stdout)}",
            return_value=RETURN_QUOTA,
        )
    return f"{plan.quota_note}: {' '.join(plan.quota_argv)}"


def inode_limit(quota_bytes: int, inodes_per_gib: int) -> int:
    """The number of files (inodes) a quota of ``quota_bytes`` allows, rounded up.

    0 for a quota of 0 (delete: no limit left) or a ratio of 0 (inode limits
    off); otherwise at least 1, so a small quota never means "unlimited".
    """
    return -(-quota_bytes * inodes_per_gib // 2**30)


def quota_command(
    account: Account, quota_bytes: int | None, config: Config
) -> tuple[tuple[str, ...] | None, str]:
    """Return the ``[quota] command`` argv for ``quota_bytes`` (None: none runs) and its note."""
    template = config.quota.command
    if template is None:
        return None, "quota: not set ([quota] command is empty)"
    if quota_bytes is None:
        return None, "quota: left unchanged (the entry has no sstQuota)"
    # Without [quota] filesystem the backup root is taken: it is normally the mount point.
    values = {
        "uid": account.uid,
        "uidnumber": str(account.uid_number),
        "gidnumber": str(account.gid_number),
        "quota_bytes": str(quota_bytes),
        "quota_kib": str(-(-quota_bytes // 1024)),
        "inode_limit": str(inode_limit(quota_bytes, config.quota.inodes_per_gib)),
        "filesystem": config.quota.filesystem or str(config.backup.root),
    }
    # The placeholders were checked when the configuration was loaded.
    argv = tuple(word.format(**values) for word in template)
    return argv, f"quota: set to {quota_bytes} bytes ({values['quota_kib']} KiB)"


class RsnapshotEngine:
    """The rsnapshot engine (:class:`provbackup.engines.base.Engine`)."""

    name = "rsnapshot"
    title = "rsnapshot"

    def check_root(self, root: Path) -> None:
        """Nothing beyond an openable root."""

    def check_tools(self, config: Config) -> None:
        """Raise ConfigError when ``[rsnapshot] command`` is not installed."""
        if resolve_command(config.rsnapshot) is None:
            raise ConfigError(
                f"{config.source}: [rsnapshot] command: {config.rsnapshot.command!r} not found"
            )

    def findings(self, root: Path) -> tuple[list[str], list[str], list[str]]:
        """Nothing to say about the root."""
        return [], [], []

    def plan_quota(
        self, account: Account, verb: Verb, quota_bytes: int | None, config: Config
    ) -> tuple[tuple[str, ...] | None, str]:
        """The ``[quota] command`` for ``quota_bytes`` (0 on delete)."""
        return quota_command(account, quota_bytes, config)

    def describe(self, paths: AccountPaths) -> list[str]:
        """Nothing beyond the plan's own lines."""
        return []

    def create(self, home: OpenDirectory, steps: list[str]) -> None:
        """Nothing: incoming/ is a plain directory, made by the work."""

    def quota(self, plan: AccountPlan, home: OpenDirectory, timeout: float) -> str:
        """Run the plan's quota command (:func:`set_quota`)."""
        return set_quota(plan, timeout)

    def delete(self, plan: AccountPlan, timeout: float) -> str:
        """Run the plan's quota command (the delete plan's sets 0: no limit left)."""
        return set_quota(plan, timeout)

    def would(self, task: SnapshotTask) -> str:
        """The rsnapshot command, and the layout migration when one is due."""
        return f"rsnapshot -c {task.paths.rsnapshot_conf} {task.interval}" + (
            "; move old-layout snapshots up one level" if task.conf.destination != "./" else ""
        )

    def snapshot(self, task: SnapshotTask) -> list[str]:
        """Layout migration, pruning, rsnapshot, backupTime of the new snapshot.

        Returns the steps. Raises WorkError (RETURN_RSNAPSHOT) when rsnapshot
        fails or is not installed.
        """
        interval, home = task.interval, task.home
        status = lstat_entry(home, "incoming")
        if status is not None and is_subvolume_root(status) and is_btrfs(home.fd):
            raise WorkError(
                f"{task.paths.incoming}: moved to the btrfs engine's layout (migrate-engine); "
                "not snapshotted with rsnapshot: set [backup] engine = btrfs",
                return_value=RETURN_RSNAPSHOT,
            )
        conf, steps = migrate_layout(task.account, home, task.conf, task.paths)
        steps += prune(task.account, home, conf, Budget(task.config.delete.time_budget))
        # A higher interval takes the last snapshot of the one before it in the file.
        # Before that one is there, rsnapshot 1.4 (Debian 12) rotated the interval
        # without a new .0 and 1.5 (Debian 13) refuses with exit 1: neither is run,
        # as with the btrfs engine.
        names = [name for name, _ in conf.retain]
        if names.index(interval) > 0:
            lower = names[names.index(interval) - 1]
            source = f"{lower}.{conf.counts[lower] - 1}"
            with open_directory(home, ".snapshots") as snapshots:
                if lstat_entry(snapshots, source) is None:
                    steps.append(f"{snapshots.path / source} not there yet: no {interval} snapshot")
                    return steps
        argv = resolve_command(task.config.rsnapshot)
        if argv is None:
            raise WorkError(
                f"[rsnapshot] command {task.config.rsnapshot.command!r} not found",
                return_value=RETURN_RSNAPSHOT,
            )
        command = run_command(
            [*argv, "-c", str(task.paths.rsnapshot_conf), interval],
            timeout=task.config.snapshot.timeout,
            what=f"rsnapshot {interval}",
            return_value=RETURN_RSNAPSHOT,
            merge_output=True,
        )
        if command.returncode not in (0, RSNAPSHOT_WARNINGS):
            raise WorkError(
                f"rsnapshot {interval} {command.status_text()}: {tail(command.stdout)}",
                return_value=RETURN_RSNAPSHOT,
            )
        if command.returncode == RSNAPSHOT_WARNINGS:
            steps.append(f"rsnapshot warned: {tail(command.stdout)}")
        if interval == conf.lowest:
            with open_directory(home, ".snapshots") as snapshots:
                steps += _fix_newest(snapshots, f"{interval}.0", task.moment)
        return steps

    def usage(self, home: OpenDirectory) -> Usage:
        """A walk of incoming/ and .snapshots/ (:mod:`provbackup.engines.rsnapshot_usage`)."""
        return measure(home)

    def inspect(self, paths: AccountPaths) -> dict[str, Any]:
        """Nothing beyond the work's view."""
        return {}


def _fix_newest(snapshots: OpenDirectory, name: str, moment: datetime) -> list[str]:
    try:
        with open_directory(snapshots, name) as snapshot:
            return fix_backup_time(snapshot, moment)
    except FileNotFoundError:
        return []


ENGINE: Engine = RsnapshotEngine()
