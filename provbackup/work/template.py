"""Give an account's jail the files of the jail template (``[backup] jail_template``).

Regular files are **hard-linked** from the template where the filesystem
allows (thousands of accounts share one copy of each binary), copied
otherwise (another filesystem, or the link count limit reached). Sharing
an inode is safe only because no user can change it: every template file
must be owned by root, writable by nobody else, and carry no set-id bit;
a template entry breaking that rule fails the account (the template is
the operator's to fix; ``provbackup jail-template`` builds a correct one).
The jail's directories are root-owned, so a user can neither rename nor
replace a shared file, and ``fs.protected_hardlinks`` keeps a user from
making new links to it elsewhere.

Directories, symlinks (copied as links, never followed) and the few
harmless character devices (null, zero, full, random, urandom, tty) are
made per account; FIFOs too; block devices, other devices and sockets
are refused or skipped. A template entry named ``home`` at its top is
skipped (homes are provbackup's), and so are the per-account files
``etc/passwd``, ``etc/group`` and ``etc/provbackup`` (written by
:mod:`provbackup.work.jail`). Jail entries that are missing or differ
(another inode, type, owner, mode, link target) are replaced atomically;
entries the template lacks are left alone, nothing is deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from provbackup.errors import RETURN_FILESYSTEM, WorkError
from provbackup.work.safe import (
    OPEN_FILE_FLAGS,
    TEMPORARY_PREFIX,
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
# Per-account files below etc/ (provbackup.work.jail writes them).
PER_ACCOUNT_IN_ETC = frozenset({"passwd", "group", "provbackup"})
# (major, minor) of the character devices a jail may have: null, zero, full,
# random, urandom, tty. Anything else (a disk, /dev/mem) would open the host.
HARMLESS_DEVICES = frozenset({(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)})
# Errors after which a file is copied instead of linked.
LINK_FALLBACK_ERRORS = frozenset({errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EOPNOTSUPP})


def copy_jail_template(template: Path, jail: OpenDirectory, steps: list[str]) -> int:
    """Bring the jail ``jail`` (open A/chroot) up to date with ``template``.

    Appends one summary line to ``steps``; returns how many entries were
    created or replaced. Raises WorkError when the template cannot be read,
    holds an entry no jail may share (not root's, writable by others,
    set-id, a device other than the harmless ones) or a jail entry's type
    conflicts with the template (a directory where the template has a file
    or the reverse); UnsafePathError for a symlink in the jail where the
    template has a directory.
    """
    try:
        fd = os.open(template, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        hint = " (build it: provbackup jail-template)" if error.errno == errno.ENOENT else ""
        raise WorkError(
            f"[backup] jail_template {template}: {error.strerror}{hint}",
            return_value=RETURN_FILESYSTEM,
        ) from None
    changes: list[str] = []
    with OpenDirectory(fd, template) as source:
        _copy_directory(source, jail, changes, depth=0, in_etc=False)
    if changes:
        steps.append(f"jail template {template}: {len(changes)} entries created or replaced")
        for change in changes:
            logger.debug("jail template: %s", change)
    return len(changes)


def _copy_directory(
    source: OpenDirectory, target: OpenDirectory, changes: list[str], *, depth: int, in_etc: bool
) -> None:
    remove_stale_temporaries(target, changes)
    for name in sorted(os.listdir(source.fd)):
        if depth == 0 and name in SKIPPED_AT_TOP:
            logger.info("jail template: %s skipped (homes are provbackup's)", source.path / name)
            continue
        if in_etc and name in PER_ACCOUNT_IN_ETC:
            continue
        if name.startswith(TEMPORARY_PREFIX):
            continue
        status = os.stat(name, dir_fd=source.fd, follow_symlinks=False)
        mode = status.st_mode
        check_shareable(source.path / name, status)
        if stat.S_ISDIR(mode):
            with (
                open_directory(source, name) as source_child,
                ensure_directory(
                    target, name, status.st_uid, status.st_gid, stat.S_IMODE(mode), changes
                ) as target_child,
            ):
                _copy_directory(
                    source_child, target_child, changes,
                    depth=depth + 1, in_etc=depth == 0 and name == "etc",
                )  # fmt: skip
            continue
        existing = lstat_entry(target, name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise WorkError(
                f"{target.path / name}: is a directory in the jail but not in the template "
                f"{source.path / name}; left alone",
                return_value=RETURN_FILESYSTEM,
            )
        if stat.S_ISREG(mode):
            if existing is not None and (existing.st_dev, existing.st_ino) == (
                status.st_dev,
                status.st_ino,
            ):
                continue
            if _link_file(source, target, name):
                changes.append(f"linked {target.path / name}")
            elif not _same_file(existing, status):
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


def check_shareable(path: Path, status: os.stat_result) -> None:
    """Raise WorkError unless the template entry at ``path`` may be shared by every jail.

    Directories and regular files must be root's and writable by root
    only, without set-id bits; character devices must be harmless ones;
    block devices are refused.
    """
    mode = status.st_mode
    problem = None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        if status.st_uid != 0:
            problem = f"is owned by uid {status.st_uid}, not root"
        elif mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"is writable by group or others (mode {stat.S_IMODE(mode):04o})"
        elif stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            problem = f"is set-id (mode {stat.S_IMODE(mode):04o})"
    elif stat.S_ISBLK(mode) or (
        stat.S_ISCHR(mode)
        and (os.major(status.st_rdev), os.minor(status.st_rdev)) not in HARMLESS_DEVICES
    ):
        problem = (
            f"is the device {os.major(status.st_rdev)},{os.minor(status.st_rdev)}, "
            "not one of null, zero, full, random, urandom, tty"
        )
    if problem is not None:
        raise WorkError(
            f"jail template entry {path} {problem}: every jail shares it, so no user may "
            "change it; fix the template (provbackup jail-template builds a safe one)",
            return_value=RETURN_FILESYSTEM,
        )


def _link_file(source: OpenDirectory, target: OpenDirectory, name: str) -> bool:
    """Hard-link the template file ``name`` over the jail's; False when only a copy can do."""
    temporary = f"{TEMPORARY_PREFIX}{name}.{secrets.token_hex(6)}"
    try:
        os.link(name, temporary, src_dir_fd=source.fd, dst_dir_fd=target.fd, follow_symlinks=False)
    except OSError as error:
        if error.errno in LINK_FALLBACK_ERRORS:
            logger.debug("jail template: cannot link %s (%s); copying", name, error.strerror)
            return False
        raise
    try:
        os.rename(temporary, name, src_dir_fd=target.fd, dst_dir_fd=target.fd)
    except IsADirectoryError:
        os.unlink(temporary, dir_fd=target.fd)
        raise WorkError(
            f"{target.path / name}: is a directory, expected a file; left alone",
            return_value=RETURN_FILESYSTEM,
        ) from None
    except BaseException:
        os.unlink(temporary, dir_fd=target.fd)
        raise
    return True


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
