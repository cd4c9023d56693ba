"""The btrfs engine's snapshots: read-only, in constant time, rotated like rsnapshot's.

A snapshot is made in three kernel calls, whatever the number of files:

1. a writable snapshot of ``incoming/`` in ``A/snapshot-staging`` (root
   only, outside the jail), where its root directory becomes
   root:gidNumber 0750 (the owner of a subvolume's root may clear its
   read-only flag) and the ``fix`` callback replaces ``backupTime``;
2. the rotation, renames inside ``.snapshots/`` (a read-only subvolume can
   be renamed inside one directory, not moved into another: EROFS);
3. a read-only snapshot of the staged one as ``.snapshots/<interval>.0``;
   the staged one is deleted.

Every snapshot joins the account's qgroup at creation, from a source that
is in exactly that qgroup, so the kernel keeps the figures exact without a
rescan. A qgroup limit binds root too: when a full account refuses the
staging work (EDQUOT), the limit is raised by :data:`HEADROOM` above what
the account holds, never lifted, for that work only (at most
:data:`MAX_RAISES` times), the old limit written first to
``snapshot-staging/lifted-limit`` so that a run killed meanwhile has it put
back by the next one. The customer, writing meanwhile, can use at most
that headroom, however long the work takes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime

from provbackup.config import INTERVALS
from provbackup.engines.btrfs import adopt_nested, delete_snapshot
from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    lstat_entry,
    open_directory,
    remove_non_directory,
    replace_file,
)
from provbackup.work.subvolumes import (
    INCOMING,
    SNAPSHOTS,
    STAGING_DIRECTORY,
    account_qgroup,
    qgroup_text,
)

logger = logging.getLogger(__name__)

STAGING_MODE = 0o700  # root:root
LIFTED_LIMIT = "lifted-limit"
SNAPSHOT_ROOT_MODE = 0o750  # root:gidNumber, like the rsnapshot engine's snapshots
# A full account's limit is raised by this much above what it holds while the runner
# changes its staged snapshot (root's few metadata blocks: 100 backupTime files took
# under 1 MiB on the test image), and at most MAX_RAISES times per step.
HEADROOM = 4 << 20
MAX_RAISES = 3

Fix = Callable[[OpenDirectory], list[str]]


def snapshot_names(snapshots: OpenDirectory, interval: str) -> dict[int, str]:
    """Return ``{N: "<interval>.N"}`` for the snapshots of ``interval`` in the open directory."""
    pattern = re.compile(rf"{re.escape(interval)}\.(\d{{1,6}})")
    found: dict[int, str] = {}
    for name in os.listdir(snapshots.fd):
        match = pattern.fullmatch(name)
        if match:
            found[int(match[1])] = name
    return found


def take_snapshot(
    account: OpenDirectory,
    home: OpenDirectory,
    retain: tuple[tuple[str, int], ...],
    interval: str,
    moment: datetime,
    fix: Fix,
) -> list[str]:
    """Make ``interval``'s snapshot of one account, with rsnapshot's rotation.

    ``account`` and ``home`` are the open account directory and home;
    ``retain`` the account's (interval, count) pairs, ``interval`` one of
    them; ``moment`` the snapshot's time (its root's mtime); ``fix`` is
    called on the staged snapshot before it is frozen (backupTime). The
    lowest retained interval snapshots ``incoming/``; a higher one takes the
    last of the next lower interval, when there is one (as rsnapshot does).
    Snapshots beyond the counts are deleted first. Returns the steps.
    Raises OSError, WorkError.
    """
    counts = dict(retain)
    steps: list[str] = []
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(
            ensure_directory(account, STAGING_DIRECTORY, 0, 0, STAGING_MODE, steps)
        )
        incoming = stack.enter_context(open_directory(home, INCOMING))
        snapshots = stack.enter_context(open_directory(home, SNAPSHOTS))
        qgroup = account_qgroup(incoming)
        steps += recover_staging(staging, incoming)
        steps += adopt_nested(home, incoming, qgroup)
        steps += prune(snapshots, retain)
        lower = [name for name in INTERVALS if name in counts and INTERVALS.index(name)
                 < INTERVALS.index(interval)]  # fmt: skip
        if not lower:
            _stage(
                incoming, staging, interval, qgroup, os.fstat(home.fd).st_gid, moment, fix, steps
            )
            _rotate(snapshots, interval, counts[interval], steps)
            target = f"{interval}.0"

            def freeze() -> None:
                with open_directory(staging, interval) as staged:
                    kernel.snapshot(
                        staged.fd, snapshots.fd, target, read_only=True, qgroups=(qgroup,)
                    )

            _even_when_full(staging, qgroup, freeze, steps)
            kernel.delete_subvolume(staging.fd, interval)
            steps.append(f"snapshot {snapshots.path / target} (read-only)")
        else:
            source = f"{lower[-1]}.{counts[lower[-1]] - 1}"
            if lstat_entry(snapshots, source) is None:
                steps.append(f"{snapshots.path / source} not there yet: no {interval} snapshot")
                return steps
            _rotate(snapshots, interval, counts[interval], steps)
            os.rename(source, f"{interval}.0", src_dir_fd=snapshots.fd, dst_dir_fd=snapshots.fd)
            steps.append(f"moved {source} to {interval}.0")
        os.fsync(snapshots.fd)
    return steps


def _stage(
    incoming: OpenDirectory,
    staging: OpenDirectory,
    interval: str,
    qgroup: int,
    gid: int,
    moment: datetime,
    fix: Fix,
    steps: list[str],
) -> None:
    def work() -> None:
        if lstat_entry(staging, interval) is None:
            kernel.snapshot(incoming.fd, staging.fd, interval, read_only=False, qgroups=(qgroup,))
        with open_directory(staging, interval) as staged:
            os.fchown(staged.fd, 0, gid)
            os.fchmod(staged.fd, SNAPSHOT_ROOT_MODE)
            steps.extend(fix(staged))
            stamp = int(moment.timestamp() * 1_000_000_000)
            os.utime(staged.fd, ns=(stamp, stamp))

    _even_when_full(staging, qgroup, work, steps)


def _even_when_full(
    staging: OpenDirectory, qgroup: int, work: Callable[[], None], steps: list[str]
) -> None:
    """Run ``work``; when the account's full qgroup refuses it (EDQUOT), raise the limit, retry.

    The limit is never lifted: it becomes :data:`HEADROOM` bytes above the
    larger of the old limit and what the account references now, at most
    :data:`MAX_RAISES` times (a customer writing meanwhile may take the
    headroom; each raise starts from what the account then holds). The old
    limit is written to the staging directory first (outside every account
    qgroup), so a run killed before putting it back has the next one do it
    (:func:`recover_staging`). Raises WorkError when :data:`MAX_RAISES`
    raises did not suffice (the customer kept writing), the EDQUOT itself
    when the qgroup has no limit to raise, any other OSError of ``work``.
    """
    try:
        work()
        return
    except OSError as error:
        if error.errno != errno.EDQUOT:
            raise
        refused = error
    fd = staging.fd  # outside the account's qgroup: a full one refuses even the limit call
    uuid = kernel.fsid(fd)
    if not kernel.read_qgroup(uuid, qgroup, "limit_flags") & 1:
        raise refused
    limit = kernel.read_qgroup(uuid, qgroup, "max_referenced")
    replace_file(staging, LIFTED_LIMIT, f"{limit}\n".encode(), uid=0, gid=0, mode=0o600)
    try:
        for raises in range(1, MAX_RAISES + 1):
            held = kernel.read_qgroup(uuid, qgroup, "referenced")
            kernel.limit_qgroup(fd, qgroup, max(limit, held) + HEADROOM)
            try:
                work()
                break
            except OSError as error:
                if error.errno != errno.EDQUOT:
                    raise
                if raises == MAX_RAISES:
                    raise WorkError(
                        f"{staging.path.parent}: account at its quota and still "
                        f"writing: the snapshot's own changes did not fit in {MAX_RAISES} raises "
                        f"of {HEADROOM} bytes; no snapshot this run, the limit is back",
                        return_value=RETURN_FILESYSTEM,
                    ) from error
        steps.append(
            f"account at its quota: limit of {qgroup_text(qgroup)} raised by {HEADROOM} bytes "
            f"for the snapshot's own changes ({raises}x), then put back"
        )
    finally:
        kernel.limit_qgroup(fd, qgroup, limit)
        remove_non_directory(staging, LIFTED_LIMIT)


def recover_staging(staging: OpenDirectory, incoming: OpenDirectory) -> list[str]:
    """Undo what a killed snapshot left in the open staging directory; return the steps.

    Puts back a qgroup limit it lifted, deletes staged subvolumes and removes
    anything else there (only root can write to it).
    """
    steps: list[str] = []
    try:
        limit_fd = os.open(LIFTED_LIMIT, OPEN_FILE_FLAGS, dir_fd=staging.fd)
    except FileNotFoundError:
        pass
    else:
        try:
            text = os.read(limit_fd, 64).decode("ascii", errors="replace").strip()
        finally:
            os.close(limit_fd)
        limit = int(text) if text.isdigit() else None
        qgroup = account_qgroup(incoming)
        kernel.limit_qgroup(staging.fd, qgroup, limit)
        remove_non_directory(staging, LIFTED_LIMIT)
        steps.append(f"put back the limit of {qgroup_text(qgroup)} lifted by a killed run: {text}")
    for name in sorted(os.listdir(staging.fd)):
        if lstat_entry(staging, name) is None:
            continue
        delete_snapshot(staging, name)
        steps.append(f"removed {staging.path / name} left by a killed run")
    return steps


def _rotate(snapshots: OpenDirectory, interval: str, count: int, steps: list[str]) -> None:
    """Make room for a new ``<interval>.0``: drop the last kept, shift the others up by one."""
    existing = snapshot_names(snapshots, interval)
    for index in sorted(existing):
        if index >= count - 1:
            delete_snapshot(snapshots, existing[index])
            steps.append(f"deleted {snapshots.path / existing[index]}")
    for index in range(count - 2, -1, -1):
        if index in existing:
            os.rename(
                existing[index], f"{interval}.{index + 1}",
                src_dir_fd=snapshots.fd, dst_dir_fd=snapshots.fd,
            )  # fmt: skip


def prune(snapshots: OpenDirectory, retain: tuple[tuple[str, int], ...]) -> list[str]:
    """Delete the snapshots ``retain`` no longer keeps (dropped intervals, beyond counts)."""
    counts = dict(retain)
    steps: list[str] = []
    for interval in INTERVALS:
        for index, name in sorted(snapshot_names(snapshots, interval).items()):
            if index >= counts.get(interval, 0):
                delete_snapshot(snapshots, name)
                steps.append(f"pruned {snapshots.path / name}")
    return steps
