"""Filesystem primitives that never follow a symlink below the backup root.

Every directory is reached from the backup root one component at a time
with ``O_NOFOLLOW`` and a directory file descriptor, so a symlink planted
anywhere in an account (by a user, or by anyone) is never followed: it
fails the entry with :class:`UnsafePathError` naming the path. Owners and
modes are set through the opened descriptor. Files are replaced atomically
(temporary file in the same directory, fsync, rename). The walk itself
(:class:`OpenDirectory`, :func:`open_root`, :func:`open_directory`,
:func:`lstat_entry`) is in :mod:`provbackup.work.descriptors`, re-exported
here: callers import everything from this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from provbackup.errors import RETURN_FILESYSTEM, UnsafePathError, WorkError
from provbackup.model import owner_text
from provbackup.work import remove
from provbackup.work.descriptors import (
    OPEN_DIRECTORY_FLAGS,
    OPEN_FILE_FLAGS,
    OpenDirectory,
    check_name,
    describe_kind,
    lstat_entry,
    naming,
    open_directory,
    open_root,
)
from provbackup.work.remove import Budget

__all__ = [
    "COPY_CHUNK",
    "OPEN_DIRECTORY_FLAGS",
    "OPEN_FILE_FLAGS",
    "TEMPORARY_PREFIX",
    "OpenDirectory",
    "check_name",
    "describe_kind",
    "ensure_directory",
    "file_matches",
    "lstat_entry",
    "naming",
    "open_directory",
    "open_root",
    "remove_non_directory",
    "remove_stale_temporaries",
    "remove_tree",
    "replace_file",
    "replace_special",
    "set_owner_and_mode",
]

logger = logging.getLogger(__name__)

TEMPORARY_PREFIX = ".provbackup-tmp."
COPY_CHUNK = 1 << 20


def ensure_directory(
    parent: OpenDirectory,
    name: str,
    uid: int,
    gid: int,
    mode: int,
    steps: list[str],
    *,
    path: Path | None = None,
) -> OpenDirectory:
    """Create ``name`` in ``parent`` if missing and give it ``uid``:``gid`` and ``mode``.

    Appends what changed to ``steps``; ``path`` is as for :func:`open_directory`.
    Returns the opened directory (the caller closes it). Raises
    UnsafePathError when the entry is a symlink or not a directory; it is
    left as it is.
    """
    check_name(parent, name)
    created = False
    try:
        # Created closed (0700, root) and opened up only after chown: never briefly too open.
        os.mkdir(name, 0o700, dir_fd=parent.fd)
        created = True
    except FileExistsError:
        pass
    except OSError as error:
        raise naming(error, parent.path / name) from None
    directory = open_directory(parent, name, path=path)
    try:
        changes = set_owner_and_mode(directory.fd, uid, gid, mode)
    except OSError as error:
        directory.close()
        raise naming(error, directory.path) from None
    except BaseException:
        directory.close()
        raise
    if created:
        steps.append(f"created {directory.path} {owner_text(uid, gid)} {mode:04o}")
    elif changes:
        steps.append(f"corrected {directory.path}: {', '.join(changes)}")
    return directory


def set_owner_and_mode(fd: int, uid: int, gid: int, mode: int) -> list[str]:
    """Give the open file ``fd`` the owner, group and mode; return what was changed."""
    changes = []
    status = os.fstat(fd)
    if (status.st_uid, status.st_gid) != (uid, gid):
        changes.append(
            f"owner {owner_text(status.st_uid, status.st_gid)} -> {owner_text(uid, gid)}"
        )
        os.fchown(fd, uid, gid)
        # chown may clear set-id bits, so the mode is compared afterwards.
        status = os.fstat(fd)
    if stat.S_IMODE(status.st_mode) != mode:
        changes.append(f"mode {stat.S_IMODE(status.st_mode):04o} -> {mode:04o}")
        os.fchmod(fd, mode)
    return changes


def file_matches(
    parent: OpenDirectory, name: str, content: bytes, uid: int, gid: int, mode: int
) -> bool:
    """Return True if ``name`` is a regular file with exactly this content, owner and mode."""
    check_name(parent, name)
    try:
        fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=parent.fd)
    except OSError:
        return False
    try:
        status = os.fstat(fd)
        if (
            not stat.S_ISREG(status.st_mode)
            or (status.st_uid, status.st_gid) != (uid, gid)
            or stat.S_IMODE(status.st_mode) != mode
            or status.st_size != len(content)
        ):
            return False
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(len(content) + 1) == content
    finally:
        os.close(fd)


def replace_file(
    parent: OpenDirectory,
    name: str,
    source: bytes | int,
    *,
    uid: int,
    gid: int,
    mode: int,
    mtime_ns: int | None = None,
    before_rename: Callable[[Path], object] | None = None,
) -> None:
    """Atomically replace ``name`` in ``parent`` by a regular file.

    ``source`` is the content, or a readable descriptor to copy from.
    ``before_rename`` is called with the path of the complete temporary file
    and may raise to keep the old file. A symlink at ``name`` is replaced,
    never followed; a directory there raises WorkError. Raises WorkError on
    I/O errors; the temporary file is removed.
    """
    check_name(parent, name)
    temporary = f"{TEMPORARY_PREFIX}{name}.{secrets.token_hex(6)}"
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
            dir_fd=parent.fd,
        )  # fmt: skip
    except OSError as error:
        raise naming(error, parent.path / name) from None
    try:
        try:
            if isinstance(source, bytes):
                _write_all(fd, source)
            else:
                while chunk := os.read(source, COPY_CHUNK):
                    _write_all(fd, chunk)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename(parent.path / temporary)
        _rename_over(parent, temporary, name)
    except OSError as error:
        # A full disk fails the write: no half-written file is left, and the
        # error names the file it was for.
        _unlink_quietly(parent, temporary)
        raise naming(error, parent.path / name) from None
    except BaseException:
        _unlink_quietly(parent, temporary)
        raise


def replace_special(
    parent: OpenDirectory,
    name: str,
    status: os.stat_result,
    link_target: str | None,
) -> None:
    """Atomically replace ``name`` by a symlink (``link_target``) or a device/FIFO like ``status``.

    Owner and group (and the mode of a device or FIFO) are taken from
    ``status``. Raises WorkError when a directory stands at ``name``.
    """
    check_name(parent, name)
    temporary = f"{TEMPORARY_PREFIX}{name}.{secrets.token_hex(6)}"
    try:
        if link_target is not None:
            os.symlink(link_target, temporary, dir_fd=parent.fd)
        else:
            os.mknod(
                temporary, stat.S_IFMT(status.st_mode) | 0o600, status.st_rdev, dir_fd=parent.fd
            )
        os.chown(temporary, status.st_uid, status.st_gid, dir_fd=parent.fd, follow_symlinks=False)
        if link_target is None:
            os.chmod(temporary, stat.S_IMODE(status.st_mode), dir_fd=parent.fd)
        _rename_over(parent, temporary, name)
    except BaseException:
        _unlink_quietly(parent, temporary)
        raise


def remove_non_directory(parent: OpenDirectory, name: str) -> bool:
    """Remove the file or symlink ``name`` (never what a symlink points to).

    Returns True if something was removed. Raises UnsafePathError when a
    directory stands there (it is left alone).
    """
    status = lstat_entry(parent, name)
    if status is None:
        return False
    if stat.S_ISDIR(status.st_mode):
        raise UnsafePathError(f"{parent.path / name}: is a directory, expected a file; left alone")
    try:
        os.unlink(name, dir_fd=parent.fd)
    except FileNotFoundError:
        return False
    return True


def remove_stale_temporaries(parent: OpenDirectory, steps: list[str]) -> None:
    """Remove temporary files a crashed earlier run left in ``parent``."""
    for name in os.listdir(parent.fd):
        if name.startswith(TEMPORARY_PREFIX):
            status = lstat_entry(parent, name)
            if status is not None and not stat.S_ISDIR(status.st_mode):
                os.unlink(name, dir_fd=parent.fd)
                steps.append(f"removed stale temporary file {parent.path / name}")


def remove_tree(parent: OpenDirectory, name: str, budget: Budget | None = None) -> bool:
    """Remove the directory ``name`` and everything below it, never following a symlink.

    See :func:`provbackup.work.remove.remove_tree`: iterative, descriptor
    based, bounded. Returns True when it is gone, False when ``budget`` ran
    out first (the rest stays for the next call). Raises WorkError (or
    UnsafePathError) naming the path on failure.
    """
    check_name(parent, name)
    return remove.remove_tree(parent.fd, parent.path, name, budget)


def _rename_over(parent: OpenDirectory, source: str, target: str) -> None:
    try:
        os.rename(source, target, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
    except IsADirectoryError:
        raise WorkError(
            f"{parent.path / target}: is a directory, expected a file; left alone",
            return_value=RETURN_FILESYSTEM,
        ) from None
    # The rename is durable only once the directory itself is on disk.
    os.fsync(parent.fd)


def _unlink_quietly(parent: OpenDirectory, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=parent.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
