"""Subvolumes in an account's tree: found and deleted by id before the tree is removed.

Whatever ``[backup] engine`` says, an account directory on btrfs may hold
subvolumes (the btrfs engine's ``incoming/`` and read-only snapshots, or a
subvolume a customer made): a tree with read-only snapshots cannot be
emptied file by file (EROFS), so every removal of an account (a delete, the
quarantine purge) deletes them first. Below both engines, like
:mod:`provbackup.work.safe`; the kernel calls are :mod:`provbackup.work.btrfs_ioctl`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.safe import OpenDirectory, lstat_entry, open_directory

logger = logging.getLogger(__name__)

STAGING_DIRECTORY = "snapshot-staging"  # in the account directory, root only
INCOMING = "incoming"
SNAPSHOTS = ".snapshots"
MAX_DELETE_ATTEMPTS = 3


def qgroup_text(qgroup: int) -> str:
    """Return ``level/id`` for a qgroup id."""
    return f"{qgroup >> 48}/{qgroup & ((1 << 48) - 1)}"


def account_qgroup(incoming: OpenDirectory) -> int:
    """Return the account's qgroup: ``1/<id of its incoming/ subvolume>``."""
    return kernel.qgroup_id(1, kernel.subvolume_id(incoming.fd))


def _delete_if_subvolume(parent: OpenDirectory, name: str, steps: list[str]) -> None:
    """Delete ``name`` when it is a subvolume; anything else is left to the tree remover.

    The tree remover keeps ``[delete] time_budget``; plain snapshots of the
    rsnapshot engine on a btrfs filesystem are its work, not this one's.
    """
    status = lstat_entry(parent, name)
    if status is not None and stat.S_ISDIR(status.st_mode) and kernel.is_subvolume_root(status):
        kernel.delete_subvolume(parent.fd, name)
        steps.append(f"deleted subvolume {parent.path / name}")


def nested_subvolumes(incoming: OpenDirectory, most: int | None = None) -> list[tuple[int, str]]:
    """Return (id, path below incoming/) of every subvolume inside it, parents first.

    Found in the root tree by id, breadth first: no directory a customer
    controls is opened or walked. With ``most``, stops once that many are
    found (the search then costs at most that many lookups).
    """
    found: list[tuple[int, str]] = []
    queue = [(kernel.subvolume_id(incoming.fd), "")]
    while queue and (most is None or len(found) < most):
        parent, prefix = queue.pop(0)
        left = None if most is None else most - len(found)
        for child in kernel.child_subvolumes(incoming.fd, parent, left):
            where = kernel.directory_path(incoming.fd, parent, child.directory_inode)
            path = f"{prefix}{where}{child.name}"
            found.append((child.subvolume, path))
            queue.append((child.subvolume, f"{path}/"))
    return found


def delete_incoming(home: OpenDirectory) -> list[str]:
    """Delete ``incoming/`` of the open home and every subvolume inside it, deepest first.

    By id, never by a path a customer could have swapped; retried when a
    customer still logged in makes a new subvolume meanwhile. Returns the
    steps; a missing incoming/ is nothing to do.
    """
    steps: list[str] = []
    status = lstat_entry(home, INCOMING)
    if status is None or not (stat.S_ISDIR(status.st_mode) and kernel.is_subvolume_root(status)):
        return steps
    for attempt in range(MAX_DELETE_ATTEMPTS):
        with open_directory(home, INCOMING) as incoming:
            nested = nested_subvolumes(incoming)
            for number, path in reversed(nested):
                with contextlib.suppress(FileNotFoundError):
                    kernel.delete_subvolume_by_id(home.fd, number)
                steps.append(f"deleted subvolume {incoming.path / path}")
        try:
            kernel.delete_subvolume(home.fd, INCOMING)
        except OSError as error:
            if error.errno != errno.ENOTEMPTY or attempt == MAX_DELETE_ATTEMPTS - 1:
                raise
            continue
        steps.append(f"deleted subvolume {home.path / INCOMING}")
        break
    return steps


def remove_account_subvolumes(account: OpenDirectory, uid: str) -> list[str]:
    """On btrfs, delete the subvolumes of the open account directory (see below); else nothing.

    Called before a removal whatever the engine: a tree with read-only
    snapshots cannot be emptied file by file (EROFS).
    """
    if not kernel.is_btrfs(account.fd):
        return []
    return delete_account_subvolumes(account, uid)


def delete_account_subvolumes(account: OpenDirectory, uid: str) -> list[str]:
    """Delete every subvolume of the open account directory (before removing the rest).

    Staged snapshots, ``chroot/home/<uid>/.snapshots/*`` and ``incoming/``
    (with what a customer made inside). Reached one component at a time
    without following a symlink; the account's qgroup is destroyed when
    the kernel lets it (it may still hold subvolumes being cleaned up).
    Returns the steps.
    """
    steps: list[str] = []
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(FileNotFoundError):
            staging = stack.enter_context(open_directory(account, STAGING_DIRECTORY))
            for name in sorted(os.listdir(staging.fd)):
                _delete_if_subvolume(staging, name, steps)
        try:
            home = account
            for name in ("chroot", "home", uid):
                home = stack.enter_context(open_directory(home, name))
        except FileNotFoundError:
            return steps
        with contextlib.suppress(FileNotFoundError):
            snapshots = stack.enter_context(open_directory(home, SNAPSHOTS))
            for name in sorted(os.listdir(snapshots.fd)):
                _delete_if_subvolume(snapshots, name, steps)
        qgroup = None
        with contextlib.suppress(OSError), open_directory(home, INCOMING) as incoming:
            qgroup = account_qgroup(incoming)
        steps += delete_incoming(home)
        if qgroup is not None:
            try:
                kernel.destroy_qgroup(account.fd, qgroup)
                steps.append(f"destroyed qgroup {qgroup_text(qgroup)}")
            except OSError as error:
                logger.debug("qgroup %s kept: %s", qgroup_text(qgroup), error.strerror)
    return steps
