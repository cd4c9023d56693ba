"""The btrfs engine's accounts: incoming/ a subvolume in its own qgroup, its figures.

Experimental: docs/btrfs.md has the spike behind every choice. Per
account, ``incoming/`` is a subvolume; the level-1 qgroup ``1/<its id>``
holds it, every snapshot of it (:mod:`provbackup.engines.btrfs_snapshot`)
and any subvolume a customer makes inside it, limited to ``sstQuota``.
Deleting an account's subvolumes is :mod:`provbackup.work.subvolumes`
(every removal needs it, whatever the engine).
"""

from __future__ import annotations

import contextlib
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from provbackup.errors import (
    RETURN_FILESYSTEM,
    ConfigError,
    EntryError,
    ProvbackupError,
    WorkError,
)
from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.safe import (
    OpenDirectory,
    lstat_entry,
    open_directory,
    open_root,
    remove_non_directory,
    remove_tree,
)
from provbackup.work.subvolumes import (
    INCOMING,
    account_qgroup,
    nested_subvolumes,
    qgroup_text,
)
from provbackup.work.subvolumes import (  # the engine's deletion, shared with every removal
    delete_account_subvolumes as delete_account_subvolumes,
)

logger = logging.getLogger(__name__)

MAX_NESTED_SUBVOLUMES = 16  # customer-made, inside incoming/ (docs/btrfs.md, hazard 5)


@dataclass(frozen=True)
class Filesystem:
    """The backup root's btrfs: its UUID (sysfs name) and quota mode (qgroup, squota)."""

    uuid: str
    quota_mode: str


def check_backup_root(root: Path) -> Filesystem:
    """Check that ``root`` is on btrfs with quotas enabled; return what was found.

    Raises ConfigError (exit 78) naming the fix otherwise, WorkError when
    the root is missing.
    """
    with open_root(root) as directory:
        if not kernel.is_btrfs(directory.fd):
            raise ConfigError(
                f"[backup] engine = btrfs: the backup root {root} is not on a btrfs filesystem"
            )
        uuid = kernel.fsid(directory.fd)
    enabled, mode, inconsistent = kernel.quota_state(uuid)
    if not enabled:
        raise ConfigError(
            f"[backup] engine = btrfs: quotas are not enabled on {root}'s filesystem "
            f"(btrfs quota enable {root}; docs/btrfs.md says which mode)"
        )
    if inconsistent:
        logger.warning(
            "%s: the btrfs qgroup figures are marked inconsistent: usage figures are off "
            "until `btrfs quota rescan %s` finished",
            root, root,
        )  # fmt: skip
    return Filesystem(uuid, mode)


def filesystem_findings(root: Path) -> tuple[list[str], list[str], list[str]]:
    """Return (problems, warnings, notes) about ``root``'s btrfs for ``check``; never raises.

    A root off btrfs or without quotas is a problem (every snapshot run
    exits 78); qgroup figures marked inconsistent are a warning (usage
    figures are wrong until ``btrfs quota rescan``); the note names the
    quota feature found: simple quotas (kernel >= 6.7) or full qgroups.
    """
    try:
        with open_root(root) as directory:
            if not kernel.is_btrfs(directory.fd):
                return [f"btrfs engine: {root} is not on btrfs"], [], []
            uuid = kernel.fsid(directory.fd)
    except (OSError, ProvbackupError, EntryError) as error:
        return [f"btrfs engine: {error}"], [], []
    enabled, mode, inconsistent = kernel.quota_state(uuid)
    if not enabled:
        return [f"btrfs engine: quotas are not enabled on {root}"], [], []
    feature = {"squota": "simple quotas (squota)", "qgroup": "full qgroups"}.get(mode, mode)
    notes = [f"btrfs engine: {feature}"]
    if inconsistent:
        return [], [f"btrfs qgroup figures inconsistent (btrfs quota rescan {root})"], notes
    return [], [], notes


def ensure_incoming(home: OpenDirectory, steps: list[str]) -> None:
    """Make ``incoming/`` in the open home a subvolume in its own level-1 qgroup.

    Idempotent; a run killed between the calls is completed by the next.
    Owner and mode are the caller's (as for any directory). Raises
    WorkError for a plain ``incoming/`` directory (made by the rsnapshot
    engine: its data cannot be moved into a subvolume by a rename).
    """
    status = lstat_entry(home, INCOMING)
    if status is None:
        kernel.create_subvolume(home.fd, INCOMING)
        steps.append(f"created subvolume {home.path / INCOMING}")
    elif stat.S_ISDIR(status.st_mode) and not kernel.is_subvolume_root(status):
        raise WorkError(
            f"{home.path / INCOMING}: a plain directory, not a btrfs subvolume "
            "([backup] engine = btrfs; docs/btrfs.md says how to convert an account)",
            return_value=RETURN_FILESYSTEM,
        )
    with open_directory(home, INCOMING) as incoming:
        member = kernel.qgroup_id(0, kernel.subvolume_id(incoming.fd))
        qgroup = account_qgroup(incoming)
        # qgroup calls go through home (outside the account's qgroup): a full
        # account refuses even a limit change made through its own subvolume (EDQUOT).
        if kernel.create_qgroup(home.fd, qgroup):
            steps.append(f"created qgroup {qgroup_text(qgroup)}")
        if kernel.assign_qgroup(home.fd, member, qgroup):
            steps.append(f"qgroup {qgroup_text(member)} in {qgroup_text(qgroup)}")


def set_limit(home: OpenDirectory, quota_bytes: int | None) -> str:
    """Limit the account's qgroup to ``quota_bytes`` (None: no limit); return the step."""
    with open_directory(home, INCOMING) as incoming:
        qgroup = account_qgroup(incoming)
        kernel.limit_qgroup(home.fd, qgroup, quota_bytes)
    limit = "none" if quota_bytes is None else f"{quota_bytes} bytes"
    return f"qgroup {qgroup_text(qgroup)} limit {limit}"


def usage(home: OpenDirectory) -> tuple[int, int]:
    """Return (backup, snapshot) bytes of the account from its qgroups, walking nothing.

    backup is what ``incoming/`` references; snapshot what the account's
    qgroup references beyond it (snapshots, subvolumes made inside
    incoming/), shared extents counted once. Under simple quotas extents
    are charged to the subvolume that wrote them: backup then includes
    what only snapshots still hold (docs/btrfs.md).
    """
    with open_directory(home, INCOMING) as incoming:
        number = kernel.subvolume_id(incoming.fd)
        uuid = kernel.fsid(incoming.fd)
    backup = kernel.read_qgroup(uuid, kernel.qgroup_id(0, number), "referenced")
    total = kernel.read_qgroup(uuid, kernel.qgroup_id(1, number), "referenced")
    return backup, max(total - backup, 0)


def delete_snapshot(parent: OpenDirectory, name: str) -> None:
    """Delete the snapshot ``name`` of the open directory (a plain directory is removed)."""
    status = lstat_entry(parent, name)
    if status is None:
        return
    if stat.S_ISDIR(status.st_mode) and kernel.is_subvolume_root(status):
        kernel.delete_subvolume(parent.fd, name)
    elif stat.S_ISDIR(status.st_mode):
        remove_tree(parent, name)
    else:
        remove_non_directory(parent, name)


def adopt_nested(home: OpenDirectory, incoming: OpenDirectory, qgroup: int) -> list[str]:
    """Count subvolumes a customer made inside incoming/ in the account's qgroup.

    Returns the steps; each one found is logged as a warning: its files are
    in the quota from now on, but not in the snapshots (a snapshot stops at
    a subvolume boundary). Raises WorkError, having looked no further and
    changed nothing, when there are more than :data:`MAX_NESTED_SUBVOLUMES`.
    """
    nested = nested_subvolumes(incoming, most=MAX_NESTED_SUBVOLUMES + 1)
    if len(nested) > MAX_NESTED_SUBVOLUMES:
        raise WorkError(
            f"{incoming.path}: more than {MAX_NESTED_SUBVOLUMES} subvolumes made inside "
            f"incoming/ (counting stopped at {len(nested)}): no snapshot, existing snapshots "
            "kept; delete them as root (btrfs subvolume delete; docs/btrfs.md)",
            return_value=RETURN_FILESYSTEM,
        )
    steps: list[str] = []
    for number, path in nested:
        if kernel.assign_qgroup(home.fd, kernel.qgroup_id(0, number), qgroup):
            steps.append(f"counted subvolume {incoming.path / path} in {qgroup_text(qgroup)}")
        logger.warning(
            "%s: a subvolume made inside incoming/ (id %d): counted in the quota, "
            "its files are not in the snapshots",
            incoming.path / path, number,
        )  # fmt: skip
    return steps


def describe_account(root: Path, home: Path) -> str:
    """Say, for ``show``, what incoming/ of ``home`` is: subvolume, qgroup, limit, figures.

    Reached from ``root`` one component at a time without following a
    symlink; never raises (a problem is the answer).
    """
    try:
        with contextlib.ExitStack() as stack:
            directory = stack.enter_context(open_root(root))
            for name in home.relative_to(root).parts:
                directory = stack.enter_context(open_directory(directory, name))
            status = lstat_entry(directory, INCOMING)
            if status is None:
                return "incoming/ missing"
            if not kernel.is_subvolume_root(status):
                return "incoming/ is a plain directory, not a subvolume"
            incoming = stack.enter_context(open_directory(directory, INCOMING))
            number = kernel.subvolume_id(incoming.fd)
            uuid = kernel.fsid(incoming.fd)
            qgroup = kernel.qgroup_id(1, number)
            figures = {
                field: kernel.read_qgroup(uuid, qgroup, field)
                for field in ("referenced", "max_referenced", "limit_flags")
            }
    except (OSError, ProvbackupError, EntryError, ValueError) as error:
        return f"unknown: {error}"
    limit = f"{figures['max_referenced']} bytes" if figures["limit_flags"] & 1 else "none"
    return (
        f"incoming/ subvolume {number}, qgroup {qgroup_text(qgroup)}: "
        f"{figures['referenced']} bytes referenced, limit {limit}"
    )
