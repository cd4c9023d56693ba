"""An rsnapshot engine account moved to the btrfs engine's layout, crash-safe.

The old layout (``H`` = the account's home): ``H/incoming`` a plain
directory, ``H/.snapshots/<interval>.N`` plain directories (rsnapshot's,
hard-linked to each other). The new one is the btrfs engine's
(docs/btrfs.md): ``H/incoming`` a subvolume in its own level-1 qgroup
``1/<id>``, limited to the quota, each snapshot a read-only subvolume in
that qgroup, its root root:gidNumber 0750 with the old one's time.

Everything new is built in ``A/engine-migration/home`` (``A`` the account
directory; the staging directory is root:root 0700, outside the jail),
the data shared with the old trees by reflink
(:func:`provbackup.work.treecopy.copy_tree`). One ``renameat2``
(``RENAME_EXCHANGE``) then swaps that home with ``H``: before it the old
layout is the account's, after it the new one is, and nothing in between.
The old home, now in the staging directory, is removed afterwards. What
``H/incoming`` is tells which side of the swap an account is on, so a run
killed anywhere is finished by the next one: before the swap the staged
build is discarded and made again; after it, the old tree is removed. The
``record`` file in the staging directory says which step was reached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provbackup.engines.btrfs import delete_snapshot, ensure_incoming, set_limit
from provbackup.engines.rsnapshot_layout import PENDING_FILE, snapshot_names
from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.model import ROOT_ID
from provbackup.paths import RSNAPSHOT_CONF, AccountPaths
from provbackup.plan import HOME_MODE, INACTIVE_INCOMING_MODE, SNAPSHOTS_MODE, USER_DIRECTORY_MODE
from provbackup.work import btrfs_ioctl as kernel
from provbackup.work.accountconf import NEW_DESTINATION, read_conf
from provbackup.work.safe import (
    OpenDirectory,
    ensure_directory,
    lstat_entry,
    open_directory,
    open_root,
    remove_tree,
    replace_file,
)
from provbackup.work.subvolumes import INCOMING, SNAPSHOTS, account_qgroup, qgroup_text
from provbackup.work.treecopy import CopyCount, copy_tree, exchange

logger = logging.getLogger(__name__)

MIGRATION_DIRECTORY = "engine-migration"  # in the account directory, root only
STAGED_HOME = "home"  # the new home while it is built; the old one after the swap
RECORD = "record"
STAGING_MODE = 0o700
SNAPSHOT_ROOT_MODE = 0o750
PLAIN, SUBVOLUME, MISSING = "rsnapshot", "btrfs", "missing"


@dataclass(frozen=True)
class Owner:
    """Who the account is, from its entry (never from the tree): IDs, active, quota."""

    uid_number: int
    gid_number: int
    active: bool
    quota_bytes: int | None


@dataclass
class Survey:
    """What an account looks like on disk: its layout, snapshots, an unfinished migration."""

    layout: str
    snapshots: list[str] = field(default_factory=list)
    unfinished: str | None = None  # the record's step, when a migration was interrupted


@contextlib.contextmanager
def _opened(paths: AccountPaths) -> Iterator[tuple[OpenDirectory, OpenDirectory, OpenDirectory]]:
    """Yield the open account directory, ``chroot/home`` and the home, never following a link."""
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(open_root(paths.root))
        for part in paths.account.relative_to(paths.root).parts:
            directory = stack.enter_context(open_directory(directory, part))
        account = directory
        homes = stack.enter_context(open_directory(account, "chroot"))
        homes = stack.enter_context(open_directory(homes, "home"))
        home = stack.enter_context(open_directory(homes, paths.home.name))
        yield account, homes, home


def layout_of(home: OpenDirectory) -> str:
    """Return which engine's layout the open home is in: ``rsnapshot``, ``btrfs`` or ``missing``."""
    status = lstat_entry(home, INCOMING)
    if status is None or not stat.S_ISDIR(status.st_mode):
        return MISSING
    # inode 256 is a subvolume's root only on btrfs (elsewhere it is any directory)
    return SUBVOLUME if kernel.is_subvolume_root(status) and kernel.is_btrfs(home.fd) else PLAIN


def survey(paths: AccountPaths) -> Survey:
    """Look at an account without changing anything (``--dry-run``); raises OSError, WorkError."""
    with _opened(paths) as (account, _homes, home):
        found = Survey(layout_of(home))
        with contextlib.suppress(FileNotFoundError), open_directory(home, SNAPSHOTS) as snapshots:
            found.snapshots = [name for _i, _n, name in snapshot_names(snapshots)]
        found.unfinished = _read_step(account)
    return found


def migrate(paths: AccountPaths, owner: Owner, release: Callable[[], str]) -> list[str]:
    """Move one account from the rsnapshot engine's layout to the btrfs engine's.

    Takes its paths, its :class:`Owner` (from the entry) and ``release``,
    called once the new layout is in place to release the old engine's
    quota (returns its step). The caller holds the account lock. Returns
    the steps; an account already in the btrfs layout returns none.
    Raises WorkError (an account without incoming/, a mount point in its
    tree), OSError.
    """
    steps: list[str] = []
    with _opened(paths) as (account, homes, home):
        layout = layout_of(home)
        if layout == MISSING:
            raise WorkError(f"{paths.incoming}: missing or not a directory: nothing to migrate",
                            return_value=RETURN_FILESYSTEM)  # fmt: skip
        if layout == SUBVOLUME and lstat_entry(account, MIGRATION_DIRECTORY) is None:
            return steps
        if layout == PLAIN:
            _first_release_layout_done(account, paths)
        staging = ensure_directory(
            account, MIGRATION_DIRECTORY, ROOT_ID, ROOT_ID, STAGING_MODE, steps
        )
        with staging:
            if layout == PLAIN:
                steps += discard_build(staging)
                _write_step(staging, "building")
                _build(home, staging, owner, steps)
                os.fsync(staging.fd)
                exchange(homes, paths.home.name, staging, STAGED_HOME)
                os.fsync(homes.fd)
                steps.append(f"swapped in the new home {paths.home} (btrfs layout)")
                _write_step(staging, "switched")
            steps += _finish(staging, release)
        remove_directory(account, MIGRATION_DIRECTORY)
    return steps


def _first_release_layout_done(account: OpenDirectory, paths: AccountPaths) -> None:
    """Refuse snapshots still in the first release's layout (``daily.N/incoming/<host>``)."""
    old = lstat_entry(account, PENDING_FILE) is not None
    if not old and lstat_entry(account, RSNAPSHOT_CONF) is not None:
        old = read_conf(account, paths).destination != NEW_DESTINATION
    if old:
        raise WorkError(
            f"{paths.account}: snapshots still in the first release's layout: run "
            "provbackup snapshot with [backup] engine = rsnapshot once (it moves them), then again",
            return_value=RETURN_FILESYSTEM,
        )


def _build(home: OpenDirectory, staging: OpenDirectory, owner: Owner, steps: list[str]) -> None:
    """Build the new home in the staging directory from the old one (see the module docstring)."""
    gid = owner.gid_number
    with contextlib.ExitStack() as stack:
        new = stack.enter_context(
            ensure_directory(staging, STAGED_HOME, ROOT_ID, gid, HOME_MODE, [])
        )
        created: list[str] = []
        ensure_incoming(new, created)
        incoming = stack.enter_context(open_directory(new, INCOMING))
        qgroup = account_qgroup(incoming)
        steps.append(f"staged incoming/ subvolume in qgroup {qgroup_text(qgroup)}")
        snapshots = stack.enter_context(
            ensure_directory(new, SNAPSHOTS, ROOT_ID, gid, SNAPSHOTS_MODE, [])
        )
        total = CopyCount()
        with contextlib.suppress(FileNotFoundError), open_directory(home, SNAPSHOTS) as old:
            for _interval, _number, name in snapshot_names(old):
                with open_directory(old, name) as source:
                    total.add(_freeze_copy(source, snapshots, name, qgroup, owner))
                steps.append(f"snapshot {name}: a read-only subvolume in {qgroup_text(qgroup)}")
        with open_directory(home, INCOMING) as old_incoming:
            count, _top = copy_tree(old_incoming, incoming, owner.uid_number, gid)
        total.add(count)
        if owner.active:
            os.fchown(incoming.fd, owner.uid_number, gid)
            os.fchmod(incoming.fd, USER_DIRECTORY_MODE)
        else:
            os.fchown(incoming.fd, ROOT_ID, gid)
            os.fchmod(incoming.fd, INACTIVE_INCOMING_MODE)
        for name in sorted(os.listdir(home.fd)):
            if name in (INCOMING, SNAPSHOTS):
                continue
            total.add(_copy_other(home, new, name, owner))
        steps.append(f"copied {total.text()}")
        steps.append(set_limit(new, owner.quota_bytes))


def _freeze_copy(
    source: OpenDirectory, snapshots: OpenDirectory, name: str, qgroup: int, owner: Owner
) -> CopyCount:
    """Copy one old snapshot into a new subvolume ``name`` in the account's qgroup, read-only.

    Built in place and frozen by the flag, not snapshotted: while the old
    trees share its extents, a snapshot into the qgroup would mark every
    qgroup figure inconsistent (the kernel's quick inherit needs a qgroup
    holding only its own extents); a new subvolume and the flag do not.
    """
    if lstat_entry(snapshots, name) is not None:
        delete_snapshot(snapshots, name)  # unfinished by a killed run (not read-only yet)
    kernel.create_subvolume(snapshots.fd, name, qgroups=(qgroup,))
    with open_directory(snapshots, name) as staged:
        count, top = copy_tree(source, staged, owner.uid_number, owner.gid_number)
        os.fchown(staged.fd, ROOT_ID, owner.gid_number)
        os.fchmod(staged.fd, SNAPSHOT_ROOT_MODE)
        os.utime(staged.fd, ns=(top.st_atime_ns, top.st_mtime_ns))
        os.fsync(staged.fd)
        kernel.set_read_only(staged.fd)
    return count


def _copy_other(home: OpenDirectory, new: OpenDirectory, name: str, owner: Owner) -> CopyCount:
    """Copy an entry of the old home other than incoming/ and .snapshots (.ssh/) into the new."""
    status = lstat_entry(home, name)
    if status is None or not stat.S_ISDIR(status.st_mode):
        logger.warning("%s: not a directory: not carried into the btrfs layout", home.path / name)
        return CopyCount(left_out=1)
    uid, gid = owner.uid_number, owner.gid_number
    with (
        open_directory(home, name) as source,
        ensure_directory(new, name, uid, gid, 0o700, []) as copy,
    ):
        count, _top = copy_tree(source, copy, uid, gid)
        os.fchmod(copy.fd, stat.S_IMODE(status.st_mode) & 0o1777)
    return count


def _finish(staging: OpenDirectory, release: Callable[[], str]) -> list[str]:
    """After the swap: remove the old home, release the old quota, drop the record."""
    steps: list[str] = []
    if lstat_entry(staging, STAGED_HOME) is not None:
        remove_tree(staging, STAGED_HOME)
        steps.append("removed the old rsnapshot layout")
    steps.append(release())
    _empty(staging)
    return steps


def discard_build(staging: OpenDirectory) -> list[str]:
    """Delete what an interrupted build left in the open staging directory (before the swap)."""
    steps: list[str] = []
    with contextlib.suppress(FileNotFoundError), open_directory(staging, STAGED_HOME) as home:
        with contextlib.suppress(FileNotFoundError), open_directory(home, SNAPSHOTS) as snapshots:
            for name in sorted(os.listdir(snapshots.fd)):
                delete_snapshot(snapshots, name)
        status = lstat_entry(home, INCOMING)
        if status is not None and kernel.is_subvolume_root(status):
            with open_directory(home, INCOMING) as incoming:
                qgroup = account_qgroup(incoming)
            kernel.delete_subvolume(home.fd, INCOMING)
            with contextlib.suppress(OSError):  # refused while the kernel still cleans it up
                kernel.destroy_qgroup(staging.fd, qgroup)
        steps.append(f"discarded the build of an interrupted migration in {staging.path}")
    _empty(staging)
    return steps


def _empty(staging: OpenDirectory) -> None:
    """Remove what is left in the staging directory: a plain tree, the record, temporaries.

    Listed through a descriptor of its own: a descriptor that has read a
    btrfs directory to its end lists nothing new, even after os.listdir.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=staging.fd)
    try:
        names = sorted(os.listdir(fd))
    finally:
        os.close(fd)
    for name in names:
        delete_snapshot(staging, name)


def remove_directory(parent: OpenDirectory, name: str) -> None:
    """Remove the empty directory ``name`` (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=parent.fd)


def _write_step(staging: OpenDirectory, step: str) -> None:
    moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = json.dumps({"step": step, "at": moment, "to": "btrfs"}).encode() + b"\n"
    replace_file(staging, RECORD, record, uid=ROOT_ID, gid=ROOT_ID, mode=0o600)


def _read_step(account: OpenDirectory) -> str | None:
    try:
        staging = open_directory(account, MIGRATION_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        with staging:
            fd = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging.fd)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
    except FileNotFoundError:
        return "finishing"
    try:
        step = json.loads(data).get("step")
    except (ValueError, AttributeError):
        return "unreadable record"
    return str(step) if step else "unknown"
