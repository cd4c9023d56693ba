"""Reaching a directory below the backup root one component at a time, never following a link.

The base of :mod:`provbackup.work.safe` (which re-exports all of it; import
from there): the :class:`OpenDirectory` descriptor, the ``O_NOFOLLOW``
open of the root and of each directory below it, ``lstat`` by name, and
the error helpers that name the full path.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from provbackup.closing import Closing
from provbackup.errors import UnsafePathError, WorkError

OPEN_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone left in place of a file must not hang the run.
OPEN_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class OpenDirectory(Closing):
    """An open directory descriptor and the path it was reached by (for messages)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        """Close the descriptor (twice is harmless)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def describe_kind(mode: int) -> str:
    """Return a word for the file type in ``mode`` (``directory``, ``symbolic link``, ...)."""
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISREG(mode):
        return "regular file"
    return "special file"


def naming(error: OSError, path: Path) -> OSError:
    """Return ``error`` (same errno, so same subclass) naming ``path`` in full.

    Calls relative to a directory descriptor name only the last component in
    their errors, and fchown/write name nothing; an operator reading "No
    space left on device" needs to know where.
    """
    return OSError(error.errno, error.strerror, str(path))


def check_name(parent: OpenDirectory, name: str) -> None:
    """Raise UnsafePathError unless ``name`` is one plain path component."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(f"{parent.path}: refusing the path component {name!r}")


def open_root(root: Path) -> OpenDirectory:
    """Open the backup root itself.

    Symlinks in the configured root path are the operator's choice and are
    followed; nothing below it is. Raises WorkError when it is missing (an
    unmounted filesystem must not get accounts created on its mount point's
    parent) or not a directory.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WorkError(f"backup root {root} does not exist (not mounted?)") from None
    except OSError as error:
        raise WorkError(f"backup root {root}: {error.strerror}") from None
    return OpenDirectory(fd, root)


def lstat_entry(parent: OpenDirectory, name: str) -> os.stat_result | None:
    """Return the lstat of ``name`` in ``parent`` (None when it does not exist)."""
    check_name(parent, name)
    try:
        return os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_directory(parent: OpenDirectory, name: str, *, path: Path | None = None) -> OpenDirectory:
    """Open the existing directory ``name`` in ``parent`` without following a symlink.

    ``path`` is ``parent.path / name`` when the caller has it already: it
    only names the directory in messages (the descriptor is what is used),
    and joining Path objects again is measurable in a burst.
    Raises FileNotFoundError when it does not exist, UnsafePathError naming
    the path when it is a symlink or not a directory.
    """
    check_name(parent, name)
    path = parent.path / name if path is None else path
    try:
        fd = os.open(name, OPEN_DIRECTORY_FLAGS, dir_fd=parent.fd)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        status = lstat_entry(parent, name)
        kind = describe_kind(status.st_mode) if status is not None else "vanished entry"
        raise UnsafePathError(
            f"{path}: is a {kind}, expected a directory; not following or replacing it"
        ) from None
    return OpenDirectory(fd, path)
