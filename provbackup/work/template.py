"""Copy the jail template (``[backup] jail_template``) into an account's jail.

The template is the operator's: its entries are copied with their owner,
group, mode and modification time; symlinks are copied as symlinks (never
followed), device nodes and FIFOs are recreated, sockets are skipped. A
template entry named ``home`` at its top is skipped: the homes are
provbackup's. Jail entries that are missing or differ (type, size,
modification time, owner, mode, link target) are replaced atomically;
entries the template lacks are left alone, nothing is deleted. Users cannot
write anywhere in the jail outside their home, so nothing replaced here is
theirs.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    OpenDirectory,
    ensure_directory,
    lstat_entry,
    open_directory,
    remove_stale_temporaries,
    replace_file,
    replace_special,
)

logger = logging.getLogger(__name__)

SKIPPED_AT_TOP = frozenset({"home"})


def copy_jail_template(template: Path, jail: OpenDirectory, steps: list[str]) -> int:
    """Bring the jail ``jail`` (open A/chroot) up to date with ``template``.

    Appends one summary line to ``steps``; returns how many entries were
    created or replaced. Raises WorkError when the template cannot be read
    or a jail entry's type conflicts with the template (a directory where
    the template has a file or the reverse); UnsafePathError for a symlink
    in the jail where the template has a directory.
    """
    try:
        fd = os.open(template, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise WorkError(
            f"[backup] jail_template {template}: {error.strerror}", return_value=RETURN_FILESYSTEM
        ) from None
    changes: list[str] = []
    with OpenDirectory(fd, template) as source:
        _copy_directory(source, jail, changes, top=True)
    if changes:
        steps.append(f"jail template {template}: {len(changes)} entries created or replaced")
        for change in changes:
            logger.debug("jail template: %s", change)
    return len(changes)


def _copy_directory(
    source: OpenDirectory, target: OpenDirectory, changes: list[str], *, top: bool
) -> None:
    remove_stale_temporaries(target, changes)
    for name in sorted(os.listdir(source.fd)):
        if top and name in SKIPPED_AT_TOP:
            logger.info("jail template: %s skipped (homes are provbackup's)", source.path / name)
            continue
        status = os.stat(name, dir_fd=source.fd, follow_symlinks=False)
        mode = status.st_mode
        if stat.S_ISDIR(mode):
            with (
                open_directory(source, name) as source_child,
                ensure_directory(
                    target, name, status.st_uid, status.st_gid, stat.S_IMODE(mode), changes
                ) as target_child,
            ):
                _copy_directory(source_child, target_child, changes, top=False)
            continue
        existing = lstat_entry(target, name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise WorkError(
                f"{target.path / name}: is a directory in the jail but not in the template "
                f"{source.path / name}; left alone",
                return_value=RETURN_FILESYSTEM,
            )
        if stat.S_ISREG(mode):
            if not _same_file(existing, status):
                _copy_file(source, target, name, status)
                changes.append(f"copied {target.path / name}")
        elif stat.S_ISLNK(mode):
            link = os.readlink(name, dir_fd=source.fd)
            if not _same_link(target, name, existing, status, link):
                replace_special(target, name, status, link)
                changes.append(f"linked {target.path / name} -> {link}")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            if not _same_special(existing, status):
                replace_special(target, name, status, None)
                changes.append(f"made {target.path / name}")
        else:
            logger.warning("jail template: %s is a socket; skipped", source.path / name)


def _same_owner_and_mode(existing: os.stat_result, status: os.stat_result) -> bool:
    return (
        existing.st_uid == status.st_uid
        and existing.st_gid == status.st_gid
        and existing.st_mode == status.st_mode
    )


def _same_file(existing: os.stat_result | None, status: os.stat_result) -> bool:
    # Size and modification time, like rsync's quick check: reading every
    # binary of the jail for each account would dominate a burst.
    return (
        existing is not None
        and _same_owner_and_mode(existing, status)
        and existing.st_size == status.st_size
        and existing.st_mtime_ns == status.st_mtime_ns
    )


def _same_link(
    target: OpenDirectory,
    name: str,
    existing: os.stat_result | None,
    status: os.stat_result,
    link: str,
) -> bool:
    if existing is None or not stat.S_ISLNK(existing.st_mode):
        return False
    if (existing.st_uid, existing.st_gid) != (status.st_uid, status.st_gid):
        return False
    return os.readlink(name, dir_fd=target.fd) == link


def _same_special(existing: os.stat_result | None, status: os.stat_result) -> bool:
    return (
        existing is not None
        and _same_owner_and_mode(existing, status)
        and existing.st_rdev == status.st_rdev
    )


def _copy_file(
    source: OpenDirectory, target: OpenDirectory, name: str, status: os.stat_result
) -> None:
    fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=source.fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WorkError(
                f"{source.path / name}: changed while being copied", return_value=RETURN_FILESYSTEM
            )
        os.set_blocking(fd, True)
        replace_file(
            target,
            name,
            fd,
            uid=status.st_uid,
            gid=status.st_gid,
            mode=stat.S_IMODE(status.st_mode),
            mtime_ns=status.st_mtime_ns,
        )
    finally:
        os.close(fd)
