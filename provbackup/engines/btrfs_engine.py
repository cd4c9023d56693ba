"""The btrfs engine (experimental): subvolumes, read-only snapshots, qgroup quotas.

The operations of :class:`provbackup.engines.base.Engine` on top of
:mod:`provbackup.engines.btrfs` (incoming/ subvolume, qgroup, figures) and
:mod:`provbackup.engines.btrfs_snapshot` (the staged, read-only, rotated
snapshot); docs/btrfs.md says why each step is as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provbackup.config import Config
from provbackup.engines import btrfs, btrfs_snapshot
from provbackup.engines.base import Engine, SnapshotTask
from provbackup.model import Account, Verb
from provbackup.paths import AccountPaths
from provbackup.plan import AccountPlan
from provbackup.work.backuptime import fix_backup_time
from provbackup.work.safe import OpenDirectory
from provbackup.work.usage import Usage


class BtrfsEngine:
    """The btrfs engine (:class:`provbackup.engines.base.Engine`)."""

    name = "btrfs"
    title = "btrfs (experimental)"

    def check_root(self, root: Path) -> None:
        """The root on btrfs with quotas enabled (:func:`.btrfs.check_backup_root`)."""
        btrfs.check_backup_root(root)

    def check_tools(self, config: Config) -> None:
        """Nothing: the snapshots are kernel calls."""

    def findings(self, root: Path) -> tuple[list[str], list[str], list[str]]:
        """Off btrfs, quotas off (problems); figures inconsistent (a warning); the quota mode."""
        return btrfs.filesystem_findings(root)

    def plan_quota(
        self, account: Account, verb: Verb, quota_bytes: int | None, config: Config
    ) -> tuple[tuple[str, ...] | None, str]:
        """No command: the qgroup limit, set by :meth:`quota`."""
        return None, _qgroup_note(verb, quota_bytes)

    def describe(self, paths: AccountPaths) -> list[str]:
        """incoming/ a subvolume in its own qgroup."""
        return [
            f"{paths.incoming} a btrfs subvolume in its own qgroup 1/<subvolume id> "
            "([backup] engine = btrfs)"
        ]

    def create(self, home: OpenDirectory, steps: list[str]) -> None:
        """incoming/ a subvolume in its own level-1 qgroup (:func:`.btrfs.ensure_incoming`)."""
        btrfs.ensure_incoming(home, steps)

    def quota(self, plan: AccountPlan, home: OpenDirectory, timeout: float) -> str:
        """Limit the account's qgroup to sstQuota (none without one)."""
        return btrfs.set_limit(home, plan.account.quota_bytes)

    def delete(self, plan: AccountPlan, timeout: float) -> str:
        """Nothing to run: the qgroup goes with the account's subvolumes."""
        return plan.quota_note

    def would(self, task: SnapshotTask) -> str:
        """A read-only snapshot, rotated."""
        return f"btrfs: read-only {task.interval}.0, rotated as rsnapshot does"

    def snapshot(self, task: SnapshotTask) -> list[str]:
        """Staged, backupTime fixed, frozen read-only, rotated (:mod:`.btrfs_snapshot`)."""
        moment = task.moment
        return btrfs_snapshot.take_snapshot(
            task.account, task.home, task.conf.retain, task.interval, moment,
            lambda staged: fix_backup_time(staged, moment),
        )  # fmt: skip

    def usage(self, home: OpenDirectory) -> Usage:
        """From the account's qgroups, walking nothing (:func:`.btrfs.usage`)."""
        return Usage(*btrfs.usage(home))

    def inspect(self, paths: AccountPaths) -> dict[str, Any]:
        """incoming/'s subvolume, qgroup, limit and figures."""
        return {"btrfs": btrfs.describe_account(paths.root, paths.home)}


def _qgroup_note(verb: Verb, quota_bytes: int | None) -> str:
    if verb is Verb.DELETE:
        return "quota: the account's btrfs qgroup goes with its subvolumes"
    if quota_bytes is None:
        return "quota: btrfs qgroup of incoming/ and its snapshots, no limit (no sstQuota)"
    return f"quota: btrfs qgroup of incoming/ and its snapshots limited to {quota_bytes} bytes"


ENGINE: Engine = BtrfsEngine()
