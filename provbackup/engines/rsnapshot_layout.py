"""The rsnapshot engine's snapshot tree: the first release's layout, and pruning.

Everything is reached from the backup root through directory descriptors
opened with ``O_NOFOLLOW`` (:mod:`provbackup.work.safe`): nothing a customer
planted is followed. The pieces:

- :func:`migrate_layout` moves snapshots of the first release's layout
  (``daily.N/incoming/<host>``) up one level by rename, and upgrades the
  backup line of the configuration to ``./``.
- :func:`prune` removes snapshots a lowered retain count or a dropped
  interval no longer keeps, within a time budget; the next run goes on.

The account's configuration is read by :mod:`provbackup.work.accountconf`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat

from provbackup.config import INTERVALS
from provbackup.errors import UnsafePathError
from provbackup.model import ROOT_ID
from provbackup.paths import RSNAPSHOT_CONF, AccountPaths
from provbackup.plan import CONF_MODE
from provbackup.work.accountconf import (
    MAX_CONF_BYTES,
    NEW_DESTINATION,
    OLD_DESTINATION,
    AccountConf,
)
from provbackup.work.remove import Budget
from provbackup.work.safe import (
    OPEN_DIRECTORY_FLAGS,
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    lstat_entry,
    open_directory,
    remove_tree,
    replace_file,
)

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = re.compile(r"(?P<interval>hourly|daily|weekly|monthly|yearly)\.(?P<number>\d{1,4})")
MIGRATING_PREFIX = ".provbackup-migrating."
PRUNING_PREFIX = ".provbackup-pruning."
PRUNING_DIRECTORY = "snapshot-pruning"  # in the account directory, root only: what prune removes
# In the account directory: the old-layout snapshots a migration still has to move.
PENDING_FILE = "snapshot-layout-pending"


def snapshot_names(snapshots: OpenDirectory) -> list[tuple[str, int, str]]:
    """Return ``(interval, number, name)`` of every snapshot directory, not following links."""
    found = []
    with os.scandir(snapshots.fd) as entries:
        for entry in entries:
            match = SNAPSHOT_NAME.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False):
                found.append((match["interval"], int(match["number"]), entry.name))
    return sorted(found, key=lambda item: (INTERVALS.index(item[0]), item[1]))


def migrate_layout(
    account: OpenDirectory, home: OpenDirectory, conf: AccountConf, paths: AccountPaths
) -> tuple[AccountConf, list[str]]:
    """Bring an account from the first release's layout to ``./``; idempotent.

    While the configuration still says ``incoming/``, every snapshot holding
    exactly one directory ``incoming`` is of the old layout. Their names are
    first written to ``A/snapshot-layout-pending`` (so a run killed half-way
    never takes an already moved snapshot whose one client happens to be
    called ``incoming`` for an old one). Each snapshot's ``incoming`` is
    renamed to a temporary name beside it, its name taken off the list, the
    emptied snapshot removed and the temporary renamed to the snapshot's
    name (hard links untouched: nothing is copied; the snapshot's date
    kept). A killed run is finished by the next from the list and the
    temporary names. Then the backup line becomes ``./`` and the list goes.
    Returns the (new) configuration and the steps done.
    """
    steps: list[str] = []
    with open_directory(home, ".snapshots") as snapshots:
        finished = _finish_migrations(snapshots, steps)
        if conf.destination == NEW_DESTINATION:
            return conf, steps
        pending = _read_pending(account)
        if pending is None:
            pending = [name for _, _, name in snapshot_names(snapshots) if _is_old(snapshots, name)]
            _write_pending(account, pending)
        for name in list(pending):
            if name not in finished and _is_old(snapshots, name):
                _move_up(snapshots, name, account, [item for item in pending if item != name])
                steps.append(f"moved {snapshots.path / name}/incoming up one level")
            pending.remove(name)
        os.fsync(snapshots.fd)
    old_line = f"backup\t{paths.incoming}/\t{OLD_DESTINATION}"
    new_line = f"backup\t{paths.incoming}/\t{NEW_DESTINATION}"
    text = conf.text.replace(old_line, new_line)
    replace_file(
        account, RSNAPSHOT_CONF, text.encode("utf-8"), uid=ROOT_ID, gid=ROOT_ID, mode=CONF_MODE
    )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(PENDING_FILE, dir_fd=account.fd)
    steps.append(f"{paths.rsnapshot_conf}: backup destination incoming/ -> ./ (layout upgraded)")
    return AccountConf(retain=conf.retain, destination=NEW_DESTINATION, text=text), steps


def _is_old(snapshots: OpenDirectory, name: str) -> bool:
    """True when the snapshot ``name`` holds exactly one directory, ``incoming``."""
    try:
        with open_directory(snapshots, name) as snapshot:
            if os.listdir(snapshot.fd) != ["incoming"]:
                return False
            status = lstat_entry(snapshot, "incoming")
    except (FileNotFoundError, UnsafePathError):
        return False
    return status is not None and stat.S_ISDIR(status.st_mode)


def _move_up(snapshots: OpenDirectory, name: str, account: OpenDirectory, rest: list[str]) -> None:
    temporary = MIGRATING_PREFIX + name
    with open_directory(snapshots, name) as snapshot:
        # rsnapshot dated the snapshot by its directory's mtime: keep that date.
        times = os.fstat(snapshot.fd)
        os.rename("incoming", temporary, src_dir_fd=snapshot.fd, dst_dir_fd=snapshots.fd)
    _write_pending(account, rest)  # from here on the temporary name carries the state
    _finish_one(snapshots, temporary, name)
    os.utime(
        name, ns=(times.st_atime_ns, times.st_mtime_ns), dir_fd=snapshots.fd, follow_symlinks=False
    )


def _read_pending(account: OpenDirectory) -> list[str] | None:
    try:
        fd = os.open(PENDING_FILE, OPEN_FILE_FLAGS, dir_fd=account.fd)
    except FileNotFoundError:
        return None
    try:
        text = os.read(fd, MAX_CONF_BYTES).decode("ascii", errors="replace")
    finally:
        os.close(fd)
    return [name for name in text.split() if SNAPSHOT_NAME.fullmatch(name)]


def _write_pending(account: OpenDirectory, names: list[str]) -> None:
    content = "".join(f"{name}\n" for name in names).encode("ascii")
    replace_file(account, PENDING_FILE, content, uid=ROOT_ID, gid=ROOT_ID, mode=0o600)


def _finish_migrations(snapshots: OpenDirectory, steps: list[str]) -> set[str]:
    """Finish the moves a killed run left half done; return the snapshots finished."""
    finished = set()
    for name in os.listdir(snapshots.fd):
        if name.startswith(MIGRATING_PREFIX):
            target = name[len(MIGRATING_PREFIX) :]
            if SNAPSHOT_NAME.fullmatch(target):
                _finish_one(snapshots, name, target)
                finished.add(target)
                steps.append(f"finished moving {snapshots.path / target} up one level")
    return finished


def _finish_one(snapshots: OpenDirectory, temporary: str, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=snapshots.fd)  # the emptied snapshot; fails if not empty
    os.rename(temporary, name, src_dir_fd=snapshots.fd, dst_dir_fd=snapshots.fd)


def prune(
    account: OpenDirectory, home: OpenDirectory, conf: AccountConf, budget: Budget | None = None
) -> list[str]:
    """Remove the snapshots ``conf`` no longer keeps: ``<interval>.N`` with N >= its count.

    A dropped interval keeps none. Each is first moved by a rename into
    ``A/snapshot-pruning`` (root:root 0700, outside the jail), so neither
    rsnapshot nor the customer ever sees half of one (where that is another
    filesystem: renamed to ``.snapshots/.provbackup-pruning.<name>`` and
    made root:root 0700). It is removed without following a symlink within
    ``budget`` (``[delete] time_budget``; None: no limit); what the budget
    leaves waits there, and the next call removes it first. Returns the
    steps done (a spent budget is a step and a warning). Raises WorkError
    when a removal fails.
    """
    steps: list[str] = []
    budget = budget or Budget(None)
    counts = conf.counts
    left: list[str] = []
    with open_directory(home, ".snapshots") as snapshots:
        doomed = [(interval, name) for interval, number, name in snapshot_names(snapshots)
                  if number >= counts.get(interval, 0)]  # fmt: skip
        old = sorted(name for name in os.listdir(snapshots.fd) if name.startswith(PRUNING_PREFIX))
        if not doomed and not old and lstat_entry(account, PRUNING_DIRECTORY) is None:
            return steps
        with ensure_directory(account, PRUNING_DIRECTORY, ROOT_ID, ROOT_ID, 0o700, steps) as trash:
            for name in old:  # left in .snapshots by an earlier release (or across filesystems)
                _seal(snapshots, name)
            waiting = [(snapshots, name) for name in old]
            for parent, name in waiting + [(trash, name) for name in sorted(os.listdir(trash.fd))]:
                if not remove_tree(parent, name, budget):
                    left.append(str(parent.path / name))
            for interval, name in doomed:
                parent, temporary = _move_out(snapshots, trash, name)
                done = remove_tree(parent, temporary, budget)
                if not done:
                    left.append(str(parent.path / temporary))
                steps.append(
                    f"{'pruned' if done else 'pruning'} {snapshots.path / name} "
                    f"(retain {interval} {counts.get(interval, 0)})"
                )
        if left:
            step = (
                f"[delete] time_budget ({budget.seconds:g} s) spent pruning snapshots: "
                f"{', '.join(left)} left for the next run"
            )
            logger.warning("%s", step)
            steps.append(step)
        else:
            with contextlib.suppress(OSError):
                os.rmdir(PRUNING_DIRECTORY, dir_fd=account.fd)
    return steps


def _move_out(
    snapshots: OpenDirectory, trash: OpenDirectory, name: str
) -> tuple[OpenDirectory, str]:
    """Rename snapshot ``name`` into ``trash`` (across filesystems: in place, sealed); say where."""
    temporary = _free_name(trash, name)
    try:
        os.rename(name, temporary, src_dir_fd=snapshots.fd, dst_dir_fd=trash.fd)
        return trash, temporary
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    temporary = _free_name(snapshots, PRUNING_PREFIX + name)
    os.rename(name, temporary, src_dir_fd=snapshots.fd, dst_dir_fd=snapshots.fd)
    _seal(snapshots, temporary)
    return snapshots, temporary


def _free_name(parent: OpenDirectory, name: str) -> str:
    """``name``, or ``name.N`` where an unfinished removal holds it already."""
    free, number = name, 0
    while lstat_entry(parent, free) is not None:
        number += 1
        free = f"{name}.{number}"
    return free


def _seal(parent: OpenDirectory, name: str) -> None:
    """Make the directory ``name`` root:root 0700 (not followed; anything else is left)."""
    try:
        fd = os.open(name, OPEN_DIRECTORY_FLAGS | os.O_NONBLOCK, dir_fd=parent.fd)
    except OSError:
        return  # gone, or not a directory: remove_tree takes it as it is
    try:
        os.fchown(fd, ROOT_ID, ROOT_ID)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
